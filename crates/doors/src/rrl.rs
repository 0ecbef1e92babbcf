//! Response rate limiting per client network: a token bucket per prefix in
//! a table of fixed size.
//!
//! The table is allocated once: `capacity` entries in sets of four,
//! spread over sixteen locks so that workers rarely meet. A prefix not
//! in its set replaces the entry that has the most tokens after refilling
//! (an idle or well-behaved network, whose bucket would be full anyway),
//! so a flood of new prefixes can only make the table forget networks that
//! were not being limited; it never grows. Nothing allocates after
//! [`RateLimiter::new`], so it can sit on the cache-hit path.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Entries in one set; a prefix can live in any way of its set.
const WAYS: usize = 4;
/// Independent locks.
const SHARDS: usize = 16;
/// Tokens are counted in thousandths, so a rate per second refills
/// `rate` thousandths per millisecond.
const MILLI: u64 = 1000;

/// The limits of [`RateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Responses per second per prefix.
    pub responses_per_second: u32,
    /// Error responses (NXDOMAIN, SERVFAIL, REFUSED, FORMERR, NOTIMP)
    /// per second per prefix, counted on top of the above.
    pub errors_per_second: u32,
    /// Queries per second per prefix that miss the cache and need a
    /// resolution, on top of the above: random-name floods are all misses,
    /// a client population's queries mostly hits.
    pub misses_per_second: u32,
    /// Seconds of traffic a bucket can save up (its size is rate × burst).
    pub burst_seconds: u32,
    /// Of the responses over the limit, every `slip`-th is sent as a
    /// minimal truncated answer and the others are dropped; 0 drops all,
    /// 1 slips all.
    pub slip: u32,
    /// Entries in the table (rounded up to a whole number of sets).
    pub table_size: usize,
    /// Queries from one network within one second that mark it as
    /// flooding (see [`RateLimiter::take_flooding`]), counting those the
    /// kernel dropped before they were read (see
    /// [`RateLimiter::set_sampling`]); 0 never does.
    pub flood_per_second: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            responses_per_second: 2000,
            errors_per_second: 400,
            misses_per_second: 200,
            burst_seconds: 2,
            slip: 2,
            table_size: 65536,
            flood_per_second: 4000,
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: send it.
    Allow,
    /// Within the limit, but the network has been spending faster than
    /// its rate (the bucket is below half): a response is sent only if it
    /// is no larger than the query, so a flooding network gets no
    /// amplification; a miss is shed when the server is behind.
    Capped,
    /// Over the limit, and this one's turn to slip: send a minimal
    /// truncated answer instead.
    Slip,
    /// Over the limit: send nothing.
    Drop,
}

/// Which bucket a charge comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Responses,
    Errors,
    Misses,
}

/// One prefix's buckets: 32 octets, so a set of [`WAYS`] fills two
/// adjacent cache lines (a busy resolver's table does not fit in a CPU
/// cache; a lookup costs one memory fetch, which brings both).
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(32))]
struct Entry {
    /// A 32-bit fingerprint of the prefix (see [`prefix_key`]); 0 is an
    /// empty slot. Two prefixes of one set with the same fingerprint share
    /// a bucket: rare (1 in 2^32 per pair) and harmless.
    tag: u32,
    /// Milliseconds (of the limiter's clock) of the last refill.
    last_ms: u32,
    /// Thousandths of a token, for all responses.
    tokens: u32,
    /// Thousandths of a token, for error responses.
    err_tokens: u32,
    /// Thousandths of a token, for cache misses.
    miss_tokens: u32,
    /// Thousandths of the queries that arrived since `seen_ms` (each one
    /// read counts as many as arrived for it).
    seen: u32,
    /// Start of the window `seen` counts in.
    seen_ms: u32,
    /// Reported as flooding in this window.
    reported: bool,
}
/// The window a network's arrivals are counted in, against
/// `flood_per_second` scaled to it: short, so that a flood is seen within
/// a fraction of a second.
const FLOOD_WINDOW_MS: u32 = 250;

/// The ways of one set, on one pair of cache lines.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(128))]
struct Set([Entry; WAYS]);

/// One lock's part of the table.
#[derive(Debug)]
struct Shard {
    sets: Vec<Set>,
    /// Responses over the limit so far (for the slip rotation).
    over: u32,
}

/// A bounded table of token buckets keyed by client prefix.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    shards: Vec<Mutex<Shard>>,
    sets_per_shard: usize,
    seed: u64,
    /// Keys of networks that reached `flood_per_second` queries in a
    /// second, not yet taken; allocated once.
    flooding: Mutex<Vec<u128>>,
    /// Thousandths: datagrams that arrived for each one read (1000 while
    /// the kernel drops nothing).
    sampling_milli: AtomicU32,
    /// `flood_per_second` over one window, in thousandths; 0: off.
    flood_threshold: u64,
}

/// Most flooding networks waiting to be taken.
const FLOODING_MAX: usize = 256;

/// The prefix of `ip` as a table key: IPv4 (and IPv4-mapped IPv6) keep
/// their first `v4` bits in the `::ffff:0:0/96` form, IPv6 its first `v6`
/// bits; never 0.
pub fn prefix_key(ip: IpAddr, v4: u8, v6: u8) -> u128 {
    match ip {
        IpAddr::V4(a) => (0xffff_u128 << 32) | u128::from(u32::from(a) & mask32(v4)),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(m) => (0xffff_u128 << 32) | u128::from(u32::from(m) & mask32(v4)),
            // Keep IPv6 keys apart from the IPv4 form and from 0.
            None => (u128::from(a) & mask128(v6)) | 1,
        },
    }
}

/// The mask of an IPv4 prefix of `len` bits.
pub(crate) fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) }
}

/// The mask of an IPv6 prefix of `len` bits.
pub(crate) fn mask128(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) }
}

/// An address of the network `key` (from [`prefix_key`]) stands for; an
/// IPv6 key's last bit is not kept, so a /128 comes back as its /127.
pub fn key_network(key: u128) -> IpAddr {
    if key >> 32 == 0xffff {
        IpAddr::V4(std::net::Ipv4Addr::from(key as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(key & !1))
    }
}

impl RateLimiter {
    /// An empty table for `limits`.
    pub fn new(limits: RateLimits) -> RateLimiter {
        let sets = limits.table_size.div_ceil(WAYS).max(SHARDS);
        let sets_per_shard = sets.div_ceil(SHARDS);
        let shards =
            (0..SHARDS).map(|_| Mutex::new(Shard { sets: vec![Set::default(); sets_per_shard], over: 0 })).collect();
        RateLimiter {
            limits,
            shards,
            sets_per_shard,
            seed: rand::random::<u64>() | 1,
            flooding: Mutex::new(Vec::with_capacity(FLOODING_MAX)),
            sampling_milli: AtomicU32::new(1000),
            flood_threshold: u64::from(limits.flood_per_second) * MILLI * u64::from(FLOOD_WINDOW_MS) / 1000,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Bytes the table holds (allocated once).
    pub fn table_bytes(&self) -> usize {
        SHARDS * self.sets_per_shard * std::mem::size_of::<Set>()
    }

    /// Charges one response to `key`'s bucket at `now_ms` (any monotonic
    /// millisecond clock).
    pub fn response(&self, key: u128, now_ms: u32) -> Verdict {
        self.charge(key, now_ms, Bucket::Responses, 1)
    }

    /// Charges one error response to `key`'s error bucket.
    pub fn error(&self, key: u128, now_ms: u32) -> Verdict {
        self.charge(key, now_ms, Bucket::Errors, 1)
    }

    /// Charges one cache miss, at `cost` tokens, to `key`'s miss bucket:
    /// 1 normally; while the server is behind misses cost more, so a
    /// network's share of resolutions shrinks to its rate over `cost`
    /// while one asking normally (a few misses a second) does not notice.
    pub fn miss(&self, key: u128, now_ms: u32, cost: u32) -> Verdict {
        self.charge(key, now_ms, Bucket::Misses, cost.max(1))
    }

    /// How many datagrams arrived for each one that was read, in
    /// thousandths (1000: none lost), as the kernel's drop counters tell:
    /// past its capacity a server reads only a sample of what arrives,
    /// and a network's rate is what was read of it times this.
    pub fn set_sampling(&self, milli: u32) {
        self.sampling_milli.store(milli.clamp(1000, 100_000), Ordering::Relaxed);
    }

    /// Moves the networks that have been flooding (arriving at
    /// `flood_per_second` or more over a quarter of a second) since the
    /// last call into `out`, as addresses of their networks; each network
    /// is reported again in every further quarter second it keeps on.
    pub fn take_flooding(&self, out: &mut Vec<IpAddr>) {
        let mut f = self.flooding.lock().unwrap_or_else(|e| e.into_inner());
        out.extend(f.drain(..).map(key_network));
    }

    /// Whether `key` has been spending its responses faster than its rate
    /// (its bucket is below half), without charging it.
    pub fn is_pressed(&self, key: u128, now_ms: u32) -> bool {
        let half = self.capacity(self.limits.responses_per_second) / 2;
        self.response_tokens(key, now_ms).is_some_and(|t| t < half)
    }

    /// Whether `key` is out of responses now, without charging it.
    #[cfg(test)]
    fn is_limited(&self, key: u128, now_ms: u32) -> bool {
        self.response_tokens(key, now_ms).is_some_and(|t| t < MILLI)
    }

    /// `key`'s response tokens (thousandths) at `now_ms`, if it is in the
    /// table.
    fn response_tokens(&self, key: u128, now_ms: u32) -> Option<u64> {
        let (shard, set, tag) = self.place(key);
        let table = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        let Set(ways) = table.sets.get(set)?;
        ways.iter().find(|e| e.tag == tag).map(|e| self.refilled(e, now_ms)[0])
    }

    /// The shard, the set and the fingerprint of a prefix.
    fn place(&self, key: u128) -> (usize, usize, u32) {
        let h = ((key as u64) ^ ((key >> 64) as u64).rotate_left(29)).wrapping_mul(self.seed);
        let h = h ^ (h >> 29);
        let shard = (h as usize) % SHARDS;
        let set = ((h >> 4) as u32 as usize) % self.sets_per_shard;
        let tag = ((h >> 32) as u32).max(1);
        (shard, set, tag)
    }

    fn capacity(&self, rate: u32) -> u64 {
        u64::from(rate) * u64::from(self.limits.burst_seconds.max(1)) * MILLI
    }

    /// The entry's buckets (responses, errors, misses) refilled up to
    /// `now_ms`.
    fn refilled(&self, e: &Entry, now_ms: u32) -> [u64; 3] {
        let elapsed = u64::from(now_ms.wrapping_sub(e.last_ms).min(3_600_000));
        let fill = |tokens: u32, rate: u32| (u64::from(tokens) + elapsed * u64::from(rate)).min(self.capacity(rate));
        let l = &self.limits;
        [
            fill(e.tokens, l.responses_per_second),
            fill(e.err_tokens, l.errors_per_second),
            fill(e.miss_tokens, l.misses_per_second),
        ]
    }

    fn full(&self, rate: u32) -> u32 {
        self.capacity(rate).min(u64::from(u32::MAX)) as u32
    }

    fn charge(&self, key: u128, now_ms: u32, bucket: Bucket, cost: u32) -> Verdict {
        let price = u64::from(cost) * MILLI;
        let (shard, set, tag) = self.place(key);
        let mut table = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        let Shard { sets, over } = &mut *table;
        let Some(Set(ways)) = sets.get_mut(set) else { return Verdict::Allow };
        let i = match ways.iter().position(|e| e.tag == tag) {
            Some(i) => i,
            None => {
                // Replace the way that would have the most tokens now.
                let mut best = 0;
                let mut best_score = 0u64;
                for (i, e) in ways.iter().enumerate() {
                    let score = if e.tag == 0 { u64::MAX } else { self.refilled(e, now_ms)[0] };
                    if score > best_score || i == 0 {
                        best = i;
                        best_score = score;
                    }
                }
                let l = &self.limits;
                ways[best] = Entry {
                    tag,
                    last_ms: now_ms,
                    tokens: self.full(l.responses_per_second),
                    err_tokens: self.full(l.errors_per_second),
                    miss_tokens: self.full(l.misses_per_second),
                    seen: 0,
                    seen_ms: now_ms,
                    reported: false,
                };
                best
            }
        };
        let [tokens, err_tokens, miss_tokens] = self.refilled(&ways[i], now_ms);
        let e = &mut ways[i];
        e.last_ms = now_ms;
        let mut flooding = false;
        if bucket == Bucket::Responses && self.flood_threshold > 0 {
            if now_ms.wrapping_sub(e.seen_ms) >= FLOOD_WINDOW_MS {
                (e.seen_ms, e.seen, e.reported) = (now_ms, 0, false);
            }
            // What arrived, in thousandths: each query read stands for
            // the ones the kernel dropped beside it.
            e.seen = e.seen.saturating_add(self.sampling_milli.load(Ordering::Relaxed));
            flooding = !e.reported && u64::from(e.seen) >= self.flood_threshold;
            e.reported |= flooding;
        }
        // Each is at most its capacity, which `full` bounds to u32.
        e.tokens = tokens as u32;
        e.err_tokens = err_tokens as u32;
        e.miss_tokens = miss_tokens as u32;
        let b = match bucket {
            Bucket::Responses => &mut e.tokens,
            Bucket::Errors => &mut e.err_tokens,
            Bucket::Misses => &mut e.miss_tokens,
        };
        let verdict = if u64::from(*b) >= price {
            // `price` is at most the bucket here, which fits u32.
            *b -= price as u32;
            let l = &self.limits;
            let rate = match bucket {
                Bucket::Responses => l.responses_per_second,
                Bucket::Errors => l.errors_per_second,
                Bucket::Misses => l.misses_per_second,
            };
            if u64::from(*b) < self.capacity(rate) / 2 { Verdict::Capped } else { Verdict::Allow }
        } else {
            *over = over.wrapping_add(1);
            match self.limits.slip {
                0 => Verdict::Drop,
                n if over.is_multiple_of(n) => Verdict::Slip,
                _ => Verdict::Drop,
            }
        };
        if flooding {
            drop(table);
            let mut f = self.flooding.lock().unwrap_or_else(|e| e.into_inner());
            if f.len() < FLOODING_MAX {
                f.push(key);
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn limiter(rate: u32, slip: u32) -> RateLimiter {
        RateLimiter::new(RateLimits {
            responses_per_second: rate,
            errors_per_second: rate / 4,
            misses_per_second: rate / 8,
            burst_seconds: 1,
            slip,
            table_size: 64,
            flood_per_second: rate * 2,
        })
    }

    #[test]
    fn a_network_sending_past_the_flood_rate_is_reported_once_a_window() {
        // 40 a second make a flood: 10 in a quarter of a second.
        let rrl = limiter(20, 2);
        let ip: IpAddr = Ipv4Addr::new(198, 51, 100, 7).into();
        let key = prefix_key(ip, 24, 56);
        let other = prefix_key(Ipv4Addr::new(198, 51, 101, 7).into(), 24, 56);
        let mut out = Vec::new();
        // 9 of them: not yet.
        for _ in 0..9 {
            rrl.response(key, 1000);
            rrl.response(other, 1000);
        }
        rrl.take_flooding(&mut out);
        assert!(out.is_empty());
        // The 10th within the window: reported, once.
        for _ in 0..30 {
            rrl.response(key, 1200);
        }
        rrl.take_flooding(&mut out);
        assert_eq!(out, [IpAddr::from(Ipv4Addr::new(198, 51, 100, 0))]);
        out.clear();
        rrl.take_flooding(&mut out);
        assert!(out.is_empty());
        // A window later, still flooding: reported again; other's 9 were
        // in an earlier window, so its next 9 are not a flood.
        for _ in 0..10 {
            rrl.response(key, 1300);
        }
        for _ in 0..9 {
            rrl.response(other, 1300);
        }
        rrl.take_flooding(&mut out);
        assert_eq!(out.len(), 1);
        // When the kernel drops three of every four that arrive, each one
        // read counts four times.
        out.clear();
        rrl.set_sampling(4000);
        for _ in 0..3 {
            rrl.response(other, 1600);
        }
        rrl.take_flooding(&mut out);
        assert_eq!(out, [IpAddr::from(Ipv4Addr::new(198, 51, 101, 0))]);
        assert_eq!(
            key_network(prefix_key("2001:db8:1:2ff::9".parse().expect("ip"), 24, 56)),
            "2001:db8:1:200::".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn prefixes_group_addresses() {
        let a = |s: &str| s.parse::<IpAddr>().expect("address");
        assert_eq!(prefix_key(a("192.0.2.1"), 24, 56), prefix_key(a("192.0.2.254"), 24, 56));
        assert_ne!(prefix_key(a("192.0.2.1"), 24, 56), prefix_key(a("192.0.3.1"), 24, 56));
        assert_eq!(prefix_key(a("::ffff:192.0.2.9"), 24, 56), prefix_key(a("192.0.2.1"), 24, 56));
        assert_eq!(prefix_key(a("2001:db8:0:100::1"), 24, 56), prefix_key(a("2001:db8:0:1ff::2"), 24, 56));
        assert_ne!(prefix_key(a("2001:db8:0:100::1"), 24, 56), prefix_key(a("2001:db8:0:200::1"), 24, 56));
        assert_eq!(prefix_key(a("192.0.2.1"), 32, 128), prefix_key(a("192.0.2.1"), 32, 128));
        assert_ne!(prefix_key(a("192.0.2.1"), 32, 128), prefix_key(a("192.0.2.2"), 32, 128));
        assert_ne!(prefix_key(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0, 0), 0);
        assert_ne!(prefix_key(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, 0), 0);
    }

    fn passes(v: Verdict) -> bool {
        matches!(v, Verdict::Allow | Verdict::Capped)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_slips_every_nth() {
        let rrl = limiter(10, 2);
        let k = prefix_key("192.0.2.1".parse().expect("ip"), 24, 56);
        // The first half of the burst is sent as it is; past half the
        // network is spending faster than its rate: capped.
        let first: Vec<Verdict> = (0..10).map(|_| rrl.response(k, 0)).collect();
        assert_eq!(first.iter().filter(|v| **v == Verdict::Allow).count(), 5, "{first:?}");
        assert!(first.iter().all(|v| passes(*v)));
        assert!(rrl.is_limited(k, 0));
        let over: Vec<Verdict> = (0..6).map(|_| rrl.response(k, 0)).collect();
        use Verdict::*;
        assert_eq!(over, [Drop, Slip, Drop, Slip, Drop, Slip]);
        // 100 ms later one token (10 per second) has come back.
        assert_eq!(rrl.response(k, 100), Capped);
        assert!(!passes(rrl.response(k, 100)));
        // Another network is not affected.
        let other = prefix_key("198.51.100.1".parse().expect("ip"), 24, 56);
        assert_eq!(rrl.response(other, 100), Allow);
        // A second later the bucket is full again, no fuller.
        for _ in 0..10 {
            assert!(passes(rrl.response(k, 1200)));
        }
        assert!(!passes(rrl.response(k, 1200)));
    }

    #[test]
    fn slip_zero_drops_and_one_slips_everything() {
        let k = prefix_key("192.0.2.1".parse().expect("ip"), 24, 56);
        for (slip, want) in [(0, Verdict::Drop), (1, Verdict::Slip)] {
            let rrl = limiter(1, slip);
            assert!(passes(rrl.response(k, 0)));
            for _ in 0..5 {
                assert_eq!(rrl.response(k, 0), want);
            }
        }
    }

    #[test]
    fn errors_have_their_own_lower_limit() {
        let rrl = limiter(100, 0);
        let k = prefix_key("192.0.2.1".parse().expect("ip"), 24, 56);
        let allowed = (0..100).filter(|_| passes(rrl.error(k, 0))).count();
        assert_eq!(allowed, 25);
        assert_eq!(rrl.response(k, 0), Verdict::Allow);
        // Misses have theirs (rate / 8 here).
        let misses = (0..100).filter(|_| passes(rrl.miss(k, 0, 1))).count();
        assert_eq!(misses, 12);
    }

    #[test]
    fn a_flood_of_new_prefixes_does_not_grow_the_table_or_free_the_limited() {
        let rrl = limiter(5, 0);
        let bytes = rrl.table_bytes();
        let victim = prefix_key("203.0.113.7".parse().expect("ip"), 24, 56);
        for _ in 0..50 {
            rrl.response(victim, 0);
        }
        assert!(rrl.is_limited(victim, 0));
        // 100,000 other prefixes, each asking once: the table forgets the
        // ones with full buckets first, so the limited one stays limited.
        for i in 0..100_000u32 {
            let k = prefix_key(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24, 56);
            rrl.response(k, 1);
        }
        assert_eq!(rrl.table_bytes(), bytes);
        assert!(rrl.is_limited(victim, 1));
        assert_eq!(rrl.response(victim, 1), Verdict::Drop);
    }
}

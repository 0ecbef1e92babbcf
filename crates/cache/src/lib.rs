//! onedot's caches.
//!
//! * [`AnswerCache`] holds whole responses in wire format, keyed by question.
//!   A hit copies the stored bytes into the caller's buffer and patches the
//!   ID, flags, question case and TTLs in place: no allocation, no parsing.
//! * [`RrsetCache`] holds RRsets and negative answers for the recursor, with
//!   a trust rank so that glue never overwrites authoritative data.
//!
//! Both are bounded by bytes (S3-FIFO eviction from `quick_cache`), count TTLs
//! down from the time of insertion, clamp TTLs to the configured bounds, and
//! keep expired entries until evicted so they can be served stale
//! (RFC 8767) when the authorities cannot be reached.
//!
//! [`snapshot`] writes both to bytes and reads them back, checked, across
//! a restart.
//!
//! Invariant: time is an input (`now`, Unix seconds); the cache never reads a
//! clock.

mod answer;
mod rrset;
pub mod snapshot;

pub use answer::{AnswerCache, CachedAnswer, Freshness, RESPONSE_PAD_BLOCK, WriteOptions, variant};
pub use rrset::{BOGUS_TTL, Negative, Rank, RrsetCache, RrsetEntry, Security};

/// TTL policy shared by both caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    /// Smallest TTL stored (larger TTLs from authorities are kept).
    pub min_ttl: u32,
    /// Largest TTL stored.
    pub max_ttl: u32,
    /// Largest TTL for negative answers (RFC 2308 suggests hours at most).
    pub max_negative_ttl: u32,
    /// How long past expiry an entry may still be served stale (RFC 8767
    /// recommends one to three days); 0 disables serve-stale.
    pub stale_window: u32,
    /// How long a resolution failure (SERVFAIL) is cached the first time
    /// (RFC 9520); doubled for each failure that follows, up to
    /// [`MAX_FAILURE_TTL`]. 0 disables failure caching.
    pub failure_ttl: u32,
}

/// The longest a resolution failure may be cached (RFC 9520 §3.2: five
/// minutes).
pub const MAX_FAILURE_TTL: u32 = 300;

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy { min_ttl: 0, max_ttl: 86_400, max_negative_ttl: 3_600, stale_window: 86_400, failure_ttl: 5 }
    }
}

impl TtlPolicy {
    /// Clamps a positive TTL.
    pub fn clamp(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min_ttl.min(self.max_ttl), self.max_ttl)
    }

    /// How long to cache a resolution failure at `now`, given the failure
    /// cached before it for the same question (stored at, TTL), if any:
    /// `failure_ttl`, doubled when that one expired less than
    /// [`MAX_FAILURE_TTL`] seconds ago (a failure that persists across
    /// retries, RFC 9520 §3.2's backoff), never more than
    /// [`MAX_FAILURE_TTL`]; 0 when failures are not cached.
    pub fn failure_ttl(&self, previous: Option<(u64, u32)>, now: u64) -> u32 {
        if self.failure_ttl == 0 {
            return 0;
        }
        let base = self.failure_ttl.min(MAX_FAILURE_TTL);
        match previous {
            Some((stored_at, ttl)) => {
                let expired = stored_at + u64::from(ttl);
                if now < expired {
                    // Not yet expired (it would have been served): no
                    // shorter than it.
                    ttl.clamp(base, MAX_FAILURE_TTL)
                } else if now < expired + u64::from(MAX_FAILURE_TTL) {
                    ttl.saturating_mul(2).clamp(base, MAX_FAILURE_TTL)
                } else {
                    base
                }
            }
            None => base,
        }
    }

    /// Clamps a negative TTL.
    pub fn clamp_negative(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min_ttl.min(self.max_negative_ttl), self.max_negative_ttl)
    }
}

/// Freshness at `now` of data stored at `stored_at` with `ttl` seconds.
pub fn freshness(stored_at: u64, ttl: u32, now: u64, policy: &TtlPolicy) -> Freshness {
    let expires = stored_at + ttl as u64;
    if now < expires {
        Freshness::Fresh
    } else if now < expires + policy.stale_window as u64 {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

/// What one heap allocation of `bytes` really costs with glibc malloc: an
/// 8-byte header, rounded up to 16, at least 32. Cache weights add these up
/// per allocation so that the configured bound is a bound on memory, not on
/// payload.
pub const fn heap_cost(bytes: usize) -> usize {
    let chunk = (bytes + 8).div_ceil(16) * 16;
    if chunk < 32 { 32 } else { chunk }
}

/// What a cache entry costs beyond its allocations: its slot in the hash
/// table and the eviction queue, the ghost entries S3-FIFO keeps, and the
/// fragmentation eviction leaves. Measured with
/// `cargo run --release -p cache --example rrset_memory N signed|plain MiB`
/// (N lab-shaped RRsets through a bounded cache): at 112, a million signed
/// RRsets through 32 MiB grow RSS by 30.9 MiB and three million through
/// 64 MiB by 60.7 MiB, within the bounds; at 96 the first grows by 32.5 MiB,
/// past it. With no eviction the slot really takes about 60 bytes.
pub(crate) const SLOT_COST: usize = 112;

/// The TTL a stale answer is served with (RFC 8767 §4 recommends 30 s).
pub const STALE_TTL: u32 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_back_off_to_five_minutes_and_start_over() {
        let p = TtlPolicy::default();
        assert_eq!(p.failure_ttl(None, 1000), 5);
        // Each failure right after the previous one expired doubles the time.
        let (mut at, mut ttl) = (1000u64, 5u32);
        let mut seen = Vec::new();
        for _ in 0..8 {
            at += u64::from(ttl);
            ttl = p.failure_ttl(Some((at - u64::from(ttl), ttl)), at);
            seen.push(ttl);
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300, 300]);
        // A failure long after the last one expired starts from the base.
        assert_eq!(p.failure_ttl(Some((1000, 300)), 1000 + 300 + 300), 5);
        // A failure decided before the cached one expired neither doubles
        // nor shortens it.
        assert_eq!(p.failure_ttl(Some((1000, 20)), 1010), 20);
        assert_eq!(TtlPolicy { failure_ttl: 0, ..p }.failure_ttl(None, 1000), 0);
        assert_eq!(TtlPolicy { failure_ttl: 9999, ..p }.failure_ttl(None, 1000), MAX_FAILURE_TTL);
    }
}

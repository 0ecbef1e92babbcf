//! Admission: what stands between the open internet and the pipeline.
//!
//! [`Admission::wrap`] puts these in front of a [`Handler`], for every door:
//!
//! * **DNS Cookies** (RFC 7873, server cookies of RFC 9018) on Do53 (UDP
//!   and TCP): every response to a query with a client cookie carries a
//!   server cookie; a malformed cookie is FORMERR (the query parser's);
//!   with `require_cookies`, a UDP query without a valid server cookie is
//!   answered BADCOOKIE (or truncated, when it has no cookie at all). The
//!   secret rotates, the previous one still accepted, or is given by the
//!   operator so a fleet shares it.
//! * **Response rate limiting** per client prefix on UDP ([`crate::rrl`]):
//!   a query from a network over its rate is not looked at (not even the
//!   cache): every `slip`-th is answered with a minimal truncated response
//!   (BADCOOKIE with a fresh server cookie when the query had a client
//!   cookie), the rest are dropped. Error responses have a second, lower
//!   limit. A valid server cookie proves the source address and exempts
//!   the client, as in Knot Resolver and BIND; so do allow-listed
//!   networks. A slipped answer is never larger than the query plus a
//!   cookie, so a spoofed victim gets no amplification.
//! * **The kernel's drop filter** ([`crate::filter`]): a network that
//!   arrives at `flood_per_second` or more (counting what the kernel's
//!   full queues dropped) is dropped by a BPF filter on the UDP sockets
//!   for `kernel_filter_seconds`, so a flood several times the server's
//!   capacity costs it nothing in user space and does not overflow the
//!   sockets' queues that real clients' queries wait in.
//! * **Resolution slots**: at most `max_resolutions` slow-path queries in
//!   flight over all doors, and at most `max_resolutions_per_prefix` of
//!   them for one client network, so a network sending floods of cache
//!   misses cannot take the slots of those asking normally. Cache hits never
//!   need a slot.
//!
//! Everything is counted in [`AdmissionStats`] by action, never by address,
//! and the hit path allocates nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use proto::cookie::{self, ServerCookie};
use proto::wire::{HEADER_LEN, Rcode, flags};
use proto::{MessageWriter, QueryView};

use crate::filter::KernelFilter;
use crate::rrl::{RateLimiter, RateLimits, Verdict, prefix_key};
use crate::{BoxFuture, Client, Door, Fast, Handler};

pub use proto::cookie::BADCOOKIE;

/// Settings of [`Admission`].
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// Response rate limiting on UDP; `None` turns it off.
    pub rate_limit: Option<RateLimits>,
    /// Prefix length of an IPv4 client network (24).
    pub ipv4_prefix: u8,
    /// Prefix length of an IPv6 client network (56).
    pub ipv6_prefix: u8,
    /// Networks never rate limited (address, prefix length).
    pub exempt: Vec<(IpAddr, u8)>,
    /// Answer DNS Cookies on Do53.
    pub cookies: bool,
    /// Answer UDP queries without a valid server cookie with BADCOOKIE.
    pub require_cookies: bool,
    /// The server secret, shared by a fleet; `None`: a random one, rotated
    /// every `cookie_rotation_s`.
    pub cookie_secret: Option<[u8; 16]>,
    /// The secret before it, still accepted (a fleet's rollover).
    pub cookie_secret_previous: Option<[u8; 16]>,
    /// Seconds between rotations of a random secret.
    pub cookie_rotation_s: u64,
    /// Most slow-path queries in flight over all doors.
    pub max_resolutions: usize,
    /// Most slow-path queries in flight for one client network.
    pub max_resolutions_per_prefix: usize,
    /// Largest UDP response (the service's `max_udp_payload`).
    pub max_udp_payload: u16,
    /// Seconds a flooding network stays in the kernel's drop filter; 0
    /// turns the filter off (it also needs the rate limit).
    pub kernel_filter_seconds: u32,
    /// Most networks in the kernel's drop filter at once.
    pub kernel_filter_networks: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            rate_limit: Some(RateLimits::default()),
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: Vec::new(),
            cookies: true,
            require_cookies: false,
            cookie_secret: None,
            cookie_secret_previous: None,
            cookie_rotation_s: 86_400,
            max_resolutions: 10_000,
            max_resolutions_per_prefix: 500,
            max_udp_payload: 1232,
            kernel_filter_seconds: 10,
            kernel_filter_networks: 256,
        }
    }
}

/// What admission did, counted by action.
#[derive(Debug, Default)]
pub struct AdmissionStats {
    /// UDP responses over a rate limit sent as a minimal truncated answer.
    pub slipped: AtomicU64,
    /// UDP responses over a rate limit dropped.
    pub dropped: AtomicU64,
    /// UDP answers larger than their query to a network spending faster
    /// than its rate, sent truncated instead.
    pub capped: AtomicU64,
    /// UDP queries exempt from the limit by a valid server cookie.
    pub cookie_exempt: AtomicU64,
    /// Queries with a valid server cookie.
    pub cookie_valid: AtomicU64,
    /// Queries with a server cookie that did not verify.
    pub cookie_invalid: AtomicU64,
    /// Queries with a client cookie only.
    pub cookie_client_only: AtomicU64,
    /// BADCOOKIE responses sent.
    pub badcookie: AtomicU64,
    /// Slow-path queries refused a resolution slot (global or per network),
    /// or shed while a receive loop was behind.
    pub shed: AtomicU64,
    /// Flooding networks put in the kernel's drop filter.
    pub kernel_filtered: AtomicU64,
}

impl AdmissionStats {
    /// Every counter with its metric label.
    pub fn snapshot(&self) -> [(&'static str, u64); 10] {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("slip", l(&self.slipped)),
            ("drop", l(&self.dropped)),
            ("capped", l(&self.capped)),
            ("cookie_exempt", l(&self.cookie_exempt)),
            ("cookie_valid", l(&self.cookie_valid)),
            ("cookie_invalid", l(&self.cookie_invalid)),
            ("cookie_client_only", l(&self.cookie_client_only)),
            ("badcookie", l(&self.badcookie)),
            ("shed", l(&self.shed)),
            ("kernel_filter", l(&self.kernel_filtered)),
        ]
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The server secrets: the current one and the one before.
#[derive(Debug)]
struct Secrets {
    pair: arc_swap::ArcSwap<[[u8; 16]; 2]>,
    /// Unix time of the last rotation; 0 when the operator gave the secret.
    rotated: AtomicU64,
    every: u64,
}

impl Secrets {
    fn new(config: &AdmissionConfig) -> Secrets {
        let (pair, rotated) = match config.cookie_secret {
            Some(s) => ([s, config.cookie_secret_previous.unwrap_or(s)], 0),
            None => {
                let s = rand::random::<[u8; 16]>();
                ([s, s], unix_now().max(1))
            }
        };
        Secrets {
            pair: arc_swap::ArcSwap::from_pointee(pair),
            rotated: AtomicU64::new(rotated),
            every: config.cookie_rotation_s.max(1),
        }
    }

    /// The secrets in force at `now`, rotating a random one when due.
    fn current(&self, now: u64) -> arc_swap::Guard<Arc<[[u8; 16]; 2]>> {
        let rotated = self.rotated.load(Ordering::Relaxed);
        if rotated != 0
            && now >= rotated + self.every
            && self.rotated.compare_exchange(rotated, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            let old = self.pair.load();
            self.pair.store(Arc::new([rand::random::<[u8; 16]>(), old[0]]));
        }
        self.pair.load()
    }
}

/// Unix seconds from the kernel's coarse real-time clock: a read of the
/// vDSO page, no system call, a few milliseconds behind at most (cookie
/// timestamps are in seconds).
fn unix_now() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    u64::try_from(t.tv_sec)
        .unwrap_or_else(|_| SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Milliseconds of the kernel's coarse monotonic clock (one tick, 1 to 4
/// ms, of resolution: plenty for buckets refilled per second), at the cost
/// of a memory read instead of the 40 ns of a precise clock on a VM.
pub(crate) fn coarse_ms() -> u32 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    (t.tv_sec as u64).wrapping_mul(1000).wrapping_add(t.tv_nsec as u64 / 1_000_000) as u32
}

/// A query's cookie, judged.
#[derive(Debug, Clone, Copy)]
enum Cookie {
    /// No COOKIE option (or cookies off, or not a Do53 door).
    None,
    /// A client cookie only.
    ClientOnly([u8; 8]),
    /// A client cookie with a server cookie that did not verify: treated
    /// as a client cookie only.
    Forged([u8; 8]),
    /// A valid server cookie; `refresh` when a fresh one should be sent.
    Valid([u8; 8], [u8; 16], bool),
}

/// Resolution slots: in all, and by client network.
#[derive(Debug)]
struct Slots {
    total: AtomicUsize,
    by_network: Arc<PrefixCounts>,
}

/// Holds a resolution slot until dropped.
struct Slot<'a> {
    total: &'a AtomicUsize,
    _network: Held,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The admission state shared by every door of a server.
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    rrl: Option<RateLimiter>,
    secrets: Secrets,
    slots: Slots,
    stats: AdmissionStats,
    /// The doors' queries in flight, and whether a UDP loop is behind.
    inflight: crate::InFlight,
    /// Flooding networks dropped by the kernel, when on.
    kernel: Option<KernelFilter>,
    /// Whether the thread that feeds `kernel` runs.
    maintaining: AtomicBool,
}

/// Miss tokens a cache miss costs while a receive loop is behind: a
/// network's resolutions fall to a fiftieth of its miss rate (4 a second
/// by default; a truncated answer sends its clients to TCP), so what a
/// flood starts before the kernel's filter takes it is little.
const BEHIND_MISS_COST: u32 = 50;

/// While a receive loop is behind, a network may hold this fraction of
/// `max_resolutions_per_prefix` (500 / 50 = 10 by default).
const BEHIND_SLOT_DIVISOR: usize = 50;

/// What the thread feeding the kernel's drop filter remembers between runs.
#[derive(Debug, Default)]
struct Feed {
    started: bool,
    received: u64,
    overflows: u64,
    flooding: Vec<IpAddr>,
}

/// A [`Handler`] behind [`Admission`].
struct Admitted {
    inner: Arc<dyn Handler>,
    admission: Arc<Admission>,
}

impl Admission {
    /// Admission with `config` for doors sharing `inflight`; the
    /// rate-limit table is allocated now.
    pub fn new(config: AdmissionConfig, inflight: crate::InFlight) -> Arc<Admission> {
        let kernel = (config.rate_limit.is_some_and(|r| r.flood_per_second > 0) && config.kernel_filter_seconds > 0)
            .then(|| {
                KernelFilter::new(
                    config.ipv4_prefix,
                    config.ipv6_prefix,
                    config.kernel_filter_seconds.saturating_mul(1000),
                    config.kernel_filter_networks,
                )
            });
        Arc::new(Admission {
            inflight,
            kernel,
            maintaining: AtomicBool::new(false),
            rrl: config.rate_limit.map(RateLimiter::new),
            secrets: Secrets::new(&config),
            slots: Slots {
                total: AtomicUsize::new(0),
                by_network: PrefixCounts::new(config.ipv4_prefix, config.ipv6_prefix),
            },
            stats: AdmissionStats::default(),
            config,
        })
    }

    /// `inner` behind this admission.
    pub fn wrap(self: &Arc<Self>, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(Admitted { inner, admission: self.clone() })
    }

    /// What admission has done so far.
    pub fn stats(&self) -> &AdmissionStats {
        &self.stats
    }

    /// Networks in the kernel's drop filter now.
    pub fn kernel_filtered_networks(&self) -> usize {
        self.kernel.as_ref().map_or(0, KernelFilter::len)
    }

    /// Installs the kernel's drop filter on a Do53 UDP socket, and starts
    /// the thread that moves flooding networks into it (every 100 ms,
    /// while this admission lives). A thread of its own, not a task: a
    /// flood keeps the receive loops' workers busy, and that is when the
    /// filter must be fed.
    fn register_udp(self: &Arc<Self>, sock: &Arc<tokio::net::UdpSocket>) {
        let Some(kernel) = &self.kernel else { return };
        kernel.register(sock);
        if self.maintaining.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new().name("onedot-filter".into()).spawn(move || {
            let mut feed = Feed::default();
            loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let Some(a) = weak.upgrade() else { return };
                a.feed_kernel_filter(&mut feed);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the kernel drop filter's thread");
        }
    }

    /// Tells the rate limiter how much of what arrives is read (the
    /// receive loops' count against the kernel's full-queue drops since
    /// the last call), moves the networks it saw flooding into the
    /// kernel's drop filter and lets out those whose time is over.
    fn feed_kernel_filter(&self, feed: &mut Feed) {
        let (Some(rrl), Some(kernel)) = (&self.rrl, &self.kernel) else { return };
        let received = self.inflight.received();
        let overflows = crate::filter::queue_overflows().unwrap_or(0);
        let (read, lost) = (received.wrapping_sub(feed.received), overflows.wrapping_sub(feed.overflows));
        if feed.started && read > 0 {
            let sampling = ((read + lost.min(read * 100)) * 1000 / read).min(u64::from(u32::MAX)) as u32;
            tracing::debug!(read, lost, sampling, "udp sampling");
            rrl.set_sampling(sampling);
        }
        (feed.started, feed.received, feed.overflows) = (true, received, overflows);
        feed.flooding.clear();
        rrl.take_flooding(&mut feed.flooding);
        // Exempt networks and clients with a valid cookie are never
        // charged, so never seen flooding.
        let added = kernel.update(&feed.flooding, coarse_ms());
        self.stats.kernel_filtered.fetch_add(added as u64, Ordering::Relaxed);
    }

    /// Bytes of the rate-limit table (allocated once, at start).
    pub fn table_bytes(&self) -> usize {
        self.rrl.as_ref().map_or(0, RateLimiter::table_bytes)
    }

    fn key(&self, ip: IpAddr) -> u128 {
        prefix_key(ip, self.config.ipv4_prefix, self.config.ipv6_prefix)
    }

    fn exempt(&self, ip: IpAddr) -> bool {
        self.config.exempt.iter().any(|&(net, len)| in_network(ip, net, len))
    }

    /// Judges the query's cookie (Do53 doors only); counts nothing.
    fn cookie(&self, view: Option<&QueryView<'_>>, client: Client) -> Cookie {
        if !self.config.cookies || !matches!(client.door, Door::Udp | Door::Tcp) {
            return Cookie::None;
        }
        let Some(c) = view.and_then(|v| v.cookie) else {
            return Cookie::None;
        };
        if c.server.is_empty() {
            return Cookie::ClientOnly(c.client);
        }
        let now = unix_now();
        let secrets = self.secrets.current(now);
        match cookie::check_server_cookie(&secrets[..], &c.client, c.server, client.addr, now as u32) {
            ServerCookie::Valid { stamped } => {
                let mut server = [0u8; 16];
                server.copy_from_slice(c.server);
                Cookie::Valid(c.client, server, cookie::needs_refresh(stamped, now as u32))
            }
            ServerCookie::Invalid => Cookie::Forged(c.client),
        }
    }

    /// Counts a query's cookie (once per query: on the fast path, which
    /// every query passes first).
    fn count_cookie(&self, c: Cookie) {
        match c {
            Cookie::None => {}
            Cookie::ClientOnly(_) => bump(&self.stats.cookie_client_only),
            Cookie::Forged(_) => bump(&self.stats.cookie_invalid),
            Cookie::Valid(..) => bump(&self.stats.cookie_valid),
        }
    }

    /// The client and server cookie to put in a response.
    fn response_cookie(&self, c: Cookie, ip: IpAddr, now: u64) -> Option<[u8; 24]> {
        let (client, server) = match c {
            Cookie::None => return None,
            Cookie::Valid(client, server, false) => (client, server),
            Cookie::Valid(client, _, true) | Cookie::ClientOnly(client) | Cookie::Forged(client) => {
                let secrets = self.secrets.current(now);
                (client, cookie::server_cookie(&secrets[0], &client, ip, now as u32))
            }
        };
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&client);
        out[8..].copy_from_slice(&server);
        Some(out)
    }

    /// Adds the cookie to a response of `len` octets in `out`.
    fn add_cookie(
        &self,
        c: Cookie,
        client: Client,
        view: Option<&QueryView<'_>>,
        out: &mut Vec<u8>,
        len: usize,
    ) -> usize {
        let Some(data) = self.response_cookie(c, client.addr, unix_now()) else { return len };
        let limit = match (client.door, view) {
            (Door::Udp, Some(v)) => v.udp_limit(self.config.max_udp_payload),
            (Door::Udp, None) => 512,
            _ => 65535,
        };
        cookie::append_option(out, len, proto::wire::OPT_COOKIE, &data, limit).unwrap_or(len)
    }

    /// A minimal answer to `view`: the question, TC (or BADCOOKIE when
    /// the client sent a cookie), and an OPT record when the query had
    /// one. Never larger than the query plus a cookie.
    fn minimal(&self, view: &QueryView<'_>, c: Cookie, client: Client, out: &mut Vec<u8>) -> usize {
        out.clear();
        let data = self.response_cookie(c, client.addr, unix_now());
        let badcookie = data.is_some();
        let rcode = if badcookie { BADCOOKIE & 0xf } else { Rcode::NoError as u16 };
        let tc = if badcookie { 0 } else { flags::TC };
        let fl = flags::QR | flags::RA | tc | (view.flags & (flags::RD | flags::CD)) | rcode;
        let mut w = MessageWriter::new(out, view.id, fl);
        w.question(view.qname, view.qtype, view.qclass);
        if let Some(edns) = view.edns {
            let ext = if badcookie { (BADCOOKIE >> 4) as u8 } else { 0 };
            w.opt(self.config.max_udp_payload, edns.dnssec_ok, ext, &[]);
        }
        let len = w.finish();
        if badcookie {
            bump(&self.stats.badcookie);
        }
        match data {
            Some(d) => cookie::append_option(out, len, proto::wire::OPT_COOKIE, &d, 65535).unwrap_or(len),
            None => len,
        }
    }

    /// Applies a rate-limit verdict to a UDP query.
    fn over_limit(
        &self,
        verdict: Verdict,
        view: Option<&QueryView<'_>>,
        c: Cookie,
        client: Client,
        out: &mut Vec<u8>,
    ) -> Fast {
        match (verdict, view) {
            (Verdict::Slip, Some(v)) => {
                bump(&self.stats.slipped);
                Fast::Answered(self.minimal(v, c, client, out))
            }
            _ => {
                bump(&self.stats.dropped);
                Fast::Drop
            }
        }
    }

    /// Takes a resolution slot for `ip`'s network, if one is free.
    fn slot(&self, ip: IpAddr, exempt: bool) -> Option<Slot<'_>> {
        let total = self.slots.total.fetch_add(1, Ordering::AcqRel);
        // While a receive loop is behind, a network's share shrinks: what
        // a flood has started before it is filtered is work the real
        // clients' queries wait behind.
        let limit = match (exempt, self.inflight.behind()) {
            (true, _) => usize::MAX,
            (false, true) => (self.config.max_resolutions_per_prefix / BEHIND_SLOT_DIVISOR).max(1),
            (false, false) => self.config.max_resolutions_per_prefix,
        };
        let network = (total < self.config.max_resolutions).then(|| self.slots.by_network.enter(ip, limit)).flatten();
        let Some(network) = network else {
            self.slots.total.fetch_sub(1, Ordering::AcqRel);
            bump(&self.stats.shed);
            return None;
        };
        Some(Slot { total: &self.slots.total, _network: network })
    }
}

/// What is open (connections, resolutions) by client network. The map
/// holds only networks with something open, so it is bounded by the
/// global cap on what can be open.
#[derive(Debug)]
pub(crate) struct PrefixCounts {
    v4: u8,
    v6: u8,
    open: Mutex<HashMap<u128, usize>>,
}

/// One thing open counted in [`PrefixCounts`], until dropped.
#[derive(Debug)]
pub(crate) struct Held {
    counts: Arc<PrefixCounts>,
    key: u128,
}

impl PrefixCounts {
    /// Counts by networks of `v4` and `v6` bits.
    pub(crate) fn new(v4: u8, v6: u8) -> Arc<PrefixCounts> {
        Arc::new(PrefixCounts { v4, v6, open: Mutex::new(HashMap::new()) })
    }

    /// Counts one more thing open from `ip`, or `None` when its network
    /// has `limit` open already.
    pub(crate) fn enter(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Held> {
        let key = prefix_key(ip, self.v4, self.v6);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                open.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Held { counts: self.clone(), key })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Whether `ip` is in `net`/`len`.
pub fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let len = u32::from(len.min(32));
            len == 0 || (u32::from(a) ^ u32::from(n)) >> (32 - len) == 0
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let len = u32::from(len.min(128));
            len == 0 || (u128::from(a) ^ u128::from(n)) >> (128 - len) == 0
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a.to_ipv4_mapped().is_some_and(|m| in_network(IpAddr::V4(m), net, len)),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// Whether a response's RCODE counts toward the error limit.
fn is_error(response: &[u8]) -> bool {
    let rcode = response.get(3).map_or(0, |b| b & 0x0f);
    matches!(rcode, 1..=5)
}

impl Handler for Admitted {
    fn register_udp(&self, sock: &Arc<tokio::net::UdpSocket>) {
        self.admission.register_udp(sock);
    }

    fn try_fast(&self, query: &[u8], client: Client, out: &mut Vec<u8>) -> Fast {
        let a = &*self.admission;
        let view = QueryView::parse(query).ok();
        let c = a.cookie(view.as_ref(), client);
        a.count_cookie(c);
        let udp = client.door == Door::Udp;
        let valid = matches!(c, Cookie::Valid(..));
        // A valid server cookie proves the address, as an exempt network is
        // trusted: neither is held to the UDP limits.
        let proven = valid || a.exempt(client.addr);
        if udp && valid && a.rrl.is_some() {
            bump(&a.stats.cookie_exempt);
        }
        // A query that does not parse goes on (to FORMERR, or nothing),
        // under the rate limit like any other.
        if let Some(v) = view.as_ref()
            && udp
            && a.config.require_cookies
            && !proven
        {
            return Fast::Answered(a.minimal(v, c, client, out));
        }
        let (rrl, key, now_ms) = match &a.rrl {
            Some(rrl) if udp && !proven => (Some(rrl), a.key(client.addr), coarse_ms()),
            _ => (None, 0, 0),
        };
        let mut capped = false;
        if let Some(rrl) = rrl {
            match rrl.response(key, now_ms) {
                Verdict::Allow => {}
                Verdict::Capped => capped = true,
                over => return a.over_limit(over, view.as_ref(), c, client, out),
            }
        }
        match self.inner.try_fast(query, client, out) {
            Fast::Answered(len) => {
                if let Some(rrl) = rrl {
                    if is_error(&out[..len]) {
                        let verdict = rrl.error(key, now_ms);
                        if matches!(verdict, Verdict::Slip | Verdict::Drop) {
                            return a.over_limit(verdict, view.as_ref(), c, client, out);
                        }
                    }
                    // A network flooding faster than its rate gets nothing
                    // larger than what it sent: no amplification.
                    if capped
                        && len > query.len()
                        && let Some(v) = view.as_ref()
                    {
                        bump(&a.stats.capped);
                        return Fast::Answered(a.minimal(v, Cookie::None, client, out));
                    }
                }
                Fast::Answered(a.add_cookie(c, client, view.as_ref(), out, len))
            }
            // Misses cost the resolver real work. Over its miss rate a
            // network is limited like any other; and while a receive loop
            // is behind (the kernel's queue growing), a miss costs fifty
            // tokens and only networks that have been missing less than
            // their rate may start one, so the CPU goes to cache hits and
            // to clients asking normally.
            Fast::Miss => {
                let behind = rrl.is_some() && a.inflight.behind();
                let cost = if behind { BEHIND_MISS_COST } else { 1 };
                match rrl.map_or(Verdict::Allow, |rrl| rrl.miss(key, now_ms, cost)) {
                    Verdict::Allow => Fast::Miss,
                    Verdict::Capped if !behind => Fast::Miss,
                    Verdict::Capped => {
                        bump(&a.stats.shed);
                        Fast::Drop
                    }
                    over => a.over_limit(over, view.as_ref(), c, client, out),
                }
            }
            other => other,
        }
    }

    fn answer<'a>(&'a self, query: &'a [u8], client: Client, out: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>> {
        Box::pin(async move {
            let a = &*self.admission;
            let exempt = a.exempt(client.addr);
            let Some(slot) = a.slot(client.addr, exempt) else {
                // Datagram clients retry; stream clients get an answer.
                if client.door == Door::Udp {
                    return None;
                }
                let view = QueryView::parse(query).ok()?;
                return Some(busy(&view, out));
            };
            let len = self.inner.answer(query, client, out).await?;
            drop(slot);
            let view = QueryView::parse(query).ok();
            let c = a.cookie(view.as_ref(), client);
            let limited = match &a.rrl {
                Some(rrl) if client.door == Door::Udp && !exempt && !matches!(c, Cookie::Valid(..)) => Some(rrl),
                _ => None,
            };
            if let Some(rrl) = limited {
                let key = a.key(client.addr);
                if out.get(..len).is_some_and(is_error) {
                    let verdict = rrl.error(key, coarse_ms());
                    if matches!(verdict, Verdict::Slip | Verdict::Drop) {
                        return match a.over_limit(verdict, view.as_ref(), c, client, out) {
                            Fast::Answered(n) => Some(n),
                            _ => None,
                        };
                    }
                }
                // As on the fast path: nothing larger than the query to a
                // network spending faster than its rate.
                if len > query.len()
                    && let Some(v) = view.as_ref()
                    && rrl.is_pressed(key, coarse_ms())
                {
                    bump(&a.stats.capped);
                    return Some(a.minimal(v, Cookie::None, client, out));
                }
            }
            Some(a.add_cookie(c, client, view.as_ref(), out, len))
        })
    }
}

/// SERVFAIL with an EDE saying the server is too busy for this network.
fn busy(view: &QueryView<'_>, out: &mut Vec<u8>) -> usize {
    out.clear();
    let fl = flags::QR | flags::RA | (view.flags & (flags::RD | flags::CD)) | Rcode::ServFail as u16;
    let mut w = MessageWriter::new(out, view.id, fl);
    w.question(view.qname, view.qtype, view.qclass);
    if view.edns.is_some() {
        let ede = proto::Ede::new(proto::ede::code::OTHER, "too many queries in progress from this network");
        w.opt(1232, false, 0, &[ede]);
    }
    let n = w.finish();
    debug_assert!(n >= HEADER_LEN);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::wire::OPT_COOKIE;

    /// Answers every query from its "cache": NOERROR echoing the question,
    /// with an OPT record; names starting with "nx" get NXDOMAIN; names
    /// starting with "slow" miss and wait on the slow path.
    struct Cache {
        gate: tokio::sync::Semaphore,
    }

    impl Cache {
        fn respond(query: &[u8], out: &mut Vec<u8>) -> usize {
            let view = QueryView::parse(query).expect("query");
            let rcode = if view.qname.get(1..3) == Some(b"nx") { Rcode::NxDomain } else { Rcode::NoError };
            out.clear();
            let mut w = MessageWriter::new(out, view.id, flags::QR | flags::RA | rcode as u16);
            w.question(view.qname, view.qtype, view.qclass);
            if view.qname.windows(3).any(|w| w == b"big") {
                let name = proto::Name::from_wire(view.qname).expect("name");
                let txt =
                    proto::Record { name, rtype: proto::rtype::TXT, class: 1, ttl: 60, rdata: vec![b'x'; 400].into() };
                w.record(proto::build::Section::Answer, &txt);
            }
            if view.edns.is_some() {
                w.opt(1232, false, 0, &[]);
            }
            w.finish()
        }
    }

    impl Handler for Cache {
        fn try_fast(&self, query: &[u8], _: Client, out: &mut Vec<u8>) -> Fast {
            if query.get(13..17) == Some(b"slow") {
                return Fast::Miss;
            }
            Fast::Answered(Cache::respond(query, out))
        }

        fn answer<'a>(&'a self, query: &'a [u8], _: Client, out: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>> {
            Box::pin(async move {
                let _pass = self.gate.acquire().await.ok()?;
                Some(Cache::respond(query, out))
            })
        }
    }

    fn query(name: &str, cookie: Option<&[u8]>) -> Vec<u8> {
        let mut q = Vec::new();
        let mut w = MessageWriter::new(&mut q, 0x4242, flags::RD);
        let wire = proto::Name::from_ascii(name).expect("name");
        w.question(wire.as_wire(), proto::rtype::A, proto::class::IN);
        match cookie {
            Some(c) => w.opt_with(1232, false, &[(OPT_COOKIE, c)]),
            None => w.opt(1232, false, 0, &[]),
        }
        w.finish();
        q
    }

    fn udp(addr: &str) -> Client {
        Client { door: Door::Udp, addr: addr.parse().expect("address") }
    }

    fn admission(rate: u32, slip: u32, tweak: impl FnOnce(&mut AdmissionConfig)) -> (Arc<Admission>, Arc<dyn Handler>) {
        let mut config = AdmissionConfig {
            rate_limit: Some(RateLimits {
                responses_per_second: rate,
                errors_per_second: rate / 2,
                misses_per_second: rate,
                burst_seconds: 1,
                slip,
                table_size: 1024,
                flood_per_second: rate * 4,
            }),
            ..AdmissionConfig::default()
        };
        tweak(&mut config);
        let a = Admission::new(config, crate::InFlight::default());
        let h = a.wrap(Arc::new(Cache { gate: tokio::sync::Semaphore::new(1000) }));
        (a, h)
    }

    /// The COOKIE option of a response, if any.
    fn response_cookie(msg: &[u8]) -> Option<Vec<u8>> {
        let (rdlen_at, end) = cookie::find_opt(msg)?;
        let mut o = rdlen_at + 2;
        while o + 4 <= end {
            let code = u16::from_be_bytes([msg[o], msg[o + 1]]);
            let len = u16::from_be_bytes([msg[o + 2], msg[o + 3]]) as usize;
            if code == OPT_COOKIE {
                return Some(msg[o + 4..o + 4 + len].to_vec());
            }
            o += 4 + len;
        }
        None
    }

    /// The full RCODE: header bits and the OPT record's extension.
    fn rcode(msg: &[u8]) -> u16 {
        let ext = cookie::find_opt(msg).map_or(0, |(rdlen_at, _)| u16::from(msg[rdlen_at - 4]));
        (ext << 4) | u16::from(msg[3] & 0x0f)
    }

    #[test]
    fn a_flooding_network_is_limited_with_slips_no_larger_than_the_query() {
        let (a, h) = admission(20, 2, |_| {});
        let q = query("www.example.test", None);
        let mut out = Vec::new();
        let (mut answered, mut slipped, mut dropped) = (0, 0, 0);
        for i in 0..200 {
            // Spread over the /24: it is the network that is limited.
            match h.try_fast(&q, udp(&format!("192.0.2.{}", i % 250)), &mut out) {
                Fast::Answered(n) if out[2] & 0x02 != 0 => {
                    slipped += 1;
                    assert!(n <= q.len(), "slip of {n} octets for a query of {}", q.len());
                    assert_eq!(&out[12..n.min(12 + 18)], &q[12..n.min(12 + 18)], "the question is echoed");
                }
                Fast::Answered(_) => answered += 1,
                Fast::Drop => dropped += 1,
                Fast::Miss => panic!("no miss expected"),
            }
        }
        assert_eq!(answered, 20);
        assert_eq!(slipped, 90);
        assert_eq!(dropped, 90);
        let stats = a.stats().snapshot();
        assert_eq!(stats[0], ("slip", 90));
        assert_eq!(stats[1], ("drop", 90));
        // Another network, and the same one over TCP, are untouched.
        assert!(matches!(h.try_fast(&q, udp("198.51.100.1"), &mut out), Fast::Answered(_)) && out[2] & 0x02 == 0);
        let tcp = Client { door: Door::Tcp, addr: "192.0.2.1".parse().expect("ip") };
        assert!(matches!(h.try_fast(&q, tcp, &mut out), Fast::Answered(_)) && out[2] & 0x02 == 0);
    }

    #[tokio::test]
    async fn a_network_flooding_past_its_limit_goes_into_the_kernel_filter() {
        let (a, h) = admission(20, 2, |_| {});
        let rx = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind"));
        h.register_udp(&rx);
        let q = query("www.example.", None);
        let mut out = Vec::new();
        // A network asking at its limit is not a flood (80 a second, 20 in
        // a quarter of a second, would be).
        for _ in 0..15 {
            h.try_fast(&q, udp("192.0.2.9"), &mut out);
        }
        let mut feed = Feed::default();
        a.feed_kernel_filter(&mut feed);
        assert_eq!(a.kernel_filtered_networks(), 0);
        // Four times its limit within a quarter of a second is.
        for _ in 0..45 {
            h.try_fast(&q, udp("198.51.100.7"), &mut out);
            h.try_fast(&q, udp("198.51.100.8"), &mut out);
        }
        a.feed_kernel_filter(&mut feed);
        assert_eq!(a.kernel_filtered_networks(), 1);
        assert_eq!(a.stats().kernel_filtered.load(Ordering::Relaxed), 1);
        // Off: nothing is ever filtered.
        let (a, h) = admission(20, 2, |c| c.kernel_filter_seconds = 0);
        h.register_udp(&rx);
        for _ in 0..100 {
            h.try_fast(&q, udp("198.51.100.7"), &mut out);
        }
        a.feed_kernel_filter(&mut feed);
        assert_eq!(a.kernel_filtered_networks(), 0);
    }

    #[test]
    fn the_hit_path_allocates_nothing() {
        let (_, h) = admission(2_000_000, 2, |_| {});
        let mut out = Vec::with_capacity(1232);
        let plain = query("www.example.test", None);
        let cookie = query("www.example.test", Some(&[1; 8]));
        // Warm up: arc-swap gives each thread its slot on first use.
        h.try_fast(&plain, udp("192.0.2.1"), &mut out);
        h.try_fast(&cookie, udp("192.0.2.1"), &mut out);
        let info = allocation_counter::measure(|| {
            for _ in 0..100 {
                assert!(matches!(h.try_fast(&plain, udp("192.0.2.1"), &mut out), Fast::Answered(_)));
                assert!(matches!(h.try_fast(&cookie, udp("192.0.2.1"), &mut out), Fast::Answered(_)));
            }
        });
        assert_eq!(info.count_total, 0, "allocations: {info:?}");
    }

    #[test]
    fn a_network_spending_past_its_rate_gets_nothing_larger_than_its_query() {
        let (a, h) = admission(10, 1, |_| {});
        let big = query("big.example.test", None);
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for _ in 0..10 {
            let Fast::Answered(n) = h.try_fast(&big, udp("192.0.2.1"), &mut out) else { panic!("answered") };
            sizes.push((n, out[2] & 0x02 != 0));
        }
        // Half the bucket is answered in full, then only what fits in the
        // query's size: the large answer becomes a truncated one.
        assert!(sizes[..5].iter().all(|&(n, tc)| n > big.len() && !tc), "{sizes:?}");
        assert!(sizes[5..].iter().all(|&(n, tc)| n <= big.len() && tc), "{sizes:?}");
        assert_eq!(a.stats().capped.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn cache_misses_have_their_own_rate() {
        let (_, h) = admission(10, 1, |c| {
            if let Some(r) = c.rate_limit.as_mut() {
                (r.responses_per_second, r.misses_per_second) = (1000, 5);
            }
        });
        let slow = query("slow.example.test", None);
        let mut out = Vec::new();
        let verdicts: Vec<bool> =
            (0..20).map(|_| h.try_fast(&slow, udp("192.0.2.1"), &mut out) == Fast::Miss).collect();
        assert_eq!(verdicts.iter().filter(|m| **m).count(), 5, "five misses a second may resolve: {verdicts:?}");
        // Hits from the same network are not affected.
        assert!(matches!(h.try_fast(&query("www.example.test", None), udp("192.0.2.1"), &mut out), Fast::Answered(_)));
        assert_eq!(out[2] & 0x02, 0);
    }

    #[tokio::test]
    async fn a_slow_path_answer_to_a_pressed_network_is_no_larger_than_its_query() {
        let (_, h) = admission(10, 1, |_| {});
        let mut out = Vec::new();
        // Spend the bucket past half with large cached answers first.
        let big = query("big.example.test", None);
        for _ in 0..6 {
            h.try_fast(&big, udp("192.0.2.1"), &mut out);
        }
        // A slow-path answer larger than its query is then sent truncated,
        // and to a fresh network in full.
        let slow_big = query("slowbig.example.test", None);
        let n = h.answer(&slow_big, udp("192.0.2.1"), &mut out).await.expect("answer");
        assert!(n <= slow_big.len() && out[2] & 0x02 != 0, "{n} octets");
        let n = h.answer(&slow_big, udp("198.51.100.1"), &mut out).await.expect("answer");
        assert_eq!(out[2] & 0x02, 0);
        assert!(n > slow_big.len());
    }

    #[test]
    fn errors_are_limited_lower_and_exempt_networks_not_at_all() {
        let (_, h) = admission(100, 0, |c| c.exempt = vec![("203.0.113.0".parse().expect("ip"), 24)]);
        let nx = query("nx1.example.test", None);
        let mut out = Vec::new();
        let ok = (0..100).filter(|_| matches!(h.try_fast(&nx, udp("192.0.2.1"), &mut out), Fast::Answered(_))).count();
        assert_eq!(ok, 50);
        let ok =
            (0..500).filter(|_| matches!(h.try_fast(&nx, udp("203.0.113.9"), &mut out), Fast::Answered(_))).count();
        assert_eq!(ok, 500);
    }

    #[test]
    fn cookies_are_answered_and_a_valid_one_exempts_from_the_limit() {
        let (a, h) = admission(5, 0, |_| {});
        let client = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut out = Vec::new();
        let Fast::Answered(n) = h.try_fast(&query("www.example.test", Some(&client)), udp("192.0.2.7"), &mut out)
        else {
            panic!("answered");
        };
        let c = response_cookie(&out[..n]).expect("a server cookie");
        assert_eq!(c.len(), 24);
        assert_eq!(&c[..8], &client);
        let secrets = a.secrets.current(unix_now());
        let verdict = cookie::check_server_cookie(
            &secrets[..],
            &client,
            &c[8..],
            "192.0.2.7".parse().expect("ip"),
            unix_now() as u32,
        );
        assert!(matches!(verdict, ServerCookie::Valid { .. }));
        // With it, far past the limit of 5, every query is answered, and
        // the same cookie comes back (it is fresh).
        let with = query("www.example.test", Some(&c));
        for _ in 0..50 {
            let Fast::Answered(n) = h.try_fast(&with, udp("192.0.2.7"), &mut out) else { panic!("exempt") };
            assert_eq!(out[2] & 0x02, 0);
            assert_eq!(response_cookie(&out[..n]).as_deref(), Some(&c[..]));
        }
        // The cookie is bound to the address: from another it is invalid,
        // and that client is limited like any other.
        let limited =
            (0..50).filter(|_| !matches!(h.try_fast(&with, udp("192.0.2.8"), &mut out), Fast::Answered(_))).count();
        assert_eq!(limited, 46, "the network has 4 of its 5 left");
        assert!(a.stats().cookie_invalid.load(Ordering::Relaxed) >= 50);
    }

    #[test]
    fn over_the_limit_a_client_cookie_gets_badcookie_with_a_fresh_server_cookie() {
        let (_, h) = admission(1, 1, |_| {});
        let client = [9; 8];
        let q = query("www.example.test", Some(&client));
        let mut out = Vec::new();
        assert!(matches!(h.try_fast(&q, udp("192.0.2.1"), &mut out), Fast::Answered(_)));
        let Fast::Answered(n) = h.try_fast(&q, udp("192.0.2.1"), &mut out) else { panic!("slipped") };
        assert_eq!(rcode(&out[..n]), BADCOOKIE);
        let c = response_cookie(&out[..n]).expect("cookie");
        // Retrying with it gets through.
        let retry = query("www.example.test", Some(&c));
        let Fast::Answered(n) = h.try_fast(&retry, udp("192.0.2.1"), &mut out) else { panic!("answered") };
        assert_eq!(rcode(&out[..n]), 0);
    }

    #[test]
    fn required_cookies_and_rotated_secrets() {
        let (a, h) = admission(1000, 2, |c| {
            c.require_cookies = true;
            c.cookie_secret = Some([3; 16]);
            c.cookie_secret_previous = Some([4; 16]);
        });
        let mut out = Vec::new();
        // No cookie at all: truncated, so the client comes back over TCP.
        let Fast::Answered(n) = h.try_fast(&query("www.example.test", None), udp("192.0.2.1"), &mut out) else {
            panic!("answered")
        };
        assert!(out[2] & 0x02 != 0 && rcode(&out[..n]) == 0);
        // A client cookie only: BADCOOKIE.
        let client = [5; 8];
        let Fast::Answered(n) = h.try_fast(&query("www.example.test", Some(&client)), udp("192.0.2.1"), &mut out)
        else {
            panic!("answered")
        };
        assert_eq!(rcode(&out[..n]), BADCOOKIE);
        // A cookie made with the previous secret is still good, and the
        // answer carries one made with the current secret.
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let now = unix_now() as u32;
        let mut old = client.to_vec();
        old.extend_from_slice(&cookie::server_cookie(&[4; 16], &client, ip, now - 2000));
        let Fast::Answered(n) = h.try_fast(&query("www.example.test", Some(&old)), udp("192.0.2.1"), &mut out) else {
            panic!("answered")
        };
        assert_eq!(rcode(&out[..n]), 0);
        let fresh = response_cookie(&out[..n]).expect("cookie");
        assert_ne!(fresh, old, "an old cookie is replaced");
        assert!(matches!(
            cookie::check_server_cookie(&[[3; 16]], &client, &fresh[8..], ip, now),
            ServerCookie::Valid { .. }
        ));
        // A cookie of a secret never held is not.
        let mut forged = client.to_vec();
        forged.extend_from_slice(&cookie::server_cookie(&[6; 16], &client, ip, now));
        let Fast::Answered(n) = h.try_fast(&query("www.example.test", Some(&forged)), udp("192.0.2.1"), &mut out)
        else {
            panic!("answered")
        };
        assert_eq!(rcode(&out[..n]), BADCOOKIE);
        assert_eq!(a.stats().badcookie.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_random_secret_rotates_and_keeps_the_previous() {
        let a = Admission::new(
            AdmissionConfig { cookie_rotation_s: 10, ..AdmissionConfig::default() },
            crate::InFlight::default(),
        );
        let first = **a.secrets.current(unix_now());
        let later = **a.secrets.current(unix_now() + 11);
        assert_ne!(later[0], first[0]);
        assert_eq!(later[1], first[0]);
    }

    #[tokio::test]
    async fn one_network_cannot_take_every_resolution_slot() {
        let (a, _) = admission(1_000_000, 2, |c| {
            c.max_resolutions = 10;
            c.max_resolutions_per_prefix = 4;
        });
        // A gate that holds every resolution until opened.
        let inner = Arc::new(Cache { gate: tokio::sync::Semaphore::new(0) });
        let h = a.wrap(inner.clone());
        let q = query("slow.example.test", None);
        let mut tasks = Vec::new();
        for i in 0..6 {
            let (h, q) = (h.clone(), q.clone());
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                h.answer(&q, udp(&format!("192.0.2.{i}")), &mut out).await
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(a.stats().shed.load(Ordering::Relaxed), 2, "two over the network's share of 4");
        // Another network still gets a slot; over TCP a shed query is
        // answered SERVFAIL rather than left unanswered.
        let (h2, q2) = (h.clone(), q.clone());
        let other = tokio::spawn(async move {
            let mut out = Vec::new();
            h2.answer(&q2, udp("198.51.100.1"), &mut out).await
        });
        let mut out = Vec::new();
        let tcp = Client { door: Door::Tcp, addr: "192.0.2.1".parse().expect("ip") };
        let n = h.answer(&q, tcp, &mut out).await.expect("an answer");
        assert_eq!(out[3] & 0x0f, Rcode::ServFail as u8);
        assert!(n > 12);
        inner.gate.add_permits(100);
        let done: Vec<Option<usize>> =
            futures_util::future::join_all(tasks).await.into_iter().map(|r| r.expect("task")).collect();
        assert_eq!(done.iter().filter(|r| r.is_some()).count(), 4);
        assert!(other.await.expect("task").is_some());
        assert_eq!(a.slots.total.load(Ordering::Relaxed), 0, "slots are given back");
    }

    #[tokio::test]
    async fn while_behind_a_network_holds_a_fiftieth_of_its_share() {
        let (a, _) = admission(1_000_000, 2, |c| c.max_resolutions_per_prefix = 100);
        let inner = Arc::new(Cache { gate: tokio::sync::Semaphore::new(0) });
        let h = a.wrap(inner.clone());
        a.inflight.mark_behind();
        let q = query("slow.example.test", None);
        let tasks: Vec<_> = (0..5)
            .map(|i| {
                let (h, q) = (h.clone(), q.clone());
                tokio::spawn(async move { h.answer(&q, udp(&format!("192.0.2.{i}")), &mut Vec::new()).await })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(a.stats().shed.load(Ordering::Relaxed), 3, "2 of 100 / 50 held, 3 shed");
        inner.gate.add_permits(100);
        let answered =
            futures_util::future::join_all(tasks).await.into_iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        assert_eq!(answered, 2);
    }
}

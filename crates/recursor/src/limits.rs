//! Upstream protection: the resolver must not become a weapon.
//!
//! A random-subdomain ("water torture") flood asks for names nobody has
//! asked before, so every query misses the cache and would go to the
//! victim zone's servers. Aggressive NSEC (RFC 8198) stops it for signed
//! zones with NSEC; for the rest, [`UpstreamLimiter`] caps what one zone and
//! one server address receive: queries per second (a token bucket per zone
//! and per address, Unbound's `ratelimit` and `ip-ratelimit` are the
//! anchors) and queries in flight per zone. A query over a limit is not
//! sent; the resolution ends with [`crate::ResolveError::UpstreamLimited`]
//! (SERVFAIL with EDE 22, or stale data where the service has some).
//!
//! Tables are bounded: entries whose buckets are full and that have
//! nothing in flight carry no information and are dropped when a table
//! grows past its bound.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use proto::Name;
use tokio::time::Instant;

/// Most zones or addresses tracked before idle entries are dropped.
const MAX_TRACKED: usize = 50_000;

/// Limits on what the resolver sends upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// Queries per second to the servers of one zone below a TLD.
    pub zone_per_second: u32,
    /// Queries per second to the servers of the root or of one TLD (a
    /// busy resolver's cold names all pass through them).
    pub tld_per_second: u32,
    /// Queries in flight to the servers of one zone.
    pub zone_in_flight: u32,
    /// Queries per second to one server address.
    pub server_per_second: u32,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits { zone_per_second: 500, tld_per_second: 5000, zone_in_flight: 200, server_per_second: 10_000 }
    }
}

/// Why a query was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The zone is over its rate or in-flight limit.
    Zone,
    /// This server address is over its rate.
    Server,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, a fraction allowed.
    tokens: f64,
    last: Instant,
    in_flight: u32,
}

impl Bucket {
    fn full(rate: u32, now: Instant) -> Bucket {
        Bucket { tokens: f64::from(rate), last: now, in_flight: 0 }
    }

    fn refill(&mut self, rate: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        // A bucket holds at most one second of queries.
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(rate));
        self.last = now;
    }

    fn idle(&self, rate: u32, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        b.in_flight == 0 && b.tokens >= f64::from(rate)
    }
}

/// Per-zone and per-server upstream limits, shared by every resolution.
#[derive(Debug)]
pub struct UpstreamLimiter {
    limits: UpstreamLimits,
    zones: Mutex<HashMap<Name, Bucket>>,
    servers: Mutex<HashMap<SocketAddr, Bucket>>,
    refused_zone: AtomicU64,
    refused_server: AtomicU64,
}

/// A query in flight to a zone; the count drops with it.
pub(crate) struct Permit<'a> {
    limiter: &'a UpstreamLimiter,
    zone: Name,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut zones = self.limiter.zones.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = zones.get_mut(&self.zone) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }
}

fn prune<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, Bucket>, rate: u32, now: Instant) {
    if map.len() >= MAX_TRACKED {
        map.retain(|_, b| !b.idle(rate, now));
        // Every entry busy (a flood over many zones): forget the fullest
        // half rather than grow.
        if map.len() >= MAX_TRACKED {
            let mut levels: Vec<f64> = map.values().map(|b| b.tokens).collect();
            levels.sort_by(f64::total_cmp);
            let cut = levels[levels.len() / 2];
            map.retain(|_, b| b.in_flight > 0 || b.tokens < cut);
        }
    }
}

impl UpstreamLimiter {
    /// A limiter with nothing tracked.
    pub fn new(limits: UpstreamLimits) -> UpstreamLimiter {
        UpstreamLimiter {
            limits,
            zones: Mutex::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
            refused_zone: AtomicU64::new(0),
            refused_server: AtomicU64::new(0),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> UpstreamLimits {
        self.limits
    }

    /// Queries not sent so far: over a zone's limit, over a server's.
    pub fn refused(&self) -> (u64, u64) {
        (self.refused_zone.load(Ordering::Relaxed), self.refused_server.load(Ordering::Relaxed))
    }

    /// Takes a token of `zone` and of `server` and an in-flight place of
    /// `zone`, or says which limit refuses.
    pub(crate) fn acquire(&self, zone: &Name, server: SocketAddr) -> Result<Permit<'_>, Refusal> {
        self.acquire_at(zone, server, Instant::now())
    }

    fn acquire_at(&self, zone: &Name, server: SocketAddr, now: Instant) -> Result<Permit<'_>, Refusal> {
        let l = self.limits;
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut zones, l.zone_per_second.max(l.tld_per_second), now);
        let rate = if zone.label_count() <= 1 { l.tld_per_second } else { l.zone_per_second };
        let z = zones.entry(zone.clone()).or_insert_with(|| Bucket::full(rate, now));
        z.refill(rate, now);
        if z.tokens < 1.0 || z.in_flight >= l.zone_in_flight {
            self.refused_zone.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Zone);
        }
        {
            let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
            prune(&mut servers, l.server_per_second, now);
            let s = servers.entry(server).or_insert_with(|| Bucket::full(l.server_per_second, now));
            s.refill(l.server_per_second, now);
            if s.tokens < 1.0 {
                self.refused_server.fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Server);
            }
            s.tokens -= 1.0;
        }
        z.tokens -= 1.0;
        z.in_flight += 1;
        Ok(Permit { limiter: self, zone: zone.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    #[test]
    fn a_zone_gets_its_rate_and_no_more() {
        let l = UpstreamLimiter::new(UpstreamLimits {
            zone_per_second: 10,
            tld_per_second: 100,
            zone_in_flight: 100,
            server_per_second: 1000,
        });
        let victim = name("victim.test.");
        let s: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let sent = (0..100).filter_map(|_| l.acquire(&victim, s).ok()).count();
        assert_eq!(sent, 10);
        assert_eq!(l.refused(), (90, 0));
        // Another zone on the same server is not affected, and a TLD has
        // its own, higher rate.
        assert!(l.acquire(&name("other.test."), s).is_ok());
        assert_eq!((0..200).filter(|_| l.acquire(&name("test."), s).is_ok()).count(), 100);
        // Half a second later, five more.
        let later = Instant::now() + std::time::Duration::from_millis(500);
        let sent = (0..100).filter_map(|_| l.acquire_at(&victim, s, later).ok()).count();
        assert_eq!(sent, 5);
    }

    #[test]
    fn in_flight_is_bounded_and_released() {
        let l = UpstreamLimiter::new(UpstreamLimits {
            zone_per_second: 1000,
            tld_per_second: 1000,
            zone_in_flight: 3,
            server_per_second: 1000,
        });
        let z = name("slow.test.");
        let s: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let held: Vec<_> = (0..3).map(|_| l.acquire(&z, s).expect("room")).collect();
        assert_eq!(l.acquire(&z, s).err(), Some(Refusal::Zone));
        drop(held);
        assert!(l.acquire(&z, s).is_ok());
    }

    #[test]
    fn a_server_has_its_own_rate() {
        let l = UpstreamLimiter::new(UpstreamLimits {
            zone_per_second: 1000,
            tld_per_second: 1000,
            zone_in_flight: 1000,
            server_per_second: 4,
        });
        let s: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        let t: SocketAddr = "127.0.0.2:53".parse().expect("addr");
        let sent = (0..10).filter(|i| l.acquire(&name(&format!("z{i}.test.")), s).is_ok()).count();
        assert_eq!(sent, 4);
        assert!(l.acquire(&name("z.test."), t).is_ok());
        assert_eq!(l.refused(), (0, 6));
    }

    #[test]
    fn the_tables_stay_bounded() {
        let l = UpstreamLimiter::new(UpstreamLimits {
            zone_per_second: 5,
            tld_per_second: 5,
            zone_in_flight: 5,
            server_per_second: 1_000_000,
        });
        let s: SocketAddr = "127.0.0.1:53".parse().expect("addr");
        for i in 0..(MAX_TRACKED + 1000) {
            let _ = l.acquire(&name(&format!("z{i}.test.")), s);
        }
        assert!(l.zones.lock().expect("lock").len() <= MAX_TRACKED);
    }
}

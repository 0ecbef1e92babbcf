//! What we know about authoritative servers: smoothed RTT and EDNS support
//! by address; timeouts, back-off and lameness by address and zone (as
//! Unbound's infrastructure cache keeps them): one address often serves
//! many zones, and a server that drops one zone's queries (a rate limit, a
//! broken zone, a filter) must not take the others with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use proto::Name;
use tokio::time::Instant;

/// How long a server stays marked lame for a zone.
const LAME_FOR: Duration = Duration::from_secs(900);
/// Rank penalties: above any smoothed RTT (at most 120,000 ms), so servers
/// backing off, then lame ones, sort after every server worth a query.
const BACKOFF_PENALTY: u64 = 1_000_000;
const LAME_PENALTY: u64 = 10_000_000;
/// How long a server never heard from has to answer before another is
/// asked too: above most of the internet's round trips (Unbound waits 376
/// ms for an unknown server before it times out).
const UNKNOWN_HEDGE: Duration = Duration::from_millis(250);
/// How long a server's RTT estimate is trusted without a new reply
/// (Unbound's `infra-host-ttl`): older, the server ranks as if never heard
/// from, so one that was slow once (a loss, a busy minute) is tried again
/// and one that has become slow is found out, and its next reply starts
/// the estimate afresh.
const SRTT_TTL: Duration = Duration::from_secs(900);
/// Most entries kept; beyond this the table is cleared (it refills fast).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
struct ServerInfo {
    /// Smoothed RTT in ms (RFC 6298 style, alpha 1/8).
    srtt_ms: u32,
    /// Answered FORMERR to EDNS: query it without OPT.
    no_edns: bool,
    /// Whether `srtt_ms` comes from replies; until then it is a placeholder
    /// (what was waited in vain), replaced by the first reply's RTT.
    measured: bool,
    /// When the estimate was made or last updated.
    at: Instant,
}

impl ServerInfo {
    /// The RTT estimate, if it is young enough to rank by.
    fn srtt(&self, now: Instant) -> Option<u32> {
        (now.saturating_duration_since(self.at) < SRTT_TTL).then_some(self.srtt_ms)
    }
}

/// Timeouts of one server for one zone.
#[derive(Debug, Clone, Copy)]
struct Failing {
    /// Consecutive timeouts.
    timeouts: u32,
    /// Not tried again for the zone before this.
    backoff_until: Instant,
}

/// How long a delegation whose name servers have no address is first
/// remembered as such, doubled while it stays so, at most [`DEAD_MAX`].
const DEAD_FIRST: Duration = Duration::from_secs(5);
/// The longest a dead delegation is remembered (RFC 9520's five minutes).
const DEAD_MAX: Duration = Duration::from_secs(300);

/// Server statistics shared by all resolutions.
#[derive(Debug, Default)]
pub struct Infra {
    servers: Mutex<HashMap<SocketAddr, ServerInfo>>,
    /// Servers that timed out for a zone, until they answer for it again.
    failing: Mutex<HashMap<(SocketAddr, Name), Failing>>,
    lame: Mutex<HashMap<(SocketAddr, Name), Instant>>,
    /// Zones none of whose name servers could be given an address (a
    /// cyclic dependency, names that do not exist): until when, and for
    /// how long last time.
    dead: Mutex<HashMap<Name, (Instant, Duration)>>,
    /// DNS Cookies (RFC 7873) per server: our client cookie, and the
    /// server cookie it last gave us.
    cookies: Mutex<HashMap<SocketAddr, Cookies>>,
}

/// Our client cookie for a server, and the server cookie it gave us.
type Cookies = ([u8; 8], Option<Box<[u8]>>);

impl Infra {
    /// Orders candidate addresses best first: servers backing off for
    /// `zone` after timeouts last, then by smoothed RTT; unknown servers
    /// get a small random RTT so that every server gets tried. Returns how
    /// many lead the order that are worth a query now (neither lame for
    /// `zone` nor backing off for it).
    pub fn rank(&self, addrs: &mut [SocketAddr], zone: &Name) -> usize {
        let now = Instant::now();
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let lame = self.lame.lock().unwrap_or_else(|e| e.into_inner());
        let mut scored: Vec<(u64, SocketAddr)> = addrs
            .iter()
            .map(|a| {
                let key = (*a, zone.clone());
                let mut score = match servers.get(a).and_then(|i| i.srtt(now)) {
                    Some(ms) => u64::from(ms),
                    None => rand::random_range(0..20),
                };
                if failing.get(&key).is_some_and(|f| f.backoff_until > now) {
                    score += BACKOFF_PENALTY;
                }
                if lame.get(&key).is_some_and(|t| *t > now) {
                    score += LAME_PENALTY;
                }
                (score, *a)
            })
            .collect();
        scored.sort_by_key(|(s, _)| *s);
        let available = scored.iter().take_while(|(s, _)| *s < BACKOFF_PENALTY).count();
        for (slot, (_, a)) in addrs.iter_mut().zip(scored) {
            *slot = a;
        }
        available
    }

    /// The timeout to use for `addr` asked about `zone`: four smoothed RTTs
    /// and 100 ms, doubled for each timeout it had for the zone.
    pub fn timeout(&self, addr: &SocketAddr, zone: &Name, initial: Duration, max: Duration) -> Duration {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = servers.get(addr) else { return initial };
        let timeouts = {
            let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
            failing.get(&(*addr, zone.clone())).map_or(0, |f| f.timeouts)
        };
        let base = Duration::from_millis(u64::from(i.srtt_ms) * 4 + 100);
        (base * 2u32.saturating_pow(timeouts.min(4))).clamp(Duration::from_millis(200), max)
    }

    /// How long to wait for `addr` before asking another server as well:
    /// twice its smoothed RTT and 30 ms (network jitter, the server's own
    /// work), or [`UNKNOWN_HEDGE`] for a server never heard from.
    pub fn hedge_delay(&self, addr: &SocketAddr) -> Duration {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        let srtt = servers.get(addr).and_then(|i| i.srtt(Instant::now()));
        srtt.map_or(UNKNOWN_HEDGE, |ms| Duration::from_millis(u64::from(ms) * 2 + 30))
    }

    /// Records a reply from `addr` about `zone` after `rtt`.
    pub fn reply(&self, addr: SocketAddr, zone: &Name, rtt: Duration) {
        let ms = rtt.as_millis().min(60_000) as u32;
        {
            let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let e = server(&mut servers, addr, ms);
            e.srtt_ms = if e.measured && e.srtt(now).is_some() { (e.srtt_ms * 7 + ms) / 8 } else { ms };
            e.measured = true;
            e.at = now;
        }
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if !failing.is_empty() {
            failing.remove(&(addr, zone.clone()));
        }
    }

    /// Records that `addr` did not answer for `zone` within `waited`: it
    /// timed out, or another server answered first (it may only be slow,
    /// but another server is there). The server is avoided for the zone
    /// for a while that doubles with each consecutive failure (2 s to 64
    /// s), and its next timeout there doubles too. Its RTT estimate, kept
    /// by address, is left alone: one address often serves many zones, and
    /// what it does for one must not slow the others down; a server never
    /// heard from gets what was waited as a placeholder, so it ranks behind
    /// those that have answered.
    pub fn timed_out(&self, addr: SocketAddr, zone: &Name, waited: Duration) {
        {
            let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
            server(&mut servers, addr, waited.as_millis().min(60_000) as u32);
        }
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.len() > MAX_ENTRIES {
            failing.clear();
        }
        let now = Instant::now();
        let f = failing.entry((addr, zone.clone())).or_insert(Failing { timeouts: 0, backoff_until: now });
        f.timeouts = f.timeouts.saturating_add(1);
        f.backoff_until = now + Duration::from_secs(1u64 << f.timeouts.min(6));
    }

    /// Whether `addr` must be queried without EDNS.
    pub fn no_edns(&self, addr: &SocketAddr) -> bool {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.get(addr).is_some_and(|i| i.no_edns)
    }

    /// Remembers that `addr` does not speak EDNS.
    pub fn set_no_edns(&self, addr: SocketAddr) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        server(&mut servers, addr, 100).no_edns = true;
    }

    /// Whether `zone`'s name servers were found to have no address a
    /// short while ago: its names then fail at once, costing no query
    /// (TsuNAME, RFC 9520).
    pub fn delegation_dead(&self, zone: &Name) -> bool {
        let dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        dead.get(zone).is_some_and(|(until, _)| *until > Instant::now())
    }

    /// Remembers that no name server of `zone` could be given an address:
    /// for 5 s, doubled each time it happens again, at most 5 minutes.
    pub fn set_delegation_dead(&self, zone: &Name) {
        let mut dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        if dead.len() > MAX_ENTRIES {
            dead.clear();
        }
        let now = Instant::now();
        let span = match dead.get(zone) {
            Some((_, last)) => (*last * 2).min(DEAD_MAX),
            None => DEAD_FIRST,
        };
        dead.insert(zone.clone(), (now + span, span));
    }

    /// Forgets that `zone`'s delegation was dead (an address was found).
    pub fn set_delegation_alive(&self, zone: &Name) {
        let mut dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        dead.remove(zone);
    }

    /// The COOKIE option to send to `addr`: our client cookie for it (made
    /// at random the first time), then its server cookie if we have one.
    pub fn cookie_for(&self, addr: SocketAddr) -> Vec<u8> {
        let mut cookies = self.cookies.lock().unwrap_or_else(|e| e.into_inner());
        if cookies.len() > MAX_ENTRIES {
            cookies.clear();
        }
        let (client, server) = cookies.entry(addr).or_insert_with(|| (rand::random(), None));
        let mut out = client.to_vec();
        out.extend_from_slice(server.as_deref().unwrap_or_default());
        out
    }

    /// Keeps the server cookie of a reply from `addr` whose client cookie
    /// is ours (the transport has dropped the others).
    pub fn learn_cookie(&self, addr: SocketAddr, reply: &proto::Message) {
        let Some(Ok(c)) = crate::transport::reply_cookie(reply) else { return };
        let mut cookies = self.cookies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((client, server)) = cookies.get_mut(&addr)
            && *client == c.client
            && !c.server.is_empty()
        {
            *server = Some(c.server.into());
        }
    }

    /// Marks `addr` lame for `zone`.
    pub fn set_lame(&self, addr: SocketAddr, zone: &Name) {
        let mut lame = self.lame.lock().unwrap_or_else(|e| e.into_inner());
        if lame.len() > MAX_ENTRIES {
            lame.clear();
        }
        lame.insert((addr, zone.clone()), Instant::now() + LAME_FOR);
    }
}

/// `addr`'s entry in `servers`, made with `srtt_ms` as a placeholder RTT
/// when it has none (the table cleared first when it is full: it refills
/// fast).
fn server(servers: &mut HashMap<SocketAddr, ServerInfo>, addr: SocketAddr, srtt_ms: u32) -> &mut ServerInfo {
    if servers.len() > MAX_ENTRIES && !servers.contains_key(&addr) {
        servers.clear();
    }
    servers.entry(addr).or_insert(ServerInfo { srtt_ms, no_edns: false, measured: false, at: Instant::now() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    /// An RTT estimate nobody renewed for 15 minutes is not ranked by: the
    /// server counts as never heard from (tried again, hedged after 250 ms),
    /// and its next reply replaces the estimate instead of moving it an
    /// eighth of the way.
    #[tokio::test(start_paused = true)]
    async fn old_rtt_estimates_are_forgotten() {
        let infra = Infra::default();
        let zone = Name::from_ascii("example.test").expect("name");
        let slow: SocketAddr = "127.1.0.1:53".parse().expect("addr");
        infra.reply(slow, &zone, Duration::from_millis(300));
        assert_eq!(infra.hedge_delay(&slow), Duration::from_millis(630));
        tokio::time::advance(SRTT_TTL - Duration::from_secs(1)).await;
        assert_eq!(infra.hedge_delay(&slow), Duration::from_millis(630), "still trusted");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(infra.hedge_delay(&slow), UNKNOWN_HEDGE, "forgotten");
        infra.reply(slow, &zone, Duration::from_millis(100));
        assert_eq!(infra.hedge_delay(&slow), Duration::from_millis(230), "measured afresh");
        infra.reply(slow, &zone, Duration::from_millis(20));
        assert_eq!(infra.hedge_delay(&slow), Duration::from_millis(2 * 90 + 30), "then smoothed");
    }

    #[tokio::test]
    async fn fast_servers_first_timeouts_back_off_lame_last() {
        let infra = Infra::default();
        let zone = Name::from_ascii("example.test").expect("name");
        let (fast, slow, flaky, lame) =
            (sa("127.0.0.1:53"), sa("127.0.0.2:53"), sa("127.0.0.3:53"), sa("127.0.0.4:53"));
        infra.reply(fast, &zone, Duration::from_millis(5));
        infra.reply(slow, &zone, Duration::from_millis(80));
        infra.reply(flaky, &zone, Duration::from_millis(1));
        infra.timed_out(flaky, &zone, Duration::from_millis(800));
        // A timeout gives a server never heard from a placeholder RTT, which
        // its first reply replaces.
        let fresh = sa("127.0.0.5:53");
        infra.timed_out(fresh, &zone, Duration::from_millis(800));
        infra.reply(fresh, &zone, Duration::from_millis(7));
        assert_eq!(infra.hedge_delay(&fresh), Duration::from_millis(7 * 2 + 30));
        infra.reply(lame, &zone, Duration::from_millis(1));
        infra.set_lame(lame, &zone);
        let mut order = vec![lame, flaky, slow, fast];
        infra.rank(&mut order, &zone);
        assert_eq!(order, vec![fast, slow, flaky, lame]);
        // Lameness is per zone.
        let other = Name::from_ascii("other.test").expect("name");
        let mut order = vec![fast, lame];
        infra.rank(&mut order, &other);
        assert_eq!(order, vec![lame, fast]);
        // So are timeouts: for the other zone the flaky server ranks by its
        // RTT, first.
        let mut order = vec![slow, fast, flaky];
        assert_eq!(infra.rank(&mut order, &other), 3);
        assert_eq!(order, vec![flaky, fast, slow]);
        // An answer for the zone ends its back-off there.
        infra.reply(flaky, &zone, Duration::from_millis(1));
        let mut order = vec![flaky, slow];
        assert_eq!(infra.rank(&mut order, &zone), 2);
        // Timeouts grow with the RTT estimate and stay within bounds.
        let t = infra.timeout(&slow, &zone, Duration::from_millis(800), Duration::from_millis(1500));
        assert!(t >= Duration::from_millis(200) && t <= Duration::from_millis(1500));
        assert_eq!(
            infra.timeout(&sa("127.0.0.9:53"), &zone, Duration::from_millis(800), Duration::from_millis(1500)),
            Duration::from_millis(800)
        );
        infra.set_no_edns(slow);
        assert!(infra.no_edns(&slow) && !infra.no_edns(&fast));
    }
}

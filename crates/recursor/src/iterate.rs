//! The iterative algorithm.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cache::{Negative, Rank, RrsetCache, RrsetValue};
use proto::wire::{Rcode, flags, rtype};
use proto::{Message, Name, Record, class};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::budget::Budget;
use crate::infra::Infra;
use crate::transport::{BoxFuture, Transport, TransportError, UpstreamQuery};
use crate::{Clock, ForwardZone, RecursorConfig, ResolveError};

/// How a resolution ended (all are successes: NXDOMAIN is an answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Data of the asked type (possibly after a CNAME chain).
    Answer,
    /// The name exists without data of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// The result of resolving one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// What was found.
    pub outcome: Outcome,
    /// The answer section: CNAME/DNAME chain then the final RRset.
    pub answer: Vec<Record>,
    /// The authority section (the SOA of a negative answer).
    pub authority: Vec<Record>,
}

/// A server's reply, sorted out relative to the zone we asked it about.
#[derive(Debug)]
enum Classified {
    /// Data (a chain from the question name, in order).
    Answer { chain: Vec<Record>, authoritative: bool },
    /// No data of that type.
    NoData(Option<Record>),
    /// No such name.
    NxDomain(Option<Record>),
    /// A delegation to `child`, strictly below the zone.
    Referral { child: Name, ns: Vec<Record>, glue: Vec<Record> },
    /// Lame: not authoritative for the zone, or REFUSED.
    Lame,
    /// SERVFAIL, FORMERR, NOTIMP or something unusable.
    Failure,
}

/// Where to send queries for a zone.
#[derive(Debug, Clone)]
struct Cut {
    zone: Name,
    ns_names: Vec<Name>,
    addrs: Vec<SocketAddr>,
}

/// At most this many minimised steps before sending the full name
/// (MAX_MINIMISE_COUNT of RFC 9156).
const MAX_MINIMISE_STEPS: usize = 10;
/// How many name servers of a glueless delegation are resolved.
const MAX_GLUELESS_LOOKUPS: usize = 3;

type Shared = Arc<Result<Resolution, ResolveError>>;
/// Resolutions in flight, by question, for coalescing.
type InflightMap = Mutex<HashMap<(Name, u16), watch::Receiver<Option<Shared>>>>;

struct Inner {
    config: RecursorConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    cache: RrsetCache,
    infra: Infra,
    inflight: InflightMap,
}

/// The iterative resolver. Cheap to clone; all clones share caches.
#[derive(Clone)]
pub struct Recursor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recursor").field("cache", &self.inner.cache).finish()
    }
}

/// Removes an in-flight entry when the leading resolution ends or is
/// cancelled.
struct InflightGuard<'a> {
    map: &'a InflightMap,
    key: (Name, u16),
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.key);
    }
}

impl Recursor {
    /// A recursor with its own caches.
    pub fn new(config: RecursorConfig, transport: Arc<dyn Transport>, clock: Arc<dyn Clock>) -> Recursor {
        let cache = RrsetCache::new(config.rrset_cache_bytes, config.ttl);
        Recursor {
            inner: Arc::new(Inner {
                config,
                transport,
                clock,
                cache,
                infra: Infra::default(),
                inflight: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The RRset cache.
    pub fn cache(&self) -> &RrsetCache {
        &self.inner.cache
    }

    /// The configuration.
    pub fn config(&self) -> &RecursorConfig {
        &self.inner.config
    }

    /// Resolves (qname, qtype) within a fresh budget. Identical questions in
    /// flight at the same time share one resolution.
    pub async fn resolve(&self, qname: &Name, qtype: u16) -> Result<Resolution, ResolveError> {
        let key = (qname.clone(), qtype);
        let leader = {
            let mut map = self.inner.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some(rx) => Err(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(key.clone(), rx);
                    Ok(tx)
                }
            }
        };
        match leader {
            Err(mut rx) => {
                let shared = rx.wait_for(Option::is_some).await.map_err(|_| ResolveError::Cancelled)?;
                match shared.as_ref() {
                    Some(r) => (**r).clone(),
                    None => Err(ResolveError::Cancelled),
                }
            }
            Ok(tx) => {
                let _guard = InflightGuard { map: &self.inner.inflight, key };
                let c = &self.inner.config;
                let budget = Budget::new(c.max_upstream_queries, Instant::now() + c.resolution_timeout, c.max_depth);
                let result = self.resolve_in(qname.clone(), qtype, &budget, 0).await;
                let _ = tx.send(Some(Arc::new(result.clone())));
                result
            }
        }
    }

    /// Resolves within a given budget (sub-resolutions share it).
    pub fn resolve_in<'a>(
        &'a self,
        qname: Name,
        qtype: u16,
        budget: &'a Budget,
        depth: u8,
    ) -> BoxFuture<'a, Result<Resolution, ResolveError>> {
        Box::pin(async move {
            budget.check_depth(depth)?;
            let max_chain = self.inner.config.max_cname_chain;
            let mut chain: Vec<Record> = Vec::new();
            let mut seen: Vec<Name> = Vec::new();
            let mut name = qname;
            loop {
                if seen.contains(&name) || seen.len() > max_chain {
                    return Err(ResolveError::CnameChain(name.to_string()));
                }
                seen.push(name.clone());
                let now = self.inner.clock.now_unix();
                if let Some(hit) = self.cached(&name, qtype, now) {
                    match hit {
                        CacheHit::Records(recs) => {
                            chain.extend(recs);
                            return Ok(Resolution { outcome: Outcome::Answer, answer: chain, authority: Vec::new() });
                        }
                        CacheHit::Cname(rec, target) => {
                            chain.push(rec);
                            name = target;
                            continue;
                        }
                        CacheHit::Negative(kind, soa) => {
                            let outcome = match kind {
                                Negative::NxDomain => Outcome::NxDomain,
                                Negative::NoData => Outcome::NoData,
                            };
                            return Ok(Resolution { outcome, answer: chain, authority: soa.into_iter().collect() });
                        }
                    }
                }
                match self.iterate(&name, qtype, budget, depth).await? {
                    Step::Answer(records) => {
                        let last = records.last().cloned();
                        for r in &records {
                            if r.rtype == rtype::CNAME && r.name != name {
                                if seen.contains(&r.name) {
                                    return Err(ResolveError::CnameChain(r.name.to_string()));
                                }
                                seen.push(r.name.clone());
                            }
                        }
                        chain.extend(records);
                        match last {
                            Some(l) if l.rtype == rtype::CNAME && qtype != rtype::CNAME => {
                                name = l.target_name().ok_or_else(|| ResolveError::InvalidData("CNAME".into()))?;
                            }
                            _ => {
                                return Ok(Resolution {
                                    outcome: Outcome::Answer,
                                    answer: chain,
                                    authority: Vec::new(),
                                });
                            }
                        }
                    }
                    Step::NoData(soa) => {
                        return Ok(Resolution {
                            outcome: Outcome::NoData,
                            answer: chain,
                            authority: soa.into_iter().collect(),
                        });
                    }
                    Step::NxDomain(soa) => {
                        return Ok(Resolution {
                            outcome: Outcome::NxDomain,
                            answer: chain,
                            authority: soa.into_iter().collect(),
                        });
                    }
                }
            }
        })
    }

    fn cached(&self, name: &Name, qtype: u16, now: u64) -> Option<CacheHit> {
        if qtype == rtype::ANY {
            return None;
        }
        let cache = &self.inner.cache;
        if let Some(e) = cache.get_fresh(name, qtype, now) {
            return Some(match &e.value {
                RrsetValue::Positive(_) if e.rank < Rank::NonAuthAnswer => return None,
                RrsetValue::Positive(_) => CacheHit::Records(e.records_at(now)),
                RrsetValue::Negative(kind, soa) => {
                    let left = e.remaining(now);
                    CacheHit::Negative(kind.clone(), soa.clone().map(|s| Record { ttl: left.min(s.ttl), ..s }))
                }
            });
        }
        if qtype != rtype::CNAME
            && let Some(e) = cache.get_fresh(name, rtype::CNAME, now)
            && let (RrsetValue::Positive(_), true) = (&e.value, e.rank >= Rank::NonAuthAnswer)
        {
            let rec = e.records_at(now).into_iter().next()?;
            let target = rec.target_name()?;
            return Some(CacheHit::Cname(rec, target));
        }
        None
    }

    /// One pass down the delegation tree for (name, qtype).
    async fn iterate(&self, name: &Name, qtype: u16, budget: &Budget, depth: u8) -> Result<Step, ResolveError> {
        if let Some(fz) = self.forward_zone(name) {
            return self.forward(fz, name, qtype, budget).await;
        }
        let mut cut = self.closest_cut(name);
        let mut minimise = self.inner.config.qname_minimisation;
        let mut known = cut.zone.clone();
        let mut steps = 0;
        loop {
            budget.check_time()?;
            let (qn, qt) = if minimise && name.label_count() > known.label_count() + 1 && steps < MAX_MINIMISE_STEPS {
                steps += 1;
                (name.suffix(known.label_count() + 1), rtype::A)
            } else {
                (name.clone(), qtype)
            };
            let minimised = qn != *name;
            let reply = self.query_cut(&cut, &qn, qt, budget, depth).await?;
            let now = self.inner.clock.now_unix();
            match reply {
                Classified::Referral { child, ns, glue } => {
                    let ns_names: Vec<Name> = ns.iter().filter_map(Record::target_name).collect();
                    let port = self.inner.config.upstream_port;
                    let addrs: Vec<SocketAddr> =
                        glue.iter().filter_map(Record::address).map(|a| SocketAddr::new(a, port)).collect();
                    self.inner.cache.insert_rrset(ns, Rank::Referral, now);
                    for set in group_rrsets(glue) {
                        self.inner.cache.insert_rrset(set, Rank::Glue, now);
                    }
                    tracing::debug!(zone = %cut.zone, %child, "referral");
                    known = child.clone();
                    cut = Cut { zone: child, ns_names, addrs };
                }
                Classified::Answer { chain, .. } if minimised => {
                    if chain.iter().any(|r| r.rtype == rtype::CNAME || r.rtype == rtype::DNAME) {
                        minimise = false;
                    } else {
                        known = qn;
                    }
                }
                Classified::NoData(_) if minimised => known = qn,
                // Relaxed fallback (RFC 9156 §2.3): some servers answer
                // NXDOMAIN for empty non-terminals; ask the full name.
                Classified::NxDomain(_) if minimised => minimise = false,
                Classified::Answer { chain, authoritative } => {
                    let rank = if authoritative { Rank::Authoritative } else { Rank::NonAuthAnswer };
                    self.cache_chain(&chain, rank, now);
                    return Ok(Step::Answer(chain));
                }
                Classified::NoData(soa) => {
                    self.inner.cache.insert_negative(
                        name,
                        qtype,
                        Negative::NoData,
                        soa.clone(),
                        Rank::Authoritative,
                        now,
                    );
                    return Ok(Step::NoData(soa));
                }
                Classified::NxDomain(soa) => {
                    self.inner.cache.insert_negative(
                        name,
                        qtype,
                        Negative::NxDomain,
                        soa.clone(),
                        Rank::Authoritative,
                        now,
                    );
                    return Ok(Step::NxDomain(soa));
                }
                Classified::Lame | Classified::Failure => {
                    return Err(ResolveError::NoReachableAuthority { zone: cut.zone.to_string() });
                }
            }
        }
    }

    /// Caches the RRsets of an answer chain, except CNAMEs synthesised from
    /// a DNAME: served from the cache alone they would lose the DNAME that
    /// justifies them (RFC 6672 §3.4), so such names are asked again.
    fn cache_chain(&self, chain: &[Record], rank: Rank, now: u64) {
        let dnames: Vec<&Name> = chain.iter().filter(|r| r.rtype == rtype::DNAME).map(|r| &r.name).collect();
        for set in group_rrsets(chain.to_vec()) {
            let synthesised = set[0].rtype == rtype::CNAME
                && dnames.iter().any(|d| set[0].name.is_subdomain_of(d) && set[0].name != **d);
            if !synthesised {
                self.inner.cache.insert_rrset(set, rank, now);
            }
        }
    }

    fn forward_zone(&self, name: &Name) -> Option<&ForwardZone> {
        self.inner
            .config
            .forward_zones
            .iter()
            .filter(|f| name.is_subdomain_of(&f.name))
            .max_by_key(|f| f.name.label_count())
    }

    async fn forward(&self, fz: &ForwardZone, name: &Name, qtype: u16, budget: &Budget) -> Result<Step, ResolveError> {
        for &server in &fz.servers {
            budget.spend_query()?;
            let q = self.upstream(server, name, qtype, true, false, budget);
            let Ok(reply) = self.send(q, budget).await else { continue };
            let now = self.inner.clock.now_unix();
            match classify(&reply, &Name::root(), name, qtype) {
                Classified::Answer { chain, .. } => {
                    self.cache_chain(&chain, Rank::NonAuthAnswer, now);
                    return Ok(Step::Answer(chain));
                }
                Classified::NoData(soa) => return Ok(Step::NoData(soa)),
                Classified::NxDomain(soa) => return Ok(Step::NxDomain(soa)),
                _ => continue,
            }
        }
        Err(ResolveError::NoReachableAuthority { zone: fz.name.to_string() })
    }

    /// The deepest zone cut we know servers for.
    fn closest_cut(&self, name: &Name) -> Cut {
        let now = self.inner.clock.now_unix();
        let cfg = &self.inner.config;
        let stub = cfg.stub_zones.iter().filter(|s| name.is_subdomain_of(&s.name)).max_by_key(|s| s.name.label_count());
        let mut n = Some(name.clone());
        while let Some(z) = n {
            if let Some(stub) = stub.filter(|s| s.name == z) {
                return Cut { zone: z, ns_names: Vec::new(), addrs: stub.servers.clone() };
            }
            if let Some(e) = self.inner.cache.get(&z, rtype::NS, now)
                && let RrsetValue::Positive(ns) = &e.value
            {
                let ns_names: Vec<Name> = ns.iter().filter_map(Record::target_name).collect();
                let addrs = self.cached_addresses(&ns_names, now);
                let resolvable = ns_names.iter().any(|n| !n.is_subdomain_of(&z));
                if !addrs.is_empty() || resolvable {
                    return Cut { zone: z, ns_names, addrs };
                }
            }
            n = z.parent();
        }
        let port = cfg.upstream_port;
        Cut {
            zone: Name::root(),
            ns_names: Vec::new(),
            addrs: cfg.root_hints.iter().map(|a| SocketAddr::new(*a, port)).collect(),
        }
    }

    fn cached_addresses(&self, ns_names: &[Name], now: u64) -> Vec<SocketAddr> {
        let port = self.inner.config.upstream_port;
        let mut out = Vec::new();
        for ns in ns_names {
            for t in [rtype::A, rtype::AAAA] {
                if let Some(e) = self.inner.cache.get(ns, t, now)
                    && let RrsetValue::Positive(rs) = &e.value
                {
                    out.extend(rs.iter().filter_map(Record::address).map(|a| SocketAddr::new(a, port)));
                }
            }
        }
        out
    }

    fn usable(&self, addr: &SocketAddr) -> bool {
        let c = &self.inner.config;
        let family = if addr.is_ipv4() { c.ipv4 } else { c.ipv6 };
        family && !(c.do_not_query_localhost && addr.ip().is_loopback()) && !addr.ip().is_unspecified()
    }

    /// Addresses for a cut, resolving glueless name servers when needed.
    async fn cut_addresses(&self, cut: &Cut, budget: &Budget, depth: u8) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = cut.addrs.iter().copied().filter(|a| self.usable(a)).collect();
        if !addrs.is_empty() {
            return addrs;
        }
        let now = self.inner.clock.now_unix();
        addrs = self.cached_addresses(&cut.ns_names, now).into_iter().filter(|a| self.usable(a)).collect();
        if !addrs.is_empty() {
            return addrs;
        }
        let port = self.inner.config.upstream_port;
        let candidates = cut.ns_names.iter().filter(|n| !n.is_subdomain_of(&cut.zone)).take(MAX_GLUELESS_LOOKUPS);
        for ns in candidates {
            let types: &[u16] = if self.inner.config.ipv4 { &[rtype::A] } else { &[rtype::AAAA] };
            for &t in types {
                if let Ok(res) = self.resolve_in(ns.clone(), t, budget, depth + 1).await {
                    addrs.extend(
                        res.answer
                            .iter()
                            .filter_map(Record::address)
                            .map(|a| SocketAddr::new(a, port))
                            .filter(|a| self.usable(a)),
                    );
                }
            }
            if !addrs.is_empty() {
                break;
            }
        }
        addrs
    }

    fn upstream(
        &self,
        server: SocketAddr,
        qname: &Name,
        qtype: u16,
        rd: bool,
        no_edns: bool,
        budget: &Budget,
    ) -> UpstreamQuery {
        let c = &self.inner.config;
        let left = budget.deadline().saturating_duration_since(Instant::now());
        let timeout = self.inner.infra.timeout(&server, c.initial_timeout, c.max_timeout).min(left);
        UpstreamQuery {
            server,
            qname: qname.clone(),
            qtype,
            recursion_desired: rd,
            edns: (!no_edns).then_some(c.edns_udp_size),
            dnssec_ok: false,
            tcp: false,
            timeout,
        }
    }

    /// Sends a query with EDNS fallback and TCP retry on TC.
    async fn send(&self, mut q: UpstreamQuery, budget: &Budget) -> Result<Message, TransportError> {
        let infra = &self.inner.infra;
        for _ in 0..3 {
            let started = Instant::now();
            match self.inner.transport.query(q.clone()).await {
                Ok(reply) => {
                    infra.reply(q.server, started.elapsed());
                    if reply.rcode() == Rcode::FormErr as u16 && q.edns.is_some() && reply.edns.is_none() {
                        infra.set_no_edns(q.server);
                        q.edns = None;
                    } else if reply.has_flag(flags::TC) && !q.tcp {
                        q.tcp = true;
                    } else {
                        return Ok(reply);
                    }
                    if budget.spend_query().is_err() {
                        return Err(TransportError::Timeout);
                    }
                }
                Err(TransportError::Timeout) => {
                    infra.timed_out(q.server, q.timeout);
                    return Err(TransportError::Timeout);
                }
                Err(e) => return Err(e),
            }
        }
        Err(TransportError::Malformed)
    }

    /// Asks the servers of `cut`, best first, until one gives a usable reply.
    async fn query_cut(
        &self,
        cut: &Cut,
        qn: &Name,
        qt: u16,
        budget: &Budget,
        depth: u8,
    ) -> Result<Classified, ResolveError> {
        let mut addrs = self.cut_addresses(cut, budget, depth).await;
        self.inner.infra.rank(&mut addrs, &cut.zone);
        let mut network_errors = 0;
        for &addr in &addrs {
            budget.spend_query()?;
            let no_edns = self.inner.infra.no_edns(&addr);
            let q = self.upstream(addr, qn, qt, false, no_edns, budget);
            match self.send(q, budget).await {
                Ok(reply) => match classify(&reply, &cut.zone, qn, qt) {
                    Classified::Lame => {
                        tracing::debug!(%addr, zone = %cut.zone, "lame server");
                        self.inner.infra.set_lame(addr, &cut.zone);
                    }
                    Classified::Failure => tracing::debug!(%addr, zone = %cut.zone, "server failure"),
                    c => return Ok(c),
                },
                Err(TransportError::Network(e)) => {
                    tracing::debug!(%addr, error = %e, "network error");
                    network_errors += 1;
                }
                Err(_) => {}
            }
            budget.check_time()?;
        }
        let zone = cut.zone.to_string();
        if network_errors > 0 && network_errors == addrs.len() {
            Err(ResolveError::NetworkError { zone })
        } else {
            Err(ResolveError::NoReachableAuthority { zone })
        }
    }
}

enum CacheHit {
    Records(Vec<Record>),
    Cname(Record, Name),
    Negative(Negative, Option<Record>),
}

enum Step {
    Answer(Vec<Record>),
    NoData(Option<Record>),
    NxDomain(Option<Record>),
}

/// Splits records into RRsets (same owner and type), keeping first-seen
/// order.
fn group_rrsets(records: Vec<Record>) -> Vec<Vec<Record>> {
    let mut sets: Vec<Vec<Record>> = Vec::new();
    for r in records {
        match sets.iter_mut().find(|s| s[0].name == r.name && s[0].rtype == r.rtype) {
            Some(s) => {
                if !s.iter().any(|x| x.rdata == r.rdata) {
                    s.push(r);
                }
            }
            None => sets.push(vec![r]),
        }
    }
    sets
}

/// Sorts out a reply from a server for `zone` to the question (qn, qt).
/// Only records inside `zone` are ever looked at (bailiwick).
fn classify(reply: &Message, zone: &Name, qn: &Name, qt: u16) -> Classified {
    let rcode = reply.rcode();
    if rcode == Rcode::Refused as u16 {
        return Classified::Lame;
    }
    if rcode != Rcode::NoError as u16 && rcode != Rcode::NxDomain as u16 {
        return Classified::Failure;
    }
    let in_zone = |r: &&Record| r.class == class::IN && r.name.is_subdomain_of(zone);
    let answer: Vec<&Record> = reply.answer.iter().filter(in_zone).collect();
    let chain = extract_chain(&answer, qn, qt);
    let authoritative = reply.has_flag(flags::AA);
    let soa =
        reply.authority.iter().filter(in_zone).find(|r| r.rtype == rtype::SOA && qn.is_subdomain_of(&r.name)).cloned();
    if !chain.is_empty() {
        return Classified::Answer { chain, authoritative };
    }
    if rcode == Rcode::NxDomain as u16 {
        return Classified::NxDomain(soa);
    }
    let ns: Vec<&Record> = reply.authority.iter().filter(|r| r.rtype == rtype::NS).collect();
    if let Some(first) = ns.first() {
        let child = first.name.clone();
        if child.is_subdomain_of(zone) && child != *zone && qn.is_subdomain_of(&child) {
            let ns_set: Vec<Record> = ns.iter().filter(|r| r.name == child).map(|r| (*r).clone()).collect();
            let targets: Vec<Name> = ns_set.iter().filter_map(Record::target_name).collect();
            let glue = reply
                .additional
                .iter()
                .filter(in_zone)
                .filter(|r| matches!(r.rtype, rtype::A | rtype::AAAA) && targets.contains(&r.name))
                .cloned()
                .collect();
            return Classified::Referral { child, ns: ns_set, glue };
        }
        if !authoritative {
            return Classified::Lame;
        }
    }
    if authoritative || soa.is_some() {
        return Classified::NoData(soa);
    }
    Classified::Lame
}

/// The records answering (qn, qt) in order: DNAME + synthesised CNAME, CNAME
/// links, then the final RRset. Stops where the answer section does.
fn extract_chain(answer: &[&Record], qn: &Name, qt: u16) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cur = qn.clone();
    for _ in 0..=16 {
        let rrset: Vec<Record> = answer
            .iter()
            .filter(|r| r.name == cur && (r.rtype == qt || (qt == rtype::ANY && r.rtype != rtype::RRSIG)))
            .map(|r| (*r).clone())
            .collect();
        if !rrset.is_empty() {
            out.extend(rrset);
            break;
        }
        if let Some(d) =
            answer.iter().find(|r| r.rtype == rtype::DNAME && cur.is_subdomain_of(&r.name) && cur != r.name)
        {
            let Some(target) = d.target_name() else { break };
            let Ok(new) = cur.replace_suffix(&d.name, &target) else { break };
            out.push((*d).clone());
            out.push(Record {
                name: cur.clone(),
                rtype: rtype::CNAME,
                class: class::IN,
                ttl: d.ttl,
                rdata: new.as_wire().into(),
            });
            cur = new;
            continue;
        }
        if qt != rtype::CNAME
            && let Some(c) = answer.iter().find(|r| r.name == cur && r.rtype == rtype::CNAME)
        {
            let Some(target) = c.target_name() else { break };
            out.push((*c).clone());
            cur = target;
            continue;
        }
        break;
    }
    out
}

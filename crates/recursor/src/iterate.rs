//! The iterative algorithm.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache::{Negative, Rank, RrsetCache};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use proto::wire::{Rcode, flags, rtype};
use proto::{Message, Name, Record, class};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::budget::{Budget, TraceStep};
use crate::infra::Infra;
use crate::transport::{BoxFuture, Transport, TransportError, UpstreamQuery};
use crate::validate::{self, Security, ZoneTrust};
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
    /// The answer section: CNAME/DNAME chain then the final RRset, each
    /// RRset followed by its RRSIGs when validating.
    pub answer: Vec<Record>,
    /// The authority section: the SOA of a negative answer and, when
    /// validating, the NSEC proof with its RRSIGs.
    pub authority: Vec<Record>,
    /// The DNSSEC status.
    pub security: Security,
    /// Part of it came from an authority that was sent the client's
    /// network (ECS): it must not be shared with other clients.
    pub client_specific: bool,
}

/// A server's reply, sorted out relative to the zone we asked it about.
#[derive(Debug)]
enum Classified {
    /// Data (a chain from the question name, in order).
    Answer { chain: Vec<Record>, sigs: Vec<Record>, authority: Vec<Record>, authoritative: bool },
    /// No data of that type (SOA, NSEC proof with RRSIGs).
    NoData(Option<Record>, Vec<Record>),
    /// No such name (SOA, NSEC proof with RRSIGs).
    NxDomain(Option<Record>, Vec<Record>),
    /// A delegation to `child`, strictly below the zone, with the DS or NSEC
    /// records (and RRSIGs) that say whether it is signed.
    Referral { child: Name, ns: Vec<Record>, glue: Vec<Record>, dnssec: Vec<Record> },
    /// Lame: not authoritative for the zone, or REFUSED.
    Lame,
    /// SERVFAIL, FORMERR, NOTIMP or something unusable.
    Failure,
}

/// Where to send queries for a zone.
#[derive(Debug, Clone)]
struct Cut {
    zone: Name,
    trust: ZoneTrust,
    ns_names: Vec<Name>,
    addrs: Vec<SocketAddr>,
}

/// At most this many minimised steps before sending the full name
/// (MAX_MINIMISE_COUNT of RFC 9156).
const MAX_MINIMISE_STEPS: usize = 10;
/// Servers of one zone asked for the same question after answers that did
/// not validate (a spoofed or broken server must not make a name SERVFAIL
/// while a good one is listed; the budget bounds it too).
const MAX_BOGUS_SERVERS: usize = 3;
/// How many name servers of a glueless delegation are resolved.
const MAX_GLUELESS_LOOKUPS: usize = 3;
/// How long a glueless name server's lookup runs alone before the next
/// name's starts beside it.
const NS_LOOKUP_STAGGER: Duration = Duration::from_millis(150);

type Shared = Arc<Result<Resolution, ResolveError>>;
/// Resolutions in flight, by question, for coalescing.
/// In-flight resolutions by question and, when ECS applies, client network.
type InflightKey = (Name, u16, Option<(IpAddr, u8)>);
type InflightMap = Mutex<HashMap<InflightKey, watch::Receiver<Option<Shared>>>>;

struct Inner {
    config: RecursorConfig,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    cache: RrsetCache,
    infra: Infra,
    /// Per-zone and per-server limits on what is sent upstream.
    upstream: crate::limits::UpstreamLimiter,
    inflight: InflightMap,
    /// What is known of each zone's keys, with the Unix time it expires.
    trust: Mutex<HashMap<Name, (ZoneTrust, u64)>>,
    /// Validated NSEC records for aggressive negative caching (RFC 8198).
    nsec_index: crate::aggressive::NsecIndex,
    /// The trust anchors in force (replaced by RFC 5011 updates).
    anchors: std::sync::RwLock<Vec<Record>>,
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
    key: InflightKey,
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
        let anchors = config.validation.as_ref().map(|v| v.trust_anchors.clone()).unwrap_or_default();
        let upstream = crate::limits::UpstreamLimiter::new(config.upstream_limits);
        Recursor {
            inner: Arc::new(Inner {
                config,
                transport,
                clock,
                cache,
                infra: Infra::default(),
                upstream,
                inflight: Mutex::new(HashMap::new()),
                trust: Mutex::new(HashMap::new()),
                nsec_index: Default::default(),
                anchors: std::sync::RwLock::new(anchors),
            }),
        }
    }

    /// Resolves (qname, qtype) from nothing, as a user's trace: a fresh
    /// recursor with this one's configuration, trust anchors and transport
    /// but an empty cache of its own (so every server is asked and what it
    /// learns touches nothing shared), recording every exchange.
    pub async fn trace(&self, qname: &Name, qtype: u16) -> (Result<Resolution, ResolveError>, Vec<TraceStep>) {
        let mut config = self.inner.config.clone();
        config.rrset_cache_bytes = 1 << 20;
        let fresh = Recursor::new(config, self.inner.transport.clone(), self.inner.clock.clone());
        fresh.set_trust_anchors(self.inner.anchors.read().unwrap_or_else(|e| e.into_inner()).clone());
        let budget = fresh.budget().with_trace();
        let result = fresh.resolve_in(qname.clone(), qtype, &budget, 0).await;
        (result, budget.take_trace())
    }

    /// A fresh budget for one client query's resolution, as configured.
    fn budget(&self) -> Budget {
        let c = &self.inner.config;
        let verifications = c.validation.as_ref().map_or(0, |v| v.max_verifications);
        Budget::new(c.max_upstream_queries, Instant::now() + c.resolution_timeout, c.max_depth)
            .with_verifications(verifications)
    }

    /// The RRset cache.
    pub fn cache(&self) -> &RrsetCache {
        &self.inner.cache
    }

    /// The questions being resolved now (name and type; never the client
    /// network an ECS resolution carries), for `onedot ctl inflight`.
    pub fn inflight(&self) -> Vec<(Name, u16)> {
        let map = self.inner.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(Name, u16)> = map.keys().map(|(n, t, _)| (n.clone(), *t)).collect();
        out.sort_by_key(|(n, t)| (n.to_string(), *t));
        out.dedup();
        out
    }

    /// Upstream queries not sent so far: over a zone's limit, over a
    /// server's.
    pub fn upstream_refused(&self) -> (u64, u64) {
        self.inner.upstream.refused()
    }

    /// The configuration.
    pub fn config(&self) -> &RecursorConfig {
        &self.inner.config
    }

    /// Whether a client's network can reach any authority (some zone is
    /// under `ecs_allow`); when not, the network a query carries is ignored.
    pub fn sends_ecs(&self) -> bool {
        !self.inner.config.ecs_allow.is_empty()
    }

    /// Resolves (qname, qtype) within a fresh budget. Identical questions in
    /// flight at the same time share one resolution.
    pub async fn resolve(&self, qname: &Name, qtype: u16) -> Result<Resolution, ResolveError> {
        self.resolve_for(qname, qtype, None).await
    }

    /// Resolves (qname, qtype) for a client in network `ecs` (address and
    /// prefix length): authorities under `ecs_allow` are sent it as EDNS
    /// Client Subnet, and what they answer is neither cached nor shared
    /// with other networks.
    pub async fn resolve_for(
        &self,
        qname: &Name,
        qtype: u16,
        ecs: Option<(IpAddr, u8)>,
    ) -> Result<Resolution, ResolveError> {
        let ecs = ecs.filter(|_| self.sends_ecs());
        let key = (qname.clone(), qtype, ecs);
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
            Ok(tx) => self.lead(key, tx, self.budget().with_ecs(ecs)).await,
        }
    }

    /// Resolves (qname, qtype) again though its answer is cached (prefetch
    /// ahead of expiry): the new answer replaces the cached one. Nothing is
    /// done while the same question is being resolved anyway.
    pub async fn refresh(&self, qname: &Name, qtype: u16) -> Result<Resolution, ResolveError> {
        let key = (qname.clone(), qtype, None);
        let tx = {
            let mut map = self.inner.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if map.contains_key(&key) {
                return Err(ResolveError::Cancelled);
            }
            let (tx, rx) = watch::channel(None);
            map.insert(key.clone(), rx);
            tx
        };
        self.lead(key, tx, self.budget().refreshing()).await
    }

    /// Runs the resolution others with the same `key` wait for, and tells
    /// them its result.
    async fn lead(
        &self,
        key: InflightKey,
        tx: watch::Sender<Option<Shared>>,
        budget: Budget,
    ) -> Result<Resolution, ResolveError> {
        let guard = InflightGuard { map: &self.inner.inflight, key };
        let result = self.resolve_in(guard.key.0.clone(), guard.key.1, &budget, 0).await;
        let _ = tx.send(Some(Arc::new(result.clone())));
        result
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
            // Wildcard proofs (NSEC/NSEC3 with RRSIGs) of the answer's links,
            // for the authority section of DO clients.
            let mut proofs: Vec<Record> = Vec::new();
            let mut security = Security::Secure;
            let mut seen: Vec<Name> = Vec::new();
            let mut name = qname;
            loop {
                if seen.contains(&name) || seen.len() > max_chain {
                    return Err(chain_error(&chain, &name));
                }
                seen.push(name.clone());
                let now = self.inner.clock.now_unix();
                // A refresh asks again for each link of the question's own
                // chain; sub-resolutions (depth > 0) use the cache.
                let refresh = budget.refresh() && depth == 0;
                let step = match self.cached(&name, qtype, now).filter(|_| !refresh) {
                    Some(CacheHit::Cname(recs, proof, target, sec)) => {
                        chain.extend(recs);
                        proofs.extend(proof);
                        security = security.combine(sec);
                        name = target;
                        continue;
                    }
                    Some(CacheHit::Step(step)) => step,
                    None => match self.synthesised(&name, qtype, now).filter(|_| !refresh) {
                        Some(step) => step,
                        None => self.iterate(&name, qtype, budget, depth).await?,
                    },
                };
                let (outcome, authority, sec) = match step {
                    Step::Answer(records, proof, sec) => {
                        proofs.extend(proof);
                        let last = records.iter().rfind(|r| r.rtype != rtype::RRSIG).cloned();
                        for r in &records {
                            if r.rtype == rtype::CNAME && r.name != name {
                                if seen.contains(&r.name) {
                                    return Err(chain_error(&chain, &r.name));
                                }
                                seen.push(r.name.clone());
                            }
                        }
                        chain.extend(records);
                        security = security.combine(sec.clone());
                        match last {
                            Some(l) if l.rtype == rtype::CNAME && qtype != rtype::CNAME => {
                                name = l.target_name().ok_or_else(|| ResolveError::InvalidData("CNAME".into()))?;
                                continue;
                            }
                            _ => (Outcome::Answer, std::mem::take(&mut proofs), sec),
                        }
                    }
                    Step::NoData(soa, proof, sec) => (Outcome::NoData, soa.into_iter().chain(proof).collect(), sec),
                    Step::NxDomain(soa, proof, sec) => (Outcome::NxDomain, soa.into_iter().chain(proof).collect(), sec),
                };
                let security = security.combine(sec);
                let client_specific = budget.client_specific();
                return Ok(Resolution { outcome, answer: chain, authority, security, client_specific });
            }
        })
    }

    fn cached(&self, name: &Name, qtype: u16, now: u64) -> Option<CacheHit> {
        if qtype == rtype::ANY {
            return None;
        }
        let cache = &self.inner.cache;
        let describe = || format!("{name} {}", rtype::name(qtype).unwrap_or("?"));
        if let Some(e) = cache.get_fresh(name, qtype, now) {
            let sec = Security::from_cache(e.security(), describe);
            let dnssec = e.dnssec_at(now);
            return Some(CacheHit::Step(match e.negative() {
                None if e.rank() < Rank::NonAuthAnswer => return None,
                None => {
                    let mut recs = e.records_at(now);
                    let (proof, sigs) = split_proof(dnssec);
                    recs.extend(sigs);
                    Step::Answer(recs, proof, sec)
                }
                Some(Negative::NxDomain) => Step::NxDomain(e.soa_at(now), dnssec, sec),
                Some(Negative::NoData) => Step::NoData(e.soa_at(now), dnssec, sec),
            }));
        }
        if qtype != rtype::CNAME
            && let Some(e) = cache.get_fresh(name, rtype::CNAME, now)
            && e.negative().is_none()
            && e.rank() >= Rank::NonAuthAnswer
        {
            let mut recs = e.records_at(now);
            let target = recs.first()?.target_name()?;
            let (proof, sigs) = split_proof(e.dnssec_at(now));
            recs.extend(sigs);
            return Some(CacheHit::Cname(recs, proof, target, Security::from_cache(e.security(), describe)));
        }
        // A name below one that does not exist does not exist either (RFC
        // 8020): a cached NXDOMAIN of an ancestor answers, unless it was
        // bogus. Its NSEC proof covers the name too (descendants sort right
        // after their ancestor).
        let mut ancestor = name.parent();
        while let Some(a) = ancestor.filter(|a| !a.is_root()) {
            if let Some(e) = cache.get_nxdomain(&a, now)
                && e.security() != cache::Security::Bogus
            {
                let sec = Security::from_cache(e.security(), describe);
                return Some(CacheHit::Step(Step::NxDomain(e.soa_at(now), e.dnssec_at(now), sec)));
            }
            ancestor = a.parent();
        }
        None
    }

    /// One pass down the delegation tree for (name, qtype).
    async fn iterate(&self, name: &Name, qtype: u16, budget: &Budget, depth: u8) -> Result<Step, ResolveError> {
        // A forward zone's own DS lives in its parent: it is resolved the
        // usual way, so the forwarded data chains to the anchors above.
        if let Some(fz) = self.forward_zone(name).filter(|fz| !(qtype == rtype::DS && *name == fz.name)) {
            return self.forward(fz, name, qtype, budget, depth).await;
        }
        // DS lives on the parent side of a zone cut.
        let start = if qtype == rtype::DS { name.parent().unwrap_or_else(Name::root) } else { name.clone() };
        let mut cut = self.closest_cut(&start);
        let mut minimise = self.inner.config.qname_minimisation;
        let mut known = cut.zone.clone();
        let mut steps = 0;
        // Servers whose answer to this question was bogus, and that answer,
        // given when no other server does better.
        let mut bogus_from: Vec<SocketAddr> = Vec::new();
        let mut held: Option<Held> = None;
        // An ancestor denied to a minimised query, kept until the full
        // question confirms it (relaxed mode, RFC 9156 §2.3).
        let mut denied: Option<(Name, Option<Record>)> = None;
        loop {
            if let Err(e) = budget.check_time() {
                return held.map(|h| self.settle(h, name, qtype)).ok_or(e);
            }
            let (qn, qt) = if minimise && name.label_count() > known.label_count() + 1 && steps < MAX_MINIMISE_STEPS {
                steps += 1;
                (name.suffix(known.label_count() + 1), rtype::A)
            } else {
                (name.clone(), qtype)
            };
            let minimised = qn != *name;
            // What an authority says to a query carrying the client's
            // network is for that client only: it is not cached.
            let scoped = self.ecs_for(&cut.zone, qt, budget).is_some();
            if scoped {
                budget.mark_client_specific();
            }
            // A signed zone met for the first time: its keys are fetched
            // beside the question, not after the reply. Whatever the reply
            // (an answer, a denial, a referral whose DS they check), it is
            // checked with them, so this saves a round trip to each new
            // zone of the chain and costs no query. Only with the servers'
            // addresses in hand: looking them up is one lookup per zone at
            // a time, and the keys must not fail for want of it.
            let asked = self.query_cut(&cut, &qn, qt, budget, depth, &bogus_from);
            let parallel = matches!(cut.trust, ZoneTrust::Pending { .. })
                && !cut.addrs.is_empty()
                && !(qt == rtype::DNSKEY && qn == cut.zone);
            let result = if parallel {
                let mut keyed = cut.clone();
                let (result, _) = tokio::join!(asked, self.ensure_keys(&mut keyed, budget, depth));
                cut.trust = keyed.trust;
                result
            } else {
                asked.await
            };
            let (reply, from) = match result {
                Ok(r) => r,
                Err(e) => return held.map(|h| self.settle(h, name, qtype)).ok_or(e),
            };
            let now = self.inner.clock.now_unix();
            let reply_nx = matches!(reply, Classified::NxDomain(..));
            match reply {
                Classified::Referral { child, ns, glue, dnssec } => {
                    let ns_names: Vec<Name> = ns.iter().filter_map(Record::target_name).collect();
                    let port = self.inner.config.upstream_port;
                    let addrs: Vec<SocketAddr> =
                        glue.iter().filter_map(Record::address).map(|a| SocketAddr::new(a, port)).collect();
                    if !scoped {
                        self.inner.cache.insert_rrset(ns, Rank::Referral, now);
                        for set in group_rrsets(glue) {
                            self.inner.cache.insert_rrset(set, Rank::Glue, now);
                        }
                    }
                    let trust = match &self.inner.config.validation {
                        None => ZoneTrust::Off,
                        Some(v) => match ZoneTrust::from_anchors(&self.trust_anchors(), &child) {
                            Some(anchored) => anchored,
                            None => {
                                let parent = self.ensure_keys(&mut cut, budget, depth).await;
                                let t = validate::child_trust(
                                    &parent,
                                    &cut.zone,
                                    &child,
                                    &dnssec,
                                    &v.policy,
                                    now,
                                    budget.verifications(),
                                );
                                self.remember_trust(&child, &t, 3600, now);
                                t
                            }
                        },
                    };
                    tracing::debug!(zone = %cut.zone, %child, "referral");
                    known = child.clone();
                    cut = Cut { zone: child, trust, ns_names, addrs };
                }
                Classified::Answer { chain, .. } if minimised => {
                    if chain.iter().any(|r| r.rtype == rtype::CNAME || r.rtype == rtype::DNAME) {
                        minimise = false;
                    } else {
                        known = qn;
                    }
                }
                Classified::NoData(..) if minimised => known = qn,
                // Relaxed fallback (RFC 9156 §2.3): some servers answer
                // NXDOMAIN for empty non-terminals; ask the full name.
                Classified::NxDomain(soa, _) if minimised => {
                    minimise = false;
                    denied = Some((qn, soa));
                }
                Classified::Answer { mut chain, sigs, authority, authoritative } => {
                    let rank = if authoritative { Rank::Authoritative } else { Rank::NonAuthAnswer };
                    let sec = match &self.inner.config.validation {
                        None => Security::Indeterminate,
                        // RRSIGs are not RRsets with signatures of their own
                        // (RFC 4035 §2.2, §5.3): asked for as such, they are
                        // given as the authority sent them, never with AD.
                        Some(_) if qtype == rtype::RRSIG => Security::Indeterminate,
                        Some(v) if v.under_negative_anchor(name) => {
                            // Unvalidated data only for names below the NTA:
                            // the chain stops where it leaves it, and the
                            // rest is resolved (and validated) on its own.
                            let inside = chain.iter().take_while(|r| v.under_negative_anchor(&r.name)).count();
                            chain.truncate(inside);
                            Security::Insecure
                        }
                        Some(_) => {
                            let signer = chain.first().and_then(|r| signer_of(&sigs, &r.name));
                            let mut zone_cut = self.zone_cut_of(&mut cut, signer.as_ref(), budget, depth).await;
                            let trust = self.ensure_keys(&mut zone_cut, budget, depth).await;
                            self.check_answer(&trust, &zone_cut.zone, &mut chain, &sigs, &authority, budget)
                        }
                    };
                    // NSEC/NSEC3 in an answer's authority section prove a
                    // wildcard expansion; keep them for DO clients.
                    let proof = if self.inner.config.validation.is_some() { authority } else { Vec::new() };
                    if matches!(sec, Security::Bogus(_)) && bogus_from.len() + 1 < MAX_BOGUS_SERVERS {
                        tracing::debug!(%from, %name, "bogus answer: asking another server");
                        bogus_from.push(from);
                        held = Some(Held::Answer { chain, sigs, proof, sec, rank, scoped });
                        continue;
                    }
                    return Ok(self.settle(Held::Answer { chain, sigs, proof, sec, rank, scoped }, name, qtype));
                }
                Classified::NoData(soa, proof) | Classified::NxDomain(soa, proof) => {
                    let nx = reply_nx;
                    let sec = match &self.inner.config.validation {
                        None => Security::Indeterminate,
                        Some(v) if v.under_negative_anchor(name) => Security::Insecure,
                        Some(_) => {
                            let signer = soa.as_ref().map(|s| s.name.clone());
                            let mut zone_cut = self.zone_cut_of(&mut cut, signer.as_ref(), budget, depth).await;
                            let trust = self.ensure_keys(&mut zone_cut, budget, depth).await;
                            let zone = zone_cut.zone.clone();
                            self.check_negative(&trust, &zone, (name, qtype, nx), soa.as_ref(), &proof, budget)
                        }
                    };
                    if matches!(sec, Security::Bogus(_)) && bogus_from.len() + 1 < MAX_BOGUS_SERVERS {
                        tracing::debug!(%from, %name, "bogus denial: asking another server");
                        bogus_from.push(from);
                        held = Some(Held::Negative { nx, soa, proof, sec, rank: Rank::Authoritative, scoped });
                        continue;
                    }
                    if sec == Security::Secure && !scoped {
                        self.inner.nsec_index.insert(&cut.zone, &proof, soa.as_ref(), now);
                    }
                    // Confirmed: the denied ancestor is cached too, so its
                    // other descendants are answered at once (RFC 8020).
                    // Signed zones get that from their NSEC records instead.
                    if let Some((ancestor, ancestor_soa)) = denied.take()
                        && nx
                        && !scoped
                        && matches!(sec, Security::Insecure | Security::Indeterminate)
                    {
                        self.inner.cache.insert_negative_validated(
                            &ancestor,
                            rtype::A,
                            Negative::NxDomain,
                            ancestor_soa,
                            Vec::new(),
                            sec.to_cache(),
                            Rank::Authoritative,
                            now,
                        );
                    }
                    return Ok(self.settle(
                        Held::Negative { nx, soa, proof, sec, rank: Rank::Authoritative, scoped },
                        name,
                        qtype,
                    ));
                }
                Classified::Lame | Classified::Failure => {
                    return held
                        .map(|h| self.settle(h, name, qtype))
                        .ok_or_else(|| ResolveError::NoReachableAuthority { zone: cut.zone.to_string() });
                }
            }
        }
    }

    /// Caches an authority's answer (unless it was for this client only)
    /// and makes it the step. A bogus denial is kept for the question's
    /// type alone: an NXDOMAIN that did not validate must not deny the
    /// name's other types.
    fn settle(&self, held: Held, name: &Name, qtype: u16) -> Step {
        let now = self.inner.clock.now_unix();
        match held {
            Held::Answer { chain, sigs, proof, sec, rank, scoped } => {
                if !scoped {
                    self.cache_chain(&chain, &sigs, &proof, &sec, rank, now);
                }
                Step::Answer(interleave(chain, &sigs), proof, sec)
            }
            Held::Negative { nx, soa, proof, sec, rank, scoped } => {
                let bogus = matches!(sec, Security::Bogus(_));
                let kind = if nx && !bogus { Negative::NxDomain } else { Negative::NoData };
                if !scoped {
                    self.inner.cache.insert_negative_validated(
                        name,
                        qtype,
                        kind,
                        soa.clone(),
                        proof.clone(),
                        sec.to_cache(),
                        rank,
                        now,
                    );
                }
                if nx { Step::NxDomain(soa, proof, sec) } else { Step::NoData(soa, proof, sec) }
            }
        }
    }

    /// Validates an answer chain from `zone` with `trust`, now.
    fn check_answer(
        &self,
        trust: &ZoneTrust,
        zone: &Name,
        chain: &mut [Record],
        sigs: &[Record],
        authority: &[Record],
        budget: &Budget,
    ) -> Security {
        let Some(v) = &self.inner.config.validation else { return Security::Indeterminate };
        let now = self.inner.clock.now_unix();
        validate::check_answer(trust, zone, chain, sigs, authority, &v.policy, now, budget.verifications())
    }

    /// Validates a denial of (name, type; NXDOMAIN or not) from `zone`.
    fn check_negative(
        &self,
        trust: &ZoneTrust,
        zone: &Name,
        (name, qtype, nx): (&Name, u16, bool),
        soa: Option<&Record>,
        proof: &[Record],
        budget: &Budget,
    ) -> Security {
        let Some(v) = &self.inner.config.validation else { return Security::Indeterminate };
        let now = self.inner.clock.now_unix();
        validate::check_negative(trust, zone, name, qtype, nx, soa, proof, &v.policy, now, budget.verifications())
    }

    /// The trust anchors in force.
    pub fn trust_anchors(&self) -> Vec<Record> {
        self.inner.anchors.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the trust anchors and forgets what was derived from the old
    /// ones.
    pub fn set_trust_anchors(&self, anchors: Vec<Record>) {
        *self.inner.anchors.write().unwrap_or_else(|e| e.into_inner()) = anchors;
        self.inner.trust.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// One RFC 5011 probe: fetches each managed zone's DNSKEY set through
    /// validation, applies it, saves the state when it changed, and puts the
    /// resulting anchors in force. Returns the changes.
    pub async fn probe_trust_anchors(
        &self,
        managed: &crate::ManagedAnchors,
    ) -> Result<Vec<dnssec::rfc5011::Change>, crate::AnchorStateError> {
        let Some(v) = &self.inner.config.validation else { return Ok(Vec::new()) };
        let mut all = Vec::new();
        for zone in managed.zones() {
            let Ok(res) = self.resolve(&zone, rtype::DNSKEY).await else { continue };
            if res.security != Security::Secure {
                tracing::warn!(%zone, "trust anchor probe: DNSKEY set not secure");
                continue;
            }
            let keys: Vec<Record> = res.answer.iter().filter(|r| r.rtype == rtype::DNSKEY).cloned().collect();
            let sigs: Vec<Record> = res.answer.iter().filter(|r| r.rtype == rtype::RRSIG).cloned().collect();
            match managed.apply(&zone, &keys, &sigs, self.inner.clock.now_unix(), &v.policy) {
                Ok(changes) => all.extend(changes),
                Err(e) => tracing::warn!(%zone, error = %e, "trust anchor probe rejected"),
            }
        }
        managed.save()?;
        self.set_trust_anchors(managed.current());
        Ok(all)
    }

    /// A negative answer synthesised from validated NSEC records (RFC 8198),
    /// when validating.
    fn synthesised(&self, name: &Name, qtype: u16, now: u64) -> Option<Step> {
        let v = self.inner.config.validation.as_ref()?;
        if v.under_negative_anchor(name) {
            return None;
        }
        let s = self.inner.nsec_index.synthesise(name, qtype, now)?;
        tracing::debug!(%name, qtype, nxdomain = s.nxdomain, "synthesised from NSEC");
        Some(if !s.answer.is_empty() {
            Step::Answer(s.answer, s.proof, Security::Secure)
        } else if s.nxdomain {
            Step::NxDomain(s.soa, s.proof, Security::Secure)
        } else {
            Step::NoData(s.soa, s.proof, Security::Secure)
        })
    }

    /// The zone whose keys must validate data signed by `signer` that came
    /// from `cut`'s servers. Usually `cut` itself; but a server that is
    /// authoritative for a parent and a child answers child names directly,
    /// so no referral showed the cut: then the child's trust comes from its
    /// DS (or its proven absence) asked of the same servers and checked
    /// with the parent's keys. A forged signer gains nothing: without a DS
    /// the parent signed, the child is bogus or insecure, never secure.
    async fn zone_cut_of(&self, cut: &mut Cut, signer: Option<&Name>, budget: &Budget, depth: u8) -> Cut {
        let Some(v) = &self.inner.config.validation else { return cut.clone() };
        let Some(signer) = signer.filter(|s| *s != &cut.zone && s.is_subdomain_of(&cut.zone)) else {
            return cut.clone();
        };
        let now = self.inner.clock.now_unix();
        let trust = match self.known_trust(signer, now) {
            Some(t) => t,
            None => {
                let parent = self.ensure_keys(cut, budget, depth).await;
                let records: Vec<Record> = match self.query_cut(cut, signer, rtype::DS, budget, depth, &[]).await {
                    Ok((Classified::Answer { chain, sigs, .. }, _)) => chain.into_iter().chain(sigs).collect(),
                    Ok((Classified::NoData(_, proof), _)) => proof,
                    _ => Vec::new(),
                };
                let t =
                    validate::child_trust(&parent, &cut.zone, signer, &records, &v.policy, now, budget.verifications());
                self.remember_trust(signer, &t, 3600, now);
                t
            }
        };
        Cut { zone: signer.clone(), trust, ns_names: cut.ns_names.clone(), addrs: cut.addrs.clone() }
    }

    /// The keys of `cut`'s zone, fetched and checked against its DS (or
    /// anchors) if not known yet. Updates `cut` and remembers the result.
    async fn ensure_keys(&self, cut: &mut Cut, budget: &Budget, depth: u8) -> ZoneTrust {
        let ZoneTrust::Pending { ds, anchor_keys } = cut.trust.clone() else { return cut.trust.clone() };
        let now = self.inner.clock.now_unix();
        if let Some(t) = self.known_trust(&cut.zone, now).filter(|t| !matches!(t, ZoneTrust::Pending { .. })) {
            cut.trust = t.clone();
            return t;
        }
        if self.inner.config.validation.is_none() {
            return ZoneTrust::Off;
        }
        let zone = cut.zone.clone();
        let trust = match self.query_cut(cut, &zone, rtype::DNSKEY, budget, depth, &[]).await {
            Ok((Classified::Answer { chain, sigs, .. }, _)) => {
                self.trust_dnskeys(&zone, chain, &sigs, &ds, &anchor_keys, budget)
            }
            _ => ZoneTrust::Bogus(dnssec::Bogus::DnskeyMissing {
                zone: zone.to_string(),
                what: "no DNSKEY answer".into(),
            }),
        };
        cut.trust = trust.clone();
        trust
    }

    /// The trust a fetched DNSKEY answer gives `zone`: its keys checked
    /// against the DS set or anchor keys, remembered either way (bogus for
    /// at most `BOGUS_TTL`).
    fn trust_dnskeys(
        &self,
        zone: &Name,
        chain: Vec<Record>,
        sigs: &[Record],
        ds: &[dnssec::Ds],
        anchor_keys: &[Box<[u8]>],
        budget: &Budget,
    ) -> ZoneTrust {
        let Some(v) = &self.inner.config.validation else { return ZoneTrust::Off };
        let keys: Vec<Record> = chain.into_iter().filter(|r| r.rtype == rtype::DNSKEY && r.name == *zone).collect();
        let now = self.inner.clock.now_unix();
        let (t, ttl) =
            match validate::check_dnskeys(zone, &keys, sigs, ds, anchor_keys, &v.policy, now, budget.verifications()) {
                Ok(x) => x,
                Err(b) => (ZoneTrust::Bogus(b), cache::BOGUS_TTL),
            };
        self.remember_trust(zone, &t, ttl, now);
        t
    }

    fn known_trust(&self, zone: &Name, now: u64) -> Option<ZoneTrust> {
        let map = self.inner.trust.lock().unwrap_or_else(|e| e.into_inner());
        map.get(zone).filter(|(_, exp)| *exp > now).map(|(t, _)| t.clone())
    }

    fn remember_trust(&self, zone: &Name, trust: &ZoneTrust, ttl: u32, now: u64) {
        if matches!(trust, ZoneTrust::Off) {
            return;
        }
        let ttl = if matches!(trust, ZoneTrust::Bogus(_)) { ttl.min(cache::BOGUS_TTL) } else { ttl };
        let mut map = self.inner.trust.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.clear();
        }
        map.insert(zone.clone(), (trust.clone(), now + ttl as u64));
    }

    /// Caches the RRsets of an answer chain with their signatures, except
    /// CNAMEs synthesised from a DNAME: served from the cache alone they
    /// would lose the DNAME that justifies them (RFC 6672 §3.4), so such
    /// names are asked again.
    /// An RRset expanded from a wildcard is kept with the proof that the
    /// name itself does not exist (its RRSIG's labels are fewer than the
    /// owner's), so a DO client served from the cache gets it too (RFC
    /// 4035 §3.1.3.3).
    fn cache_chain(&self, chain: &[Record], sigs: &[Record], proof: &[Record], sec: &Security, rank: Rank, now: u64) {
        let dnames: Vec<&Name> = chain.iter().filter(|r| r.rtype == rtype::DNAME).map(|r| &r.name).collect();
        for set in group_rrsets(chain.to_vec()) {
            let synthesised = set[0].rtype == rtype::CNAME
                && dnames.iter().any(|d| set[0].name.is_subdomain_of(d) && set[0].name != **d);
            if !synthesised {
                let set = self.no_longer_than_the_delegation(set, now);
                let mut set_sigs = sigs_for(sigs, &set[0].name, set[0].rtype);
                let owner_labels = set[0].name.label_count();
                let expanded = set_sigs.iter().any(|s| s.rdata.get(3).is_some_and(|l| usize::from(*l) < owner_labels));
                if expanded {
                    if *sec == Security::Secure && self.inner.config.validation.is_some() {
                        self.remember_wildcard(&set, &set_sigs, proof, now);
                    }
                    set_sigs.extend(proof.iter().cloned());
                }
                self.inner.cache.insert_validated(set, set_sigs, sec.to_cache(), rank, now);
            }
        }
    }

    /// Puts a validated RRset expanded from a wildcard into the NSEC index
    /// (under its signer, at the wildcard its RRSIG's labels name), so
    /// other names under that wildcard are answered from it (RFC 8198
    /// §5.3) without asking or verifying again.
    fn remember_wildcard(&self, set: &[Record], sigs: &[Record], proof: &[Record], now: u64) {
        let Some(owner) = set.first().map(|r| &r.name) else { return };
        let Some(sig) = sigs.iter().find_map(|s| dnssec::Rrsig::parse(&s.rdata).ok()) else { return };
        // Every signature must name the same wildcard.
        if sigs.iter().any(|s| s.rdata.get(3) != Some(&sig.labels)) {
            return;
        }
        let labels = usize::from(sig.labels);
        if labels >= owner.label_count() || !owner.is_subdomain_of(&sig.signer) {
            return;
        }
        let Ok(wildcard) = owner.suffix(labels).prepend(b"*") else { return };
        self.inner.nsec_index.insert_wildcard(&sig.signer, &wildcard, set, sigs, proof, now);
    }

    /// A zone's own NS set never outlives the parent's delegation that led
    /// to it: its TTL is cut to what is left of the referral's, so the
    /// delegation is checked at the parent again when that ends, whatever
    /// an old server of a moved domain keeps saying (the "ghost domain"
    /// attack; draft-ietf-dnsop-ns-revalidation).
    fn no_longer_than_the_delegation(&self, set: Vec<Record>, now: u64) -> Vec<Record> {
        let Some(first) = set.first().filter(|r| r.rtype == rtype::NS) else { return set };
        let Some(parent) =
            self.inner.cache.get_fresh(&first.name, rtype::NS, now).filter(|e| e.rank() == Rank::Referral)
        else {
            return set;
        };
        let left = parent.remaining(now);
        set.into_iter().map(|r| Record { ttl: r.ttl.min(left), ..r }).collect()
    }

    fn forward_zone(&self, name: &Name) -> Option<&ForwardZone> {
        self.inner
            .config
            .forward_zones
            .iter()
            .filter(|f| name.is_subdomain_of(&f.name))
            .max_by_key(|f| f.name.label_count())
    }

    async fn forward(
        &self,
        fz: &ForwardZone,
        name: &Name,
        qtype: u16,
        budget: &Budget,
        depth: u8,
    ) -> Result<Step, ResolveError> {
        for &server in &fz.servers {
            budget.spend_query()?;
            let q = self.upstream(server, &fz.name, name, qtype, true, false, budget);
            let Ok(reply) = self.send(q, &fz.name, budget).await else { continue };
            // Only data inside the forward zone is used (and cached).
            let reply = classify(&reply, &fz.name, name, qtype);
            let reply_nx = matches!(reply, Classified::NxDomain(..));
            match reply {
                Classified::Answer { mut chain, sigs, authority, .. } => {
                    let sec = match &self.inner.config.validation {
                        None => Security::Indeterminate,
                        Some(_) if qtype == rtype::RRSIG => Security::Indeterminate,
                        Some(_) => {
                            let owner = chain.first().map_or_else(|| name.clone(), |r| r.name.clone());
                            let signer = signer_of(&sigs, &owner).filter(|s| owner.is_subdomain_of(s));
                            let zone = signer.unwrap_or(owner);
                            let trust = self.forwarded_trust(fz, zone.clone(), budget, depth).await;
                            self.check_answer(&trust, &zone, &mut chain, &sigs, &authority, budget)
                        }
                    };
                    let proof = if self.inner.config.validation.is_some() { authority } else { Vec::new() };
                    let held = Held::Answer { chain, sigs, proof, sec, rank: Rank::NonAuthAnswer, scoped: false };
                    return Ok(self.settle(held, name, qtype));
                }
                Classified::NoData(soa, proof) | Classified::NxDomain(soa, proof) => {
                    let nx = reply_nx;
                    let sec = match &self.inner.config.validation {
                        None => Security::Indeterminate,
                        Some(_) => {
                            let zone = soa.as_ref().map_or_else(|| name.clone(), |s| s.name.clone());
                            let trust = self.forwarded_trust(fz, zone.clone(), budget, depth).await;
                            self.check_negative(&trust, &zone, (name, qtype, nx), soa.as_ref(), &proof, budget)
                        }
                    };
                    let proof = if self.inner.config.validation.is_some() { proof } else { Vec::new() };
                    let held = Held::Negative { nx, soa, proof, sec, rank: Rank::NonAuthAnswer, scoped: false };
                    return Ok(self.settle(held, name, qtype));
                }
                _ => continue,
            }
        }
        Err(ResolveError::NoReachableAuthority { zone: fz.name.to_string() })
    }

    /// The trust of `target` (a signer, or the owner of unsigned data)
    /// under forward zone `fz`, established from the anchors down like any
    /// other (RFC 4035 §5 does not ask where data came from): the zone's
    /// own DS from its parent (iterated), then at each label down to the
    /// target its DS through the forwarder, validated with the keys above;
    /// a secure DS gives keys (fetched from the forwarder and checked
    /// against it), a proven insecure delegation ends the walk insecure,
    /// any other proven absence means no zone cut there. A forward zone the
    /// public tree provably does not have (NXDOMAIN from its parent) is a
    /// private namespace: insecure, as there is no signed data of anyone's
    /// to protect there.
    fn forwarded_trust<'a>(
        &'a self,
        fz: &'a ForwardZone,
        target: Name,
        budget: &'a Budget,
        depth: u8,
    ) -> BoxFuture<'a, ZoneTrust> {
        Box::pin(async move {
            let Some(v) = &self.inner.config.validation else { return ZoneTrust::Off };
            if v.under_negative_anchor(&target) {
                return ZoneTrust::Insecure;
            }
            if !target.is_subdomain_of(&fz.name) {
                // A signer above the forward zone: its keys come the usual way.
                return self.resolved_keys(&target, budget, depth).await;
            }
            let now = self.inner.clock.now_unix();
            let labels: Vec<Name> = (fz.name.label_count()..=target.label_count()).map(|n| target.suffix(n)).collect();
            let mut trust: Option<ZoneTrust> = None;
            let mut start = 0;
            for (i, c) in labels.iter().enumerate().rev() {
                if let Some(t) = self.known_trust(c, now).filter(|t| !matches!(t, ZoneTrust::Pending { .. })) {
                    trust = Some(t);
                    start = i + 1;
                    break;
                }
            }
            for c in labels.iter().skip(start) {
                if let Some(t) = &trust
                    && !matches!(t, ZoneTrust::Keys(_))
                {
                    return t.clone();
                }
                if let Some(ZoneTrust::Pending { ds, anchor_keys }) = ZoneTrust::from_anchors(&self.trust_anchors(), c)
                {
                    let t = self.forwarded_keys(fz, c, &ds, &anchor_keys, budget).await;
                    trust = Some(t);
                    continue;
                }
                if c.is_root() {
                    // Validating without a root anchor: only islands are secure.
                    return ZoneTrust::Insecure;
                }
                let res = match self.resolve_in(c.clone(), rtype::DS, budget, depth + 1).await {
                    Ok(r) => r,
                    Err(e) => {
                        return ZoneTrust::Bogus(dnssec::Bogus::DnskeyMissing {
                            zone: c.to_string(),
                            what: format!("its DS could not be resolved ({e})"),
                        });
                    }
                };
                match (&res.security, res.outcome) {
                    (Security::Secure, Outcome::Answer) => {
                        let ds: Vec<dnssec::Ds> = res
                            .answer
                            .iter()
                            .filter(|r| r.rtype == rtype::DS && r.name == *c)
                            .filter_map(|r| dnssec::Ds::parse(&r.rdata).ok())
                            .collect();
                        let t = self.forwarded_keys(fz, c, &ds, &[], budget).await;
                        trust = Some(t);
                    }
                    (Security::Secure, outcome) => {
                        let private = outcome == Outcome::NxDomain && *c == fz.name;
                        if private || validate::proves_insecure_cut(c, &res.authority) {
                            self.remember_trust(c, &ZoneTrust::Insecure, 3600, now);
                            return ZoneTrust::Insecure;
                        }
                        if trust.is_none() {
                            // The forward zone's name is not a zone cut: its
                            // data is the zone's above (the denial's signer).
                            let Some(p) = res.authority.iter().find_map(|r| signer_of(&res.authority, &r.name)) else {
                                return ZoneTrust::Bogus(dnssec::Bogus::DnskeyMissing {
                                    zone: c.to_string(),
                                    what: "unsigned denial of its DS".into(),
                                });
                            };
                            let t = self.resolved_keys(&p, budget, depth).await;
                            trust = Some(t);
                        }
                    }
                    (Security::Insecure | Security::Unsupported(_), _) => return ZoneTrust::Insecure,
                    (Security::Bogus(b), _) => return ZoneTrust::Bogus(b.clone()),
                    (Security::Indeterminate, _) => return ZoneTrust::Off,
                }
            }
            trust.unwrap_or(ZoneTrust::Insecure)
        })
    }

    /// The DNSKEY set of `zone` fetched from forward zone `fz`'s servers and
    /// checked against its DS set or anchor keys (remembered either way).
    async fn forwarded_keys(
        &self,
        fz: &ForwardZone,
        zone: &Name,
        ds: &[dnssec::Ds],
        anchor_keys: &[Box<[u8]>],
        budget: &Budget,
    ) -> ZoneTrust {
        if self.inner.config.validation.is_none() {
            return ZoneTrust::Off;
        }
        for &server in &fz.servers {
            if budget.spend_query().is_err() {
                break;
            }
            let q = self.upstream(server, &fz.name, zone, rtype::DNSKEY, true, false, budget);
            let Ok(reply) = self.send(q, &fz.name, budget).await else { continue };
            let Classified::Answer { chain, sigs, .. } = classify(&reply, &fz.name, zone, rtype::DNSKEY) else {
                continue;
            };
            return self.trust_dnskeys(zone, chain, &sigs, ds, anchor_keys, budget);
        }
        ZoneTrust::Bogus(dnssec::Bogus::DnskeyMissing { zone: zone.to_string(), what: "no DNSKEY answer".into() })
    }

    /// The validated keys of `zone` as a resolution of its DNSKEY set (for
    /// zones outside a forward zone that sign data inside it).
    async fn resolved_keys(&self, zone: &Name, budget: &Budget, depth: u8) -> ZoneTrust {
        match self.resolve_in(zone.clone(), rtype::DNSKEY, budget, depth + 1).await {
            Ok(r) => match r.security {
                Security::Secure => {
                    let keys = r
                        .answer
                        .iter()
                        .filter(|k| k.rtype == rtype::DNSKEY && k.name == *zone)
                        .filter_map(|k| dnssec::Dnskey::parse(&k.rdata).ok())
                        .collect();
                    ZoneTrust::Keys(Arc::new(keys))
                }
                Security::Insecure | Security::Unsupported(_) => ZoneTrust::Insecure,
                Security::Bogus(b) => ZoneTrust::Bogus(b),
                Security::Indeterminate => ZoneTrust::Off,
            },
            Err(e) => ZoneTrust::Bogus(dnssec::Bogus::DnskeyMissing {
                zone: zone.to_string(),
                what: format!("its DNSKEY set could not be resolved ({e})"),
            }),
        }
    }

    /// The deepest zone cut we know servers for (and, when validating,
    /// whose trust we know).
    fn closest_cut(&self, name: &Name) -> Cut {
        let now = self.inner.clock.now_unix();
        let cfg = &self.inner.config;
        let anchors = cfg.validation.as_ref().map(|_| self.trust_anchors());
        let trust_of = |z: &Name| -> Option<ZoneTrust> {
            let Some(anchors) = &anchors else { return Some(ZoneTrust::Off) };
            self.known_trust(z, now).or_else(|| ZoneTrust::from_anchors(anchors, z))
        };
        let stub = cfg.stub_zones.iter().filter(|s| name.is_subdomain_of(&s.name)).max_by_key(|s| s.name.label_count());
        let mut n = Some(name.clone());
        while let Some(z) = n {
            if let Some(stub) = stub.filter(|s| s.name == z) {
                // Stub zones are trusted only through an anchor of their own.
                let trust = trust_of(&z).unwrap_or(ZoneTrust::Insecure);
                return Cut { zone: z, trust, ns_names: Vec::new(), addrs: stub.servers.clone() };
            }
            if !z.is_root()
                && let Some(e) = self.inner.cache.get_fresh(&z, rtype::NS, now)
                && e.negative().is_none()
                && let Some(trust) = trust_of(&z)
            {
                let ns_names: Vec<Name> = e.rdatas().filter_map(|r| Name::from_wire(r).ok()).collect();
                let addrs = self.cached_addresses(&ns_names, now);
                let resolvable = ns_names.iter().any(|n| !n.is_subdomain_of(&z));
                if !addrs.is_empty() || resolvable {
                    return Cut { zone: z, trust, ns_names, addrs };
                }
            }
            n = z.parent();
        }
        let port = cfg.upstream_port;
        let root = Name::root();
        let trust = trust_of(&root).unwrap_or(ZoneTrust::Insecure);
        Cut {
            zone: root,
            trust,
            ns_names: Vec::new(),
            addrs: cfg.root_hints.iter().map(|a| SocketAddr::new(*a, port)).collect(),
        }
    }

    fn cached_addresses(&self, ns_names: &[Name], now: u64) -> Vec<SocketAddr> {
        let port = self.inner.config.upstream_port;
        let mut out = Vec::new();
        for ns in ns_names {
            for t in [rtype::A, rtype::AAAA] {
                if let Some(e) = self.inner.cache.get_fresh(ns, t, now)
                    && e.negative().is_none()
                {
                    out.extend(e.records_at(now).iter().filter_map(Record::address).map(|a| SocketAddr::new(a, port)));
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
        let infra = &self.inner.infra;
        if infra.delegation_dead(&cut.zone) {
            return addrs;
        }
        // A zone met again on this resolution's chain of glueless lookups
        // is a cyclic dependency: its servers can only be found through it.
        let Some(_lookup) = budget.enter_ns_lookup(&cut.zone) else {
            tracing::debug!(zone = %cut.zone, "cyclic name server dependency");
            return addrs;
        };
        let candidates: Vec<Name> = cut.ns_names.iter().filter(|n| !n.is_subdomain_of(&cut.zone)).cloned().collect();
        let (found, complete) = self.lookup_servers(&candidates, budget, depth).await;
        addrs = found;
        if !addrs.is_empty() {
            infra.set_delegation_alive(&cut.zone);
        } else if complete {
            tracing::debug!(zone = %cut.zone, "no name server address; delegation remembered as dead");
            infra.set_delegation_dead(&cut.zone);
        }
        addrs
    }

    #[allow(clippy::too_many_arguments)]
    fn upstream(
        &self,
        server: SocketAddr,
        zone: &Name,
        qname: &Name,
        qtype: u16,
        rd: bool,
        no_edns: bool,
        budget: &Budget,
    ) -> UpstreamQuery {
        let c = &self.inner.config;
        let left = budget.deadline().saturating_duration_since(Instant::now());
        let timeout = self.inner.infra.timeout(&server, zone, c.initial_timeout, c.max_timeout).min(left);
        UpstreamQuery {
            server,
            qname: qname.clone(),
            qtype,
            recursion_desired: rd,
            edns: (!no_edns).then_some(c.edns_udp_size),
            dnssec_ok: c.validation.is_some(),
            tcp: false,
            timeout,
            ecs: None,
            cookie: (c.cookies && !no_edns).then(|| self.inner.infra.cookie_for(server)),
        }
    }

    /// The client network to send to the authorities of `zone` for `qtype`:
    /// only under `ecs_allow`, never for DNSSEC keys and delegation signers
    /// (the same for every client).
    fn ecs_for(&self, zone: &Name, qtype: u16, budget: &Budget) -> Option<(IpAddr, u8)> {
        let ecs = budget.ecs()?;
        if matches!(qtype, rtype::DNSKEY | rtype::DS) {
            return None;
        }
        self.inner.config.ecs_allow.iter().any(|z| zone.is_subdomain_of(z)).then_some(ecs)
    }

    /// Sends a query to a server of `zone` with EDNS fallback and TCP retry
    /// on TC.
    async fn send(&self, mut q: UpstreamQuery, zone: &Name, budget: &Budget) -> Result<Message, TransportError> {
        let infra = &self.inner.infra;
        let mut bad_cookies = 0;
        for _ in 0..3 {
            let started = Instant::now();
            let result = self.inner.transport.query(q.clone()).await;
            if budget.traced() {
                budget.record(TraceStep {
                    server: q.server,
                    qname: q.qname.to_string(),
                    qtype: proto::rtype::name(q.qtype).map_or(format!("TYPE{}", q.qtype), str::to_string),
                    tcp: q.tcp,
                    at_ms: budget.elapsed_ms(started),
                    ms: started.elapsed().as_millis() as u64,
                    outcome: match &result {
                        Ok(m) => format!(
                            "{} ({} answer, {} authority){}",
                            proto::Rcode::from_flags(m.rcode())
                                .map_or(format!("RCODE{}", m.rcode()), |r| r.as_str().into()),
                            m.answer.len(),
                            m.authority.len(),
                            if m.has_flag(flags::AA) { ", authoritative" } else { "" }
                        ),
                        Err(e) => e.to_string(),
                    },
                });
            }
            match result {
                Ok(reply) => {
                    infra.reply(q.server, zone, started.elapsed());
                    infra.learn_cookie(q.server, &reply);
                    if reply.rcode() == Rcode::FormErr as u16 && q.edns.is_some() && reply.edns.is_none() {
                        infra.set_no_edns(q.server);
                        q.edns = None;
                        q.cookie = None;
                    } else if reply.rcode() == proto::cookie::BADCOOKIE && q.cookie.is_some() && !q.tcp {
                        // RFC 7873 §5.3: retry once with the server cookie
                        // it just gave; if it still complains, over TCP.
                        bad_cookies += 1;
                        if bad_cookies == 1 {
                            q.cookie = Some(infra.cookie_for(q.server));
                        } else {
                            q.tcp = true;
                        }
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
                    infra.timed_out(q.server, zone, q.timeout);
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
        skip: &[SocketAddr],
    ) -> Result<(Classified, SocketAddr), ResolveError> {
        let mut addrs = self.cut_addresses(cut, budget, depth).await;
        addrs.retain(|a| !skip.contains(a));
        let (mut asked, mut network_errors, mut limited) = (0usize, 0usize, 0usize);
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut looked_up = false;
        loop {
            // Servers known lame for the zone, or backing off after
            // timeouts, are not asked again until that ends: when they are
            // all the zone has, its names fail at once instead of waiting
            // for them again.
            let available = self.inner.infra.rank(&mut addrs, &cut.zone);
            if available == 0 && !addrs.is_empty() {
                tracing::debug!(zone = %cut.zone, "every known server lame or backing off");
            }
            addrs.truncate(available);
            // Best first; when a server has not answered within its hedge
            // delay (about two of its RTTs), the next one is asked too and
            // the first usable reply wins, instead of waiting for a whole
            // timeout behind a dead or slow server.
            let mut next = 0;
            let mut pending = FuturesUnordered::new();
            let mut hedge_at = Instant::now();
            // Servers asked that have not replied yet, since when.
            let mut waiting: Vec<(SocketAddr, Instant)> = Vec::new();
            let mut hedge_due = false;
            loop {
                while (pending.is_empty() || hedge_due) && next < addrs.len() {
                    hedge_due = false;
                    let addr = addrs[next];
                    next += 1;
                    tried.push(addr);
                    match self.launch(addr, &cut.zone, qn, qt, budget)? {
                        Some((query, hedge)) => {
                            pending.push(query);
                            waiting.push((addr, Instant::now()));
                            asked += 1;
                            hedge_at = Instant::now() + hedge;
                        }
                        None => limited += 1,
                    }
                }
                if pending.is_empty() {
                    break;
                }
                let hedging = next < addrs.len();
                tokio::select! {
                    Some((addr, result)) = pending.next() => {
                        waiting.retain(|(a, _)| *a != addr);
                        match result {
                            Ok(reply) => match classify(&reply, &cut.zone, qn, qt) {
                                Classified::Lame => {
                                    tracing::debug!(%addr, zone = %cut.zone, "lame server");
                                    self.inner.infra.set_lame(addr, &cut.zone);
                                }
                                Classified::Failure => {
                                    tracing::debug!(%addr, zone = %cut.zone, "server failure");
                                }
                                c => {
                                    // Servers another one answered before
                                    // count as timed out for the zone: the
                                    // next query asks the one that did.
                                    for (slow, since) in waiting {
                                        self.inner.infra.timed_out(slow, &cut.zone, since.elapsed());
                                    }
                                    return Ok((c, addr));
                                }
                            },
                            Err(TransportError::Network(e)) => {
                                tracing::debug!(%addr, error = %e, "network error");
                                network_errors += 1;
                            }
                            Err(_) => {}
                        }
                        budget.check_time()?;
                    }
                    () = tokio::time::sleep_until(hedge_at), if hedging => {
                        tracing::debug!(zone = %cut.zone, "hedging: no answer yet, asking another server too");
                        hedge_due = true;
                    }
                }
            }
            // Every server with a known address failed: the zone's other
            // name servers, those without one, are looked up and asked
            // before giving up (RFC 1034 §5.3.3 step 4), once.
            if looked_up {
                break;
            }
            looked_up = true;
            addrs = self.unresolved_servers(cut, budget, depth).await;
            addrs.retain(|a| !skip.contains(a) && !tried.contains(a));
            if addrs.is_empty() {
                break;
            }
        }
        let zone = cut.zone.to_string();
        if limited > 0 && limited == tried.len() {
            return Err(ResolveError::UpstreamLimited { zone });
        }
        if network_errors > 0 && network_errors == asked {
            Err(ResolveError::NetworkError { zone })
        } else {
            Err(ResolveError::NoReachableAuthority { zone })
        }
    }

    /// Starts asking `addr`, a server of `zone`, (qn, qt): the query (it
    /// holds its upstream permit) and how long to wait for it before
    /// asking another server too; `None` when the server is over its
    /// rate.
    #[allow(clippy::type_complexity)]
    fn launch<'a>(
        &'a self,
        addr: SocketAddr,
        zone: &'a Name,
        qn: &Name,
        qt: u16,
        budget: &'a Budget,
    ) -> Result<Option<(BoxFuture<'a, (SocketAddr, Result<Message, TransportError>)>, Duration)>, ResolveError> {
        let permit = match self.inner.upstream.acquire(zone, addr) {
            Ok(p) => p,
            Err(crate::limits::Refusal::Zone) => {
                return Err(ResolveError::UpstreamLimited { zone: zone.to_string() });
            }
            Err(crate::limits::Refusal::Server) => return Ok(None),
        };
        budget.spend_query()?;
        let no_edns = self.inner.infra.no_edns(&addr);
        let mut q = self.upstream(addr, zone, qn, qt, false, no_edns, budget);
        q.ecs = self.ecs_for(zone, qt, budget).filter(|_| !no_edns);
        let hedge = self.inner.infra.hedge_delay(&addr).min(q.timeout);
        let query = async move {
            let _permit = permit;
            (addr, self.send(q, zone, budget).await)
        };
        Ok(Some((Box::pin(query), hedge)))
    }

    /// Addresses of the cut's name servers that had none known: each name
    /// outside the zone without a cached address is resolved (three at
    /// most, as for a glueless referral), stopping at the first that gives
    /// one. Nothing when the delegation is known dead.
    async fn unresolved_servers(&self, cut: &Cut, budget: &Budget, depth: u8) -> Vec<SocketAddr> {
        if self.inner.infra.delegation_dead(&cut.zone) {
            return Vec::new();
        }
        let now = self.inner.clock.now_unix();
        let names: Vec<Name> = cut
            .ns_names
            .iter()
            .filter(|n| !n.is_subdomain_of(&cut.zone))
            .filter(|n| self.cached_addresses(std::slice::from_ref(*n), now).is_empty())
            .cloned()
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        let Some(_lookup) = budget.enter_ns_lookup(&cut.zone) else { return Vec::new() };
        self.lookup_servers(&names, budget, depth).await.0
    }

    /// Addresses of the first of `names` (up to three) that has any: the
    /// first is looked up at once, and each next one when the last has
    /// failed or has not finished within [`NS_LOOKUP_STAGGER`], so a slow
    /// or dead name server name costs a short wait, not its whole
    /// resolution, and a fast one costs no extra queries. `complete` is
    /// false when a lookup was cut short by a budget or a limit, so an
    /// empty result says nothing about the zone.
    async fn lookup_servers(&self, names: &[Name], budget: &Budget, depth: u8) -> (Vec<SocketAddr>, bool) {
        let port = self.inner.config.upstream_port;
        let t = if self.inner.config.ipv4 { rtype::A } else { rtype::AAAA };
        let mut names = names.iter().take(MAX_GLUELESS_LOOKUPS);
        let mut pending = FuturesUnordered::new();
        let mut complete = true;
        let mut next_at = Instant::now();
        loop {
            if pending.is_empty() || Instant::now() >= next_at {
                match names.next() {
                    Some(ns) => {
                        pending.push(self.resolve_in(ns.clone(), t, budget, depth + 1));
                        next_at = Instant::now() + NS_LOOKUP_STAGGER;
                    }
                    None if pending.is_empty() => return (Vec::new(), complete),
                    None => {}
                }
            }
            let more = names.len() > 0;
            tokio::select! {
                Some(result) = pending.next() => match result {
                    Ok(res) => {
                        let addrs: Vec<SocketAddr> = res
                            .answer
                            .iter()
                            .filter_map(Record::address)
                            .map(|a| SocketAddr::new(a, port))
                            .filter(|a| self.usable(a))
                            .collect();
                        if !addrs.is_empty() {
                            return (addrs, complete);
                        }
                        // No address from this one: the next goes now.
                        next_at = Instant::now();
                    }
                    // Out of budget, time or depth, or held back by an
                    // upstream limit: nothing learnt about the zone itself.
                    Err(ResolveError::BudgetExhausted(_) | ResolveError::Cancelled | ResolveError::UpstreamLimited { .. }) => {
                        complete = false;
                        next_at = Instant::now();
                    }
                    Err(_) => next_at = Instant::now(),
                },
                () = tokio::time::sleep_until(next_at), if more => {}
            }
        }
    }
}

enum CacheHit {
    /// A CNAME (with its RRSIGs and any wildcard proof) to follow.
    Cname(Vec<Record>, Vec<Record>, Name, Security),
    /// A final answer or negative answer.
    Step(Step),
}

/// An authority's answer, validated, before it is cached and becomes a
/// [`Step`] (held back while another server is asked after a bogus one).
enum Held {
    Answer { chain: Vec<Record>, sigs: Vec<Record>, proof: Vec<Record>, sec: Security, rank: Rank, scoped: bool },
    Negative { nx: bool, soa: Option<Record>, proof: Vec<Record>, sec: Security, rank: Rank, scoped: bool },
}

enum Step {
    /// Records (with RRSIGs), the wildcard proofs for them, and the status.
    Answer(Vec<Record>, Vec<Record>, Security),
    NoData(Option<Record>, Vec<Record>, Security),
    NxDomain(Option<Record>, Vec<Record>, Security),
}

/// Why a chain that came back to `at` (or grew too long) failed: a DNAME
/// loop when a DNAME of the chain rewrote into it, else a CNAME chain.
fn chain_error(chain: &[Record], at: &Name) -> ResolveError {
    if chain.iter().any(|r| r.rtype == rtype::DNAME && at.is_subdomain_of(&r.name)) {
        ResolveError::DnameLoop(at.to_string())
    } else {
        ResolveError::CnameChain(at.to_string())
    }
}

/// Cached DNSSEC records split into a wildcard proof (NSEC and NSEC3 with
/// their RRSIGs) and the RRset's own signatures.
fn split_proof(dnssec: Vec<Record>) -> (Vec<Record>, Vec<Record>) {
    let is_proof = |r: &Record| match r.rtype {
        rtype::NSEC | rtype::NSEC3 => true,
        rtype::RRSIG => {
            r.rdata.get(..2).is_some_and(|t| matches!(u16::from_be_bytes([t[0], t[1]]), rtype::NSEC | rtype::NSEC3))
        }
        _ => false,
    };
    dnssec.into_iter().partition(is_proof)
}

/// The signer named by the first RRSIG at `owner`.
fn signer_of(sigs: &[Record], owner: &Name) -> Option<Name> {
    sigs.iter()
        .filter(|s| s.rtype == rtype::RRSIG && &s.name == owner)
        .find_map(|s| dnssec::Rrsig::parse(&s.rdata).ok())
        .map(|s| s.signer)
}

/// The RRSIGs in `sigs` covering (owner, type).
fn sigs_for(sigs: &[Record], owner: &Name, t: u16) -> Vec<Record> {
    sigs.iter()
        .filter(|s| s.rtype == rtype::RRSIG && &s.name == owner && s.rdata.get(..2) == Some(&t.to_be_bytes()[..]))
        .cloned()
        .collect()
}

/// The chain with each RRset followed by its RRSIGs.
///
/// A signature is given no longer a TTL than the RRset it covers, which
/// validation may have cut to the signature's expiry (RFC 4035 §5.3.3).
fn interleave(chain: Vec<Record>, sigs: &[Record]) -> Vec<Record> {
    let mut out = Vec::with_capacity(chain.len() + sigs.len());
    for set in group_rrsets(chain) {
        let ttl = set.iter().map(|r| r.ttl).min().unwrap_or(0);
        let s = sigs_for(sigs, &set[0].name, set[0].rtype);
        out.extend(set);
        out.extend(s.into_iter().map(|r| Record { ttl: r.ttl.min(ttl), ..r }));
    }
    out
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
    // A denial's records: NSEC and NSEC3, and the RRSIGs over them and the
    // SOA; an RRSIG over anything else (an NS set left out) would be an
    // orphan.
    let covers =
        |r: &Record, types: &[u16]| r.rdata.get(..2).is_some_and(|t| types.contains(&u16::from_be_bytes([t[0], t[1]])));
    let proof: Vec<Record> = reply
        .authority
        .iter()
        .filter(in_zone)
        .filter(|r| match r.rtype {
            rtype::NSEC | rtype::NSEC3 => true,
            rtype::RRSIG => covers(r, &[rtype::NSEC, rtype::NSEC3, rtype::SOA]),
            _ => false,
        })
        .cloned()
        .collect();
    if !chain.is_empty() {
        let sigs = reply.answer.iter().filter(in_zone).filter(|r| r.rtype == rtype::RRSIG).cloned().collect();
        // Beside an answer only a wildcard proof belongs there.
        let proof = proof.into_iter().filter(|r| r.rtype != rtype::RRSIG || !covers(r, &[rtype::SOA])).collect();
        return Classified::Answer { chain, sigs, authority: proof, authoritative };
    }
    if rcode == Rcode::NxDomain as u16 {
        return Classified::NxDomain(soa, proof);
    }
    let ns: Vec<&Record> = reply.authority.iter().filter(|r| r.rtype == rtype::NS).collect();
    if let Some(first) = ns.first() {
        let child = first.name.clone();
        // DS lives at the parent: a "referral" to the name itself for a DS
        // question is a server that is not the parent (RFC 4035 §4.2).
        if qt == rtype::DS && child == *qn {
            return Classified::Lame;
        }
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
            let dnssec = reply
                .authority
                .iter()
                .filter(in_zone)
                .filter(|r| matches!(r.rtype, rtype::DS | rtype::NSEC | rtype::NSEC3 | rtype::RRSIG))
                .cloned()
                .collect();
            return Classified::Referral { child, ns: ns_set, glue, dnssec };
        }
        if !authoritative {
            return Classified::Lame;
        }
    }
    // Records that answer another question (another type, another name)
    // and no SOA: neither an answer nor a denial (RFC 2308 §2.2 wants the
    // SOA). Not lame, but useless: the zone's next server is asked (RFC
    // 1034 §5.3.3 step 4).
    if soa.is_none() && !reply.answer.is_empty() {
        return Classified::Failure;
    }
    if authoritative || soa.is_some() {
        return Classified::NoData(soa, proof);
    }
    Classified::Lame
}

/// The records answering (qn, qt) in order: DNAME + synthesised CNAME, CNAME
/// links, then the final RRset. Stops where the answer section does.
fn extract_chain(answer: &[&Record], qn: &Name, qt: u16) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cur = qn.clone();
    for _ in 0..=16 {
        // Below a DNAME nothing else exists (RFC 6672 §2.4): follow it first,
        // so the server's unsigned synthesised CNAME is never taken as data.
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
        let rrset: Vec<Record> = answer
            .iter()
            .filter(|r| r.name == cur && (r.rtype == qt || (qt == rtype::ANY && r.rtype != rtype::RRSIG)))
            .map(|r| (*r).clone())
            .collect();
        if !rrset.is_empty() {
            out.extend(rrset);
            break;
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

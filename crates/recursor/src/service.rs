//! The answer service: a client's wire query in, a wire response out.

use std::sync::Arc;

use cache::{AnswerCache, CachedAnswer, Freshness, WriteOptions, variant};
use proto::build::Section;
use proto::wire::{Rcode, flags, rtype};
use proto::{Ede, MessageWriter, Name, QueryError, QueryView, Record, class};

use crate::local::LocalData;
use crate::{Clock, Outcome, Recursor, ResolveError};

/// Whether the response goes over a datagram or a stream transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// UDP: responses are truncated to the client's payload size.
    Datagram,
    /// TCP: up to 65535 bytes.
    Stream,
    /// TLS, HTTP, QUIC: up to 65535 bytes, padded (RFC 8467) when the query
    /// was.
    EncryptedStream,
}

/// What the synchronous fast path did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPath {
    /// A fresh cached answer of this length is in the buffer.
    Answered(usize),
    /// Not answerable from the cache; take the slow path.
    Miss,
    /// Not a query: send nothing.
    Drop,
}

/// Settings of the answer service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Largest UDP response we send, whatever the client offers (1232).
    pub max_udp_payload: u16,
    /// Answer-cache bound in bytes.
    pub answer_cache_bytes: u64,
    /// TTL policy of the answer cache.
    pub ttl: cache::TtlPolicy,
    /// Local data and special-use names.
    pub local: LocalData,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_udp_payload: 1232,
            answer_cache_bytes: 64 << 20,
            ttl: cache::TtlPolicy::default(),
            local: LocalData::new(Vec::new(), true),
        }
    }
}

/// Answers client queries: cache, local data, recursion.
pub struct Service {
    recursor: Recursor,
    answers: AnswerCache,
    config: ServiceConfig,
    /// Local data, replaceable at run time (DDR learns the doors' ports
    /// only once they are bound).
    local: arc_swap::ArcSwap<LocalData>,
    /// Filtering profiles; profile 0 is the default.
    policy: Arc<policy::Policy>,
    /// Resolutions by DNSSEC outcome: secure, insecure, bogus.
    validation: [std::sync::atomic::AtomicU64; 3],
    clock: Arc<dyn Clock>,
    /// Queries whose cached answers are to be refreshed before they
    /// expire, for [`Service::run_prefetch`].
    prefetch: Prefetch,
}

/// Most queries waiting to be prefetched; more are not queued (their
/// answers expire and are resolved on the next miss, as without prefetch).
const PREFETCH_QUEUE: usize = 1024;
/// Most prefetches resolving at once.
const PREFETCH_CONCURRENCY: usize = 32;

/// A query whose answer is to be refreshed: its bytes (the answer's cache
/// key), the transport and the profile.
type Refresh = (Box<[u8]>, TransportKind, u8);

/// The prefetch queue.
#[derive(Default)]
struct Prefetch {
    queue: std::sync::Mutex<Vec<Refresh>>,
    wake: tokio::sync::Notify,
    /// Refreshes started and refreshes that got an answer.
    started: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("answers", &self.answers).finish()
    }
}

impl Service {
    /// A service over `recursor`.
    pub fn new(recursor: Recursor, config: ServiceConfig, clock: Arc<dyn Clock>) -> Service {
        let answers = AnswerCache::new(config.answer_cache_bytes, config.ttl);
        let local = arc_swap::ArcSwap::from_pointee(config.local.clone());
        Service {
            recursor,
            answers,
            config,
            local,
            policy: Arc::new(policy::Policy::unfiltered()),
            validation: Default::default(),
            clock,
            prefetch: Prefetch::default(),
        }
    }

    /// Refreshes cached answers that hits found near their expiry, until
    /// the runtime stops (spawn it once per service). Without it nothing
    /// is prefetched.
    pub async fn run_prefetch(self: Arc<Self>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(PREFETCH_CONCURRENCY));
        loop {
            self.prefetch.wake.notified().await;
            let batch = std::mem::take(&mut *self.prefetch.queue.lock().unwrap_or_else(|e| e.into_inner()));
            for (query, kind, profile) in batch {
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let s = self.clone();
                tokio::spawn(async move {
                    s.prefetch.started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let mut out = Vec::new();
                    if s.answer_inner(&query, kind, profile, None, &mut out, true).await.is_some() {
                        s.prefetch.done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    drop(slot);
                });
            }
        }
    }

    /// Prefetches started, and those that got an answer.
    pub fn prefetch_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.prefetch.started.load(Relaxed), self.prefetch.done.load(Relaxed))
    }

    /// Queues `query` for a refresh (called once per cached answer, by the
    /// hit that claims it).
    fn queue_prefetch(&self, query: &[u8], kind: TransportKind, profile: u8) {
        let mut q = self.prefetch.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() < PREFETCH_QUEUE {
            q.push((query.into(), kind, profile));
            drop(q);
            self.prefetch.wake.notify_one();
        }
    }

    /// Filters through `policy` (by default, one profile without rules).
    pub fn with_policy(mut self, policy: Arc<policy::Policy>) -> Service {
        self.policy = policy;
        self
    }

    /// The filtering policy.
    pub fn policy(&self) -> &Arc<policy::Policy> {
        &self.policy
    }

    /// Resolutions so far by DNSSEC outcome: secure, insecure (or not
    /// validated), bogus.
    pub fn validation_counts(&self) -> [u64; 3] {
        self.validation.each_ref().map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn count_validation(&self, security: &crate::Security) {
        let i = match security {
            crate::Security::Secure => 0,
            crate::Security::Bogus(_) => 2,
            _ => 1,
        };
        self.validation[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The recursor.
    pub fn recursor(&self) -> &Recursor {
        &self.recursor
    }

    /// The answer cache.
    pub fn answers(&self) -> &AnswerCache {
        &self.answers
    }

    /// Adds local records (answered as given) to the local data in force.
    pub fn add_local_records(&self, records: Vec<proto::Record>) {
        let current = self.local.load();
        self.local.store(std::sync::Arc::new(current.with_records(records)));
    }

    fn write_options(&self, view: &QueryView<'_>, kind: TransportKind, stale: bool) -> WriteOptions {
        let limit = match kind {
            TransportKind::Datagram => view.udp_limit(self.config.max_udp_payload),
            TransportKind::Stream | TransportKind::EncryptedStream => 65535,
        };
        let pad_block = pad_block(view, kind);
        WriteOptions { now: self.clock.now_unix(), limit, stale, udp_size: self.config.max_udp_payload, pad_block }
    }

    /// The synchronous cache-hit path for the default profile.
    pub fn try_fast(&self, query: &[u8], kind: TransportKind, out: &mut Vec<u8>) -> FastPath {
        self.try_fast_in(query, kind, 0, out)
    }

    /// The synchronous cache-hit path under filtering profile `profile`: no
    /// allocation when `out` has room.
    pub fn try_fast_in(&self, query: &[u8], kind: TransportKind, profile: u8, out: &mut Vec<u8>) -> FastPath {
        let view = match QueryView::parse(query) {
            Ok(v) => v,
            Err(QueryError::Drop) => return FastPath::Drop,
            Err(_) => return FastPath::Miss,
        };
        let Some(hit) = self.answers.get(&view, profile) else { return FastPath::Miss };
        let now = self.clock.now_unix();
        if hit.tag() != self.policy.generation(profile) || hit.freshness(now, self.answers.policy()) != Freshness::Fresh
        {
            return FastPath::Miss;
        }
        if hit.claim_prefetch(now) {
            self.queue_prefetch(query, kind, profile);
        }
        hit.count_hit();
        FastPath::Answered(hit.write(&view, &self.write_options(&view, kind, false), out))
    }

    /// Answers any query under the default profile.
    pub async fn answer(&self, query: &[u8], kind: TransportKind, out: &mut Vec<u8>) -> Option<usize> {
        self.answer_in(query, kind, 0, out).await
    }

    /// Answers any query under filtering profile `profile`. Returns the
    /// response length in `out`, or `None` when nothing must be sent.
    pub async fn answer_in(&self, query: &[u8], kind: TransportKind, profile: u8, out: &mut Vec<u8>) -> Option<usize> {
        self.answer_for(query, kind, profile, None, out).await
    }

    /// As [`Service::answer_in`], for a client in network `ecs` (address
    /// and prefix length), which authorities under the recursor's
    /// `ecs_allow` are sent; answers that depended on it are not cached.
    pub async fn answer_for(
        &self,
        query: &[u8],
        kind: TransportKind,
        profile: u8,
        ecs: Option<(std::net::IpAddr, u8)>,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        self.answer_inner(query, kind, profile, ecs, out, false).await
    }

    /// [`Service::answer_for`]; with `refresh`, a fresh cached answer is
    /// not served but resolved again and replaced (prefetch).
    async fn answer_inner(
        &self,
        query: &[u8],
        kind: TransportKind,
        profile: u8,
        ecs: Option<(std::net::IpAddr, u8)>,
        out: &mut Vec<u8>,
        refresh: bool,
    ) -> Option<usize> {
        out.clear();
        let view = match QueryView::parse(query) {
            Ok(v) => v,
            Err(QueryError::Drop) => return None,
            Err(QueryError::FormErr { id }) => return Some(error_only(out, id, Rcode::FormErr as u16, 0)),
            Err(QueryError::NotImp { id }) => return Some(error_only(out, id, Rcode::NotImp as u16, 0)),
            // BADVERS is extended RCODE 16: 0 in the header, 1 in OPT.
            Err(QueryError::BadVers { id }) => return Some(error_only(out, id, 0, 1)),
            Err(_) => return None,
        };
        let Ok(qname) = Name::from_wire(view.qname) else {
            return Some(self.error(&view, kind, Rcode::FormErr, None, out));
        };
        if view.qclass != class::IN {
            return Some(self.error(
                &view,
                kind,
                Rcode::Refused,
                Some(Ede::new(proto::ede::code::NOT_SUPPORTED, "only class IN")),
                out,
            ));
        }
        if rtype::is_meta(view.qtype) && view.qtype != rtype::ANY {
            return Some(self.error(
                &view,
                kind,
                Rcode::Refused,
                Some(Ede::new(proto::ede::code::NOT_SUPPORTED, "zone transfers and meta types are not served")),
                out,
            ));
        }
        // The generation is read before deciding, so an answer decided under
        // rules that a reload replaces meanwhile is never served again.
        let generation = self.policy.generation(profile);
        let rules = self.policy.profile(profile);
        let mut lower = [0u8; 255];
        let verdict = rules.check_name(proto::name::lower_into(view.qname, &mut lower));
        if let policy::Verdict::Block(block) = &verdict
            && !(block.response == policy::Response::TcpOnly && kind != TransportKind::Datagram)
        {
            return self.blocked(&view, &qname, kind, profile, generation, block, out).await;
        }
        if let Some(local) = self.local.load().answer(&qname, view.qtype) {
            let outcome = if local.rcode == 3 {
                Outcome::NxDomain
            } else if local.answer.is_empty() {
                Outcome::NoData
            } else {
                Outcome::Answer
            };
            let res = crate::Resolution {
                outcome,
                answer: local.answer,
                authority: Vec::new(),
                security: crate::Security::Indeterminate,
                client_specific: false,
            };
            let (ans, _) = self.build(&view, &res, flags::AA, None, None);
            return Some(ans.write(&view, &self.write_options(&view, kind, false), out));
        }
        let now = self.clock.now_unix();
        let cached = self.answers.get(&view, profile).filter(|h| h.tag() == generation);
        if let Some(hit) =
            cached.as_ref().filter(|h| !refresh && h.freshness(now, self.answers.policy()) == Freshness::Fresh)
        {
            hit.count_hit();
            return Some(hit.write(&view, &self.write_options(&view, kind, false), out));
        }
        if view.qtype == rtype::ANY {
            return Some(self.any(&view, &qname, kind, profile, generation, out));
        }
        if !view.recursion_desired() {
            let ede = Ede::new(proto::ede::code::NOT_AUTHORITATIVE, "recursion not desired and not cached");
            return Some(self.error(&view, kind, Rcode::Refused, Some(ede), out));
        }
        // A failure may be given to every client unless the resolution
        // could have sent this client's network somewhere.
        let mut shared = ecs.is_none() || !self.recursor.sends_ecs();
        let resolved = if refresh {
            self.recursor.refresh(&qname, view.qtype).await
        } else {
            self.recursor.resolve_for(&qname, view.qtype, ecs).await
        };
        // A refresh that failed leaves the cached answer be: it is still
        // fresh, and a failure must not take its place early.
        if refresh && !matches!(&resolved, Ok(r) if !matches!(r.security, crate::Security::Bogus(_))) {
            return None;
        }
        if let Ok(res) = &resolved {
            self.count_validation(&res.security);
        }
        match resolved {
            Ok(crate::Resolution { security: crate::Security::Bogus(b), .. }) if !view.checking_disabled() => {
                tracing::debug!(qtype = view.qtype, reason = %b, "bogus");
                let failure = Failure { profile, generation, previous: cached.as_deref(), shared };
                Some(self.fail(&view, kind, failure, Ede::new(b.ede_code(), b.to_string()), out))
            }
            Ok(res) => {
                if !matches!(verdict, policy::Verdict::Allowed)
                    && let Some(block) = answer_block(&rules, &res.answer)
                {
                    return self.blocked(&view, &qname, kind, profile, generation, &block, out).await;
                }
                let ede = match &res.security {
                    crate::Security::Unsupported(e) => Some(e.clone()),
                    _ => None,
                };
                let (ans, cacheable) = self.build(&view, &res, 0, ede, None);
                let ans = Arc::new(ans.with_policy(generation, None));
                if cacheable && !res.client_specific {
                    self.cache(&view, profile, ans.clone());
                }
                Some(ans.write(&view, &self.write_options(&view, kind, false), out))
            }
            Err(e) => {
                let stale = cached.as_ref().filter(|h| h.freshness(now, self.answers.policy()) == Freshness::Stale);
                if let Some(hit) = stale {
                    tracing::debug!(error = %e, "serving stale");
                    return Some(hit.write(&view, &self.write_options(&view, kind, true), out));
                }
                let qname = Name::from_wire(view.qname).map(|n| n.to_string()).unwrap_or_default();
                tracing::debug!(%qname, qtype = view.qtype, error = %e, "SERVFAIL");
                // A resolution that died here (its task gone), or whose
                // query was held back by an upstream limit, says nothing
                // about the zone's servers; and a flood of random names
                // under a limited zone must not fill the cache with them.
                shared &= !matches!(e, ResolveError::Cancelled | ResolveError::UpstreamLimited { .. });
                let failure = Failure { profile, generation, previous: cached.as_deref(), shared };
                Some(self.fail(&view, kind, failure, Ede::new(e.ede_code(), e.to_string()), out))
            }
        }
    }

    /// Answers SERVFAIL with `ede` for a resolution that failed, and caches
    /// the failure for the question (RFC 9520): for
    /// [`cache::TtlPolicy::failure_ttl`] seconds, doubled while it
    /// persists, at most five minutes; never served stale. Until then the
    /// same question is answered from the cache on the fast path, so a
    /// broken zone costs its authorities nothing and its askers no wait.
    fn fail(&self, view: &QueryView<'_>, kind: TransportKind, f: Failure<'_>, ede: Ede, out: &mut Vec<u8>) -> usize {
        let now = self.clock.now_unix();
        let previous = f.previous.filter(|p| p.is_failure()).map(|p| (p.stored_at(), p.ttl()));
        let ttl = self.answers.policy().failure_ttl(previous, now);
        if ttl == 0 || !f.shared {
            return self.error(view, kind, Rcode::ServFail, Some(ede), out);
        }
        let mut wire = Vec::with_capacity(proto::wire::HEADER_LEN + view.qname.len() + 4);
        let mut w = MessageWriter::new(&mut wire, 0, flags::QR | flags::RA | Rcode::ServFail as u16);
        w.question(view.qname, view.qtype, view.qclass);
        w.finish();
        let ans = CachedAnswer::new(wire.into(), Box::new([]), now, ttl, Some((ede.code, ede.text.into_boxed_str())));
        let ans = Arc::new(ans.with_policy(f.generation, None));
        self.cache(view, f.profile, ans.clone());
        ans.write(view, &self.write_options(view, kind, false), out)
    }

    /// Answers ANY as RFC 8482 §4.2 allows: one synthesised HINFO record
    /// ("RFC8482", ""), on every door, without asking the authorities. An
    /// ANY query is the classic amplification vector and what it returns is
    /// undefined anyway (a cache's contents); clients wanting a type ask for
    /// it. The answer is cached, so a flood of ANY is served on the fast
    /// path and never reaches an authority.
    fn any(
        &self,
        view: &QueryView<'_>,
        qname: &Name,
        kind: TransportKind,
        profile: u8,
        generation: u32,
        out: &mut Vec<u8>,
    ) -> usize {
        const TTL: u32 = 3600;
        let hinfo = Record {
            name: qname.clone(),
            rtype: rtype::HINFO,
            class: class::IN,
            ttl: TTL,
            rdata: b"\x07RFC8482\x00".as_slice().into(),
        };
        let res = crate::Resolution {
            outcome: Outcome::Answer,
            answer: vec![hinfo],
            authority: Vec::new(),
            security: crate::Security::Indeterminate,
            client_specific: false,
        };
        let (ans, _) = self.build(view, &res, 0, None, Some(TTL));
        let ans = Arc::new(ans.with_policy(generation, None));
        self.cache(view, profile, ans.clone());
        ans.write(view, &self.write_options(view, kind, false), out)
    }

    fn cache(&self, view: &QueryView<'_>, profile: u8, ans: Arc<CachedAnswer>) {
        let dnssec_ok = view.edns.is_some_and(|e| e.dnssec_ok);
        let v = variant(dnssec_ok, view.checking_disabled(), profile);
        self.answers.insert(view.qname, view.qtype, view.qclass, v, ans);
    }

    /// Answers for a blocked name as the block says, with its EDE, and
    /// caches the answer for the profile.
    #[allow(clippy::too_many_arguments)]
    async fn blocked(
        &self,
        view: &QueryView<'_>,
        qname: &Name,
        kind: TransportKind,
        profile: u8,
        generation: u32,
        block: &policy::Block,
        out: &mut Vec<u8>,
    ) -> Option<usize> {
        use policy::Response;
        block.count();
        let record = |rtype: u16, rdata: Box<[u8]>| Record {
            name: qname.clone(),
            rtype,
            class: class::IN,
            ttl: block.ttl,
            rdata,
        };
        let mut res = crate::Resolution {
            outcome: Outcome::NoData,
            answer: Vec::new(),
            authority: Vec::new(),
            security: crate::Security::Indeterminate,
            client_specific: false,
        };
        match &block.response {
            Response::Drop => return None,
            Response::TcpOnly => {
                // Datagram only (streams were let through): an empty
                // truncated answer sends the client to TCP.
                let n = self.error(view, kind, Rcode::NoError, None, out);
                out[2] |= (flags::TC >> 8) as u8;
                return Some(n);
            }
            Response::NxDomain => res.outcome = Outcome::NxDomain,
            Response::NoData => {}
            Response::Address(v4, v6) => match view.qtype {
                rtype::A => res.answer.push(record(rtype::A, v4.octets().into())),
                rtype::AAAA => res.answer.push(record(rtype::AAAA, v6.octets().into())),
                _ => {}
            },
            Response::Local(records) => {
                let cname = records.iter().find(|r| r.rtype == rtype::CNAME);
                res.answer = records
                    .iter()
                    .filter(|r| r.rtype == view.qtype || view.qtype == rtype::ANY)
                    .map(|r| record(r.rtype, r.rdata.clone()))
                    .collect();
                if let (Some(c), true) = (cname, res.answer.is_empty()) {
                    // A rewrite: the CNAME, then whatever its target resolves
                    // to (unvalidated: the chain is ours, not the zone's).
                    res.answer.push(record(rtype::CNAME, c.rdata.clone()));
                    if let Ok(target) = Name::from_wire(&c.rdata)
                        && let Ok(t) = self.recursor.resolve(&target, view.qtype).await
                    {
                        res.outcome = t.outcome;
                        res.answer.extend(t.answer.into_iter().filter(|r| r.rtype != rtype::RRSIG));
                    }
                }
            }
        }
        if res.outcome == Outcome::NoData && !res.answer.is_empty() {
            res.outcome = Outcome::Answer;
        }
        let (ans, _) = self.build(view, &res, 0, Some(block.ede.clone()), Some(block.ttl));
        let ans = Arc::new(ans.with_policy(generation, Some(block.counter())));
        self.cache(view, profile, ans.clone());
        Some(ans.write(view, &self.write_options(view, kind, false), out))
    }

    /// Builds the canonical (ID 0, lower-case question, no OPT) response for
    /// a resolution, and whether it may be cached. `fixed_ttl` overrides
    /// the TTL the answer is kept for (synthesised answers).
    fn build(
        &self,
        view: &QueryView<'_>,
        res: &crate::Resolution,
        extra_flags: u16,
        ede: Option<Ede>,
        fixed_ttl: Option<u32>,
    ) -> (CachedAnswer, bool) {
        let rcode = if res.outcome == Outcome::NxDomain { Rcode::NxDomain } else { Rcode::NoError } as u16;
        // RRSIGs and proofs only for clients that asked (DO), or asked for
        // those types; AD only on validated data (the write path clears it
        // for clients that asked for neither DO nor AD).
        let dnssec_ok = view.edns.is_some_and(|e| e.dnssec_ok);
        let wanted = |r: &&Record| {
            dnssec_ok || r.rtype == view.qtype || !matches!(r.rtype, rtype::RRSIG | rtype::NSEC | rtype::NSEC3)
        };
        let ad = if res.security == crate::Security::Secure { flags::AD } else { 0 };
        let extra_flags = extra_flags | ad;
        let policy = self.answers.policy();
        let mut wire = Vec::with_capacity(512);
        let mut w = MessageWriter::new(&mut wire, 0, flags::QR | flags::RA | extra_flags | rcode).track_ttls();
        w.question(&view.qname.to_ascii_lowercase(), view.qtype, view.qclass);
        let mut min_ttl = u32::MAX;
        for r in res.answer.iter().filter(wanted) {
            let ttl = policy.clamp(r.ttl);
            min_ttl = min_ttl.min(ttl);
            w.record(Section::Answer, &Record { ttl, ..r.clone() });
        }
        let mut negative_ttl = None;
        for r in res.authority.iter().filter(wanted) {
            let ttl = if r.rtype == rtype::SOA {
                policy.clamp_negative(r.soa_negative_ttl().unwrap_or(r.ttl))
            } else {
                policy.clamp(r.ttl)
            };
            negative_ttl = Some(negative_ttl.unwrap_or(u32::MAX).min(ttl));
            w.record(Section::Authority, &Record { ttl, ..r.clone() });
        }
        let offsets = w.ttl_offsets();
        w.finish();
        if wire.len() > u16::MAX as usize {
            // Larger than any DNS message may be (and than the u16 TTL
            // offsets can address): answer with the question and TC, and
            // never cache it.
            wire.truncate(12 + view.qname.len() + 4);
            wire[6..12].fill(0);
            wire[2] |= (flags::TC >> 8) as u8;
            let now = self.clock.now_unix();
            return (CachedAnswer::new(wire.into(), Box::new([]), now, 0, None), false);
        }
        let ttl = match res.outcome {
            Outcome::Answer => min_ttl,
            // Without an SOA a negative answer is not cached (RFC 2308 §5).
            Outcome::NoData | Outcome::NxDomain => negative_ttl.unwrap_or(0).min(min_ttl),
        };
        let ttl = if ttl == u32::MAX { 0 } else { ttl };
        let ttl = fixed_ttl.unwrap_or(ttl);
        let ede = ede.map(|e| (e.code, e.text.into_boxed_str()));
        let now = self.clock.now_unix();
        (CachedAnswer::new(wire.into(), offsets.into(), now, ttl, ede), ttl > 0)
    }

    fn error(
        &self,
        view: &QueryView<'_>,
        kind: TransportKind,
        rcode: Rcode,
        ede: Option<Ede>,
        out: &mut Vec<u8>,
    ) -> usize {
        out.clear();
        let fl = flags::QR | flags::RA | (view.flags & (flags::RD | flags::CD)) | rcode as u16;
        let mut w = MessageWriter::new(out, view.id, fl);
        w.question(view.qname, view.qtype, view.qclass);
        if let Some(edns) = view.edns {
            let edes: Vec<Ede> = ede.into_iter().collect();
            w.opt_padded(self.config.max_udp_payload, edns.dnssec_ok, 0, &edes, pad_block(view, kind));
        }
        w.finish()
    }
}

/// Where a failed resolution's SERVFAIL is cached.
struct Failure<'a> {
    /// The filtering profile asked through.
    profile: u8,
    /// The profile's generation when the question arrived.
    generation: u32,
    /// What the answer cache held for the question before (a failure there
    /// makes this one's time longer).
    previous: Option<&'a CachedAnswer>,
    /// Whether it may be cached for every client: not when the resolution
    /// could have carried the client's network (EDNS Client Subnet to a
    /// zone under `ecs_allow`), nor when it was cancelled here.
    shared: bool,
}

/// The first block among the names a CNAME or DNAME chain leads to and the
/// addresses it ends in.
fn answer_block(rules: &policy::Profile, answer: &[Record]) -> Option<policy::Block> {
    let check_ips = rules.has_address_rules();
    for r in answer {
        match r.rtype {
            rtype::CNAME | rtype::DNAME => match rules.check_name(proto::name::lower_into(&r.rdata, &mut [0; 255])) {
                policy::Verdict::Block(b) => return Some(b),
                policy::Verdict::Allowed => return None,
                policy::Verdict::Pass => {}
            },
            rtype::A | rtype::AAAA if check_ips => {
                if let Some(b) = r.address().and_then(|a| rules.check_address(a)) {
                    return Some(b);
                }
            }
            _ => {}
        }
    }
    None
}

/// The padding block for a response: RFC 8467's 468 octets on encrypted
/// transports when the query was padded.
fn pad_block(view: &QueryView<'_>, kind: TransportKind) -> Option<usize> {
    let asked = view.edns.is_some_and(|e| e.padding);
    (kind == TransportKind::EncryptedStream && asked).then_some(cache::RESPONSE_PAD_BLOCK)
}

/// A header-only error response (the question could not be read).
fn error_only(out: &mut Vec<u8>, id: u16, rcode: u16, ext_rcode: u8) -> usize {
    out.clear();
    let mut w = MessageWriter::new(out, id, flags::QR | flags::RA | rcode);
    if ext_rcode != 0 {
        w.opt(1232, false, ext_rcode, &[]);
    }
    w.finish()
}

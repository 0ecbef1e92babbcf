//! The work one client query may cause.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tokio::time::Instant;

use crate::ResolveError;

/// Limits on one client query's resolution: upstream queries, nesting depth
/// and time. Shared by every sub-resolution it starts (glueless name
/// servers, CNAME targets), so no query can amplify.
#[derive(Debug)]
pub struct Budget {
    queries_left: AtomicU32,
    verifications: dnssec::WorkBudget,
    deadline: Instant,
    max_depth: u8,
    /// The client's network and prefix length, for EDNS Client Subnet.
    ecs: Option<(IpAddr, u8)>,
    /// Set when an answer depended on the client's network (an ECS query
    /// was sent): nothing of it may be shared with other clients.
    client_specific: AtomicBool,
    /// Zones whose glueless name servers are being resolved, outermost
    /// first: meeting one again is a cyclic dependency (TsuNAME).
    resolving_ns: std::sync::Mutex<Vec<proto::Name>>,
    /// Every upstream exchange, when the resolution is traced.
    trace: Option<std::sync::Mutex<Vec<TraceStep>>>,
    /// When the resolution began.
    started: Instant,
    /// A refresh ahead of expiry: the question's own cached answer (each
    /// link of its chain) is not used, everything else is.
    refresh: bool,
}

/// One upstream exchange of a traced resolution.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TraceStep {
    /// The server asked.
    pub server: std::net::SocketAddr,
    /// The question asked.
    pub qname: String,
    /// Its type's name.
    pub qtype: String,
    /// Over TCP.
    pub tcp: bool,
    /// Milliseconds from the start of the resolution.
    pub at_ms: u64,
    /// How long the exchange took.
    pub ms: u64,
    /// The reply's rcode and counts, or what went wrong.
    pub outcome: String,
}

/// A zone on the [`Budget`]'s chain of glueless lookups, until dropped.
pub(crate) struct NsLookup<'a> {
    budget: &'a Budget,
}

impl Drop for NsLookup<'_> {
    fn drop(&mut self) {
        self.budget.resolving_ns.lock().unwrap_or_else(|e| e.into_inner()).pop();
    }
}

impl Budget {
    /// A budget of `queries` upstream queries until `deadline`.
    pub fn new(queries: u32, deadline: Instant, max_depth: u8) -> Budget {
        Budget {
            queries_left: AtomicU32::new(queries),
            verifications: dnssec::WorkBudget::new(0),
            deadline,
            max_depth,
            ecs: None,
            client_specific: AtomicBool::new(false),
            resolving_ns: std::sync::Mutex::new(Vec::new()),
            trace: None,
            started: Instant::now(),
            refresh: false,
        }
    }

    /// Records every upstream exchange ([`Budget::take_trace`]).
    pub fn with_trace(mut self) -> Budget {
        self.trace = Some(std::sync::Mutex::new(Vec::new()));
        self
    }

    /// Milliseconds from the start of the resolution to `t`.
    pub(crate) fn elapsed_ms(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.started).as_millis() as u64
    }

    /// Whether exchanges are recorded.
    pub(crate) fn traced(&self) -> bool {
        self.trace.is_some()
    }

    /// Records one exchange of a traced resolution.
    pub(crate) fn record(&self, step: TraceStep) {
        if let Some(t) = &self.trace {
            t.lock().unwrap_or_else(|e| e.into_inner()).push(step);
        }
    }

    /// The exchanges recorded, in order.
    pub fn take_trace(&self) -> Vec<TraceStep> {
        self.trace
            .as_ref()
            .map(|t| std::mem::take(&mut *t.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default()
    }

    /// Enters the glueless lookups of `zone`'s name servers, or `None` when
    /// they are already under way further up this resolution: the zone's
    /// servers can only be found through the zone itself.
    pub(crate) fn enter_ns_lookup(&self, zone: &proto::Name) -> Option<NsLookup<'_>> {
        let mut chain = self.resolving_ns.lock().unwrap_or_else(|e| e.into_inner());
        if chain.contains(zone) {
            return None;
        }
        chain.push(zone.clone());
        Some(NsLookup { budget: self })
    }

    /// Resolves for a client in `network/len` (EDNS Client Subnet to the
    /// allowed authorities).
    pub fn with_ecs(mut self, ecs: Option<(IpAddr, u8)>) -> Budget {
        self.ecs = ecs;
        self
    }

    /// This budget for a refresh ahead of expiry (prefetch).
    pub fn refreshing(mut self) -> Budget {
        self.refresh = true;
        self
    }

    /// Whether the question's cached answer is to be resolved again.
    pub fn refresh(&self) -> bool {
        self.refresh
    }

    /// The client network, if ECS applies to this resolution.
    pub fn ecs(&self) -> Option<(IpAddr, u8)> {
        self.ecs
    }

    /// Marks the resolution as depending on the client's network.
    pub fn mark_client_specific(&self) {
        self.client_specific.store(true, Ordering::Relaxed);
    }

    /// Whether any part of the resolution depended on the client's network.
    pub fn client_specific(&self) -> bool {
        self.client_specific.load(Ordering::Relaxed)
    }

    /// Allows `n` DNSSEC signature checks.
    pub fn with_verifications(mut self, n: u32) -> Budget {
        self.verifications = dnssec::WorkBudget::new(n);
        self
    }

    /// The signature-check budget.
    pub fn verifications(&self) -> &dnssec::WorkBudget {
        &self.verifications
    }

    /// Takes one upstream query from the budget.
    pub fn spend_query(&self) -> Result<(), ResolveError> {
        self.check_time()?;
        self.queries_left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| q.checked_sub(1))
            .map(|_| ())
            .map_err(|_| ResolveError::BudgetExhausted("upstream queries"))
    }

    /// Fails when the deadline has passed.
    pub fn check_time(&self) -> Result<(), ResolveError> {
        if Instant::now() >= self.deadline {
            return Err(ResolveError::BudgetExhausted("time"));
        }
        Ok(())
    }

    /// Fails when `depth` is deeper than allowed.
    pub fn check_depth(&self, depth: u8) -> Result<(), ResolveError> {
        if depth > self.max_depth {
            return Err(ResolveError::BudgetExhausted("depth"));
        }
        Ok(())
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Upstream queries left.
    pub fn queries_left(&self) -> u32 {
        self.queries_left.load(Ordering::Relaxed)
    }
}

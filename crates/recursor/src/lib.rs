//! Iterative recursive resolution and the answer service.
//!
//! * [`Recursor`] resolves a question by iterating from the root (or a
//!   forward or stub zone): QNAME minimisation (RFC 9156, relaxed), strict
//!   bailiwick rules, glue and glueless name servers, CNAME and DNAME
//!   chasing, negative caching (RFC 2308), EDNS fallback, TCP on TC, server
//!   selection by smoothed RTT, and a [`Budget`] per client query.
//! * [`Service`] turns a client's wire query into a wire response: the
//!   allocation-free cache-hit path, local data, the recursor on a miss,
//!   serve-stale, and SERVFAIL with an Extended DNS Error on failure.
//!
//! Upstream I/O sits behind the [`Transport`] trait and wall-clock time
//! behind [`Clock`], so tests can drive resolution against the lab or fakes.
//!
//! Invariants: only data from within the bailiwick of the server that sent
//! it enters the cache; NXDOMAIN, NODATA and referrals are values, not
//! errors; every resolution ends within its budget.

mod aggressive;
mod anchors;
mod budget;
mod config;
mod error;
mod infra;
mod iterate;
mod limits;
mod local;
mod service;
mod transport;
mod validate;

pub use anchors::{AnchorStateError, ManagedAnchors};
pub use budget::{Budget, TraceStep};
pub use config::{ForwardZone, RecursorConfig, StubZone};
pub use error::ResolveError;
pub use iterate::{Outcome, Recursor, Resolution};
pub use limits::{UpstreamLimiter, UpstreamLimits};
pub use local::LocalData;
pub use service::{FastPath, Service, ServiceConfig, TransportKind};
pub use transport::{NetTransport, Tap, Transport, TransportError, UpstreamQuery, UpstreamTap};
pub use validate::{RuntimeAnchors, Security, ValidationConfig};

/// Wall-clock time (Unix seconds) for TTLs; monotonic time is tokio's.
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_unix(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }
}

/// A clock that tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicU64);

impl ManualClock {
    /// A clock at `t`.
    pub fn new(t: u64) -> ManualClock {
        ManualClock(std::sync::atomic::AtomicU64::new(t))
    }

    /// Moves the clock forward.
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now_unix(&self) -> u64 {
        (**self).now_unix()
    }
}

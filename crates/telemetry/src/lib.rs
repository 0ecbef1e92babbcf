//! Privacy-safe telemetry for onedot: what onedot keeps and for how long
//! (the inventory, from which PRIVACY.md and the privacy page are made),
//! aggregate metrics in the Prometheus format, the optional operator query
//! log and the troubleshooting sample in SQLite with enforced retention,
//! the k-anonymous research export, and the audit that checks all of it.
//!
//! Invariants: no metric label names a client; the query log is written
//! with client networks truncated (/24, /56) or dropped, never full; only
//! the sample holds full addresses, in a file of its own that nothing
//! joins with the log; every store is purged past its retention at
//! start-up and on a schedule; on a keyless edge every row and file is
//! sealed (`seal`) and nothing is written while no data key is held.

pub mod audit;
pub mod dnstap;
pub mod inventory;
pub mod metrics;
pub mod research;
pub mod store;
pub mod wire;

pub use audit::{Finding, Outcome, audit, audit_sealed};
pub use inventory::{Commitments, INVENTORY, markdown};
pub use metrics::Metrics;
pub use research::Research;
pub use store::{LogRecord, Record, SampleRecord, StoreConfig, Writer, truncate};

/// `YYYY-MM-DD` of a Unix time.
pub(crate) fn date(t: u64) -> String {
    proto::time::date(t)
}

/// A uniform random draw in [0, 1): decides whether a query is sampled.
pub fn sampled(rate: f64) -> bool {
    rate > 0.0 && rand::random::<f64>() < rate
}

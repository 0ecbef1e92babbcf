//! Why a resolution failed. Outcomes (answers, NXDOMAIN, NODATA) are not
//! errors; see [`crate::Outcome`].

use proto::ede::code;

/// A failed resolution. Each maps to one SERVFAIL with one EDE code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Every server of a zone timed out, was lame or refused.
    #[error("no reachable authority for {zone}")]
    NoReachableAuthority {
        /// The zone whose servers failed.
        zone: String,
    },
    /// Sockets failed (unreachable networks, refused connections).
    #[error("network error talking to the servers of {zone}")]
    NetworkError {
        /// The zone.
        zone: String,
    },
    /// The query's budget ran out.
    #[error("resolution budget exhausted ({0})")]
    BudgetExhausted(&'static str),
    /// A CNAME chain was longer than allowed or looped.
    #[error("CNAME chain too long or looping at {0}")]
    CnameChain(String),
    /// DNAME substitutions led back to a name already met (RFC 6672 §3.3:
    /// a loop the zones' owners must fix).
    #[error("DNAME loop at {0}")]
    DnameLoop(String),
    /// Authorities answered with data we cannot use (bad referral, DNAME
    /// expansion overflow).
    #[error("invalid data from authorities: {0}")]
    InvalidData(String),
    /// The zone's servers (or every one of its addresses) are over their
    /// upstream limit: the query was not sent.
    #[error("upstream queries to the servers of {zone} are over their limit")]
    UpstreamLimited {
        /// The zone.
        zone: String,
    },
    /// The resolution that this query was waiting on went away.
    #[error("coalesced resolution was cancelled")]
    Cancelled,
}

impl ResolveError {
    /// The Extended DNS Error code for the SERVFAIL (RFC 8914).
    pub fn ede_code(&self) -> u16 {
        match self {
            ResolveError::NoReachableAuthority { .. } => code::NO_REACHABLE_AUTHORITY,
            ResolveError::NetworkError { .. } => code::NETWORK_ERROR,
            ResolveError::BudgetExhausted(_) => code::NO_REACHABLE_AUTHORITY,
            ResolveError::CnameChain(_) | ResolveError::DnameLoop(_) => code::OTHER,
            ResolveError::InvalidData(_) => code::INVALID_DATA,
            ResolveError::UpstreamLimited { .. } => code::NO_REACHABLE_AUTHORITY,
            ResolveError::Cancelled => code::OTHER,
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ResolveError::NoReachableAuthority { .. } => "no_reachable_authority",
            ResolveError::NetworkError { .. } => "network_error",
            ResolveError::BudgetExhausted(_) => "budget",
            ResolveError::CnameChain(_) => "cname_chain",
            ResolveError::DnameLoop(_) => "dname_loop",
            ResolveError::InvalidData(_) => "invalid_data",
            ResolveError::UpstreamLimited { .. } => "upstream_limited",
            ResolveError::Cancelled => "cancelled",
        }
    }
}

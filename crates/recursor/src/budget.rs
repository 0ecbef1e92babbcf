//! The work one client query may cause.

use std::sync::atomic::{AtomicU32, Ordering};

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
}

impl Budget {
    /// A budget of `queries` upstream queries until `deadline`.
    pub fn new(queries: u32, deadline: Instant, max_depth: u8) -> Budget {
        Budget { queries_left: AtomicU32::new(queries), verifications: dnssec::WorkBudget::new(0), deadline, max_depth }
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

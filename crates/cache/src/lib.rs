//! onedot's caches.
//!
//! * [`AnswerCache`] holds whole responses in wire format, keyed by question.
//!   A hit copies the stored bytes into the caller's buffer and patches the
//!   ID, flags, question case and TTLs in place: no allocation, no parsing.
//! * [`RrsetCache`] holds RRsets and negative answers for the recursor, with
//!   a trust rank so that glue never overwrites authoritative data.
//!
//! Both are bounded by bytes (S3-FIFO eviction from `quick_cache`), count TTLs
//! down from the time of insertion, clamp TTLs to the configured bounds, and
//! keep expired entries until evicted so they can be served stale
//! (RFC 8767) when the authorities cannot be reached.
//!
//! Invariant: time is an input (`now`, Unix seconds); the cache never reads a
//! clock.

mod answer;
mod rrset;

pub use answer::{AnswerCache, CachedAnswer, Freshness, RESPONSE_PAD_BLOCK, WriteOptions, variant};
pub use rrset::{BOGUS_TTL, Negative, Rank, RrsetCache, RrsetEntry, Security};

/// TTL policy shared by both caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlPolicy {
    /// Smallest TTL stored (larger TTLs from authorities are kept).
    pub min_ttl: u32,
    /// Largest TTL stored.
    pub max_ttl: u32,
    /// Largest TTL for negative answers (RFC 2308 suggests hours at most).
    pub max_negative_ttl: u32,
    /// How long past expiry an entry may still be served stale (RFC 8767
    /// recommends one to three days); 0 disables serve-stale.
    pub stale_window: u32,
}

impl Default for TtlPolicy {
    fn default() -> Self {
        TtlPolicy { min_ttl: 0, max_ttl: 86_400, max_negative_ttl: 3_600, stale_window: 86_400 }
    }
}

impl TtlPolicy {
    /// Clamps a positive TTL.
    pub fn clamp(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min_ttl.min(self.max_ttl), self.max_ttl)
    }

    /// Clamps a negative TTL.
    pub fn clamp_negative(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min_ttl.min(self.max_negative_ttl), self.max_negative_ttl)
    }
}

/// Freshness at `now` of data stored at `stored_at` with `ttl` seconds.
pub fn freshness(stored_at: u64, ttl: u32, now: u64, policy: &TtlPolicy) -> Freshness {
    let expires = stored_at + ttl as u64;
    if now < expires {
        Freshness::Fresh
    } else if now < expires + policy.stale_window as u64 {
        Freshness::Stale
    } else {
        Freshness::Expired
    }
}

/// What one heap allocation of `bytes` really costs with glibc malloc: an
/// 8-byte header, rounded up to 16, at least 32. Cache weights add these up
/// per allocation so that the configured bound is a bound on memory, not on
/// payload.
pub const fn heap_cost(bytes: usize) -> usize {
    let chunk = (bytes + 8).div_ceil(16) * 16;
    if chunk < 32 { 32 } else { chunk }
}

/// What a cache entry costs beyond its allocations: its slot in the hash
/// table and the eviction queue, the ghost entries S3-FIFO keeps, and the
/// fragmentation eviction leaves. Measured with
/// `cargo run --release -p cache --example rrset_memory N signed|plain MiB`
/// (N lab-shaped RRsets through a bounded cache): at 112, a million signed
/// RRsets through 32 MiB grow RSS by 30.9 MiB and three million through
/// 64 MiB by 60.7 MiB, within the bounds; at 96 the first grows by 32.5 MiB,
/// past it. With no eviction the slot really takes about 60 bytes.
pub(crate) const SLOT_COST: usize = 112;

/// The TTL a stale answer is served with (RFC 8767 §4 recommends 30 s).
pub const STALE_TTL: u32 = 30;

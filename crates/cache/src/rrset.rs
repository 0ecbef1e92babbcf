//! The RRset cache used by the recursor: positive RRsets and negative
//! answers, each with the trust rank of where it came from.

use std::sync::Arc;

use proto::{Name, Record};
use quick_cache::{Weighter, sync::Cache};

use crate::{Freshness, SLOT_COST, TtlPolicy, heap_cost};

/// How much an RRset is trusted, by where it was learnt (RFC 2181 §5.4.1).
/// Higher ranks replace lower ones; lower ranks never replace fresh higher
/// ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rank {
    /// Additional-section data (glue).
    Glue = 0,
    /// Authority-section NS of a referral.
    Referral = 1,
    /// Answer section of a non-authoritative answer (from a forwarder).
    NonAuthAnswer = 2,
    /// Answer or authority of an authoritative answer.
    Authoritative = 3,
}

/// A negative answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negative {
    /// The name does not exist (cached under the pseudo-type 0, so it covers
    /// every type).
    NxDomain,
    /// The name exists but has no data of this type.
    NoData,
}

/// What is cached for a (name, type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RrsetValue {
    /// An RRset (TTLs as received, clamped).
    Positive(Box<[Record]>),
    /// A negative answer with the SOA that proves it, if one came.
    Negative(Negative, Option<Record>),
}

/// The DNSSEC status of cached data (RFC 4035 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Security {
    /// Not validated (validation off, or not yet known).
    #[default]
    Unchecked,
    /// Provably unsigned.
    Insecure,
    /// Validated from a trust anchor.
    Secure,
    /// Failed validation; kept briefly so a broken zone is not hammered.
    Bogus,
}

/// A cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RrsetEntry {
    /// The data.
    pub value: RrsetValue,
    /// Its RRSIGs, and for negative entries the NSEC proof with its RRSIGs.
    pub dnssec: Box<[Record]>,
    /// Its validation status.
    pub security: Security,
    /// The rank it was learnt with.
    pub rank: Rank,
    /// Unix time stored.
    pub stored_at: u64,
    /// TTL at storage (clamped).
    pub ttl: u32,
}

impl RrsetEntry {
    /// Freshness at `now`.
    pub fn freshness(&self, now: u64, policy: &TtlPolicy) -> Freshness {
        crate::freshness(self.stored_at, self.ttl, now, policy)
    }

    /// Seconds of TTL left at `now` (0 when expired).
    pub fn remaining(&self, now: u64) -> u32 {
        (self.stored_at + self.ttl as u64).saturating_sub(now).min(u32::MAX as u64) as u32
    }

    /// The records with their TTLs counted down to `now`.
    pub fn records_at(&self, now: u64) -> Vec<Record> {
        let left = self.remaining(now);
        match &self.value {
            RrsetValue::Positive(rs) => rs.iter().map(|r| Record { ttl: left.min(r.ttl), ..r.clone() }).collect(),
            RrsetValue::Negative(..) => Vec::new(),
        }
    }
}

#[derive(Clone)]
struct EntryWeighter;

impl Weighter<(Name, u16), Arc<RrsetEntry>> for EntryWeighter {
    fn weight(&self, key: &(Name, u16), val: &Arc<RrsetEntry>) -> u64 {
        // Every allocation the entry owns, at what malloc charges for it.
        let record = |r: &Record| heap_cost(r.name.as_wire().len()) + heap_cost(r.rdata.len());
        let data: usize = match &val.value {
            RrsetValue::Positive(rs) => {
                heap_cost(rs.len() * std::mem::size_of::<Record>()) + rs.iter().map(record).sum::<usize>()
            }
            RrsetValue::Negative(_, soa) => soa.as_ref().map_or(0, record),
        };
        let dnssec = if val.dnssec.is_empty() {
            0
        } else {
            heap_cost(val.dnssec.len() * std::mem::size_of::<Record>()) + val.dnssec.iter().map(record).sum::<usize>()
        };
        (heap_cost(key.0.as_wire().len())
            + heap_cost(16 + std::mem::size_of::<RrsetEntry>())
            + data
            + dnssec
            + SLOT_COST) as u64
    }
}

/// RRsets and negative answers keyed by (name, type), bounded by bytes.
pub struct RrsetCache {
    entries: Cache<(Name, u16), Arc<RrsetEntry>, EntryWeighter>,
    policy: TtlPolicy,
}

impl std::fmt::Debug for RrsetCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RrsetCache").field("entries", &self.entries.len()).finish()
    }
}

/// Longest time bogus data is kept (RFC 4035 §4.7 suggests a short "BAD"
/// cache).
pub const BOGUS_TTL: u32 = 60;

/// The pseudo-type under which NXDOMAIN is cached.
const NXDOMAIN_TYPE: u16 = 0;

impl RrsetCache {
    /// A cache holding at most `max_bytes`.
    pub fn new(max_bytes: u64, policy: TtlPolicy) -> RrsetCache {
        let items = (max_bytes / 256).max(16) as usize;
        RrsetCache { entries: Cache::with_weighter(items, max_bytes.max(4096), EntryWeighter), policy }
    }

    /// The TTL policy.
    pub fn policy(&self) -> &TtlPolicy {
        &self.policy
    }

    /// The entry for (name, type): a positive or NODATA entry for that type,
    /// else an NXDOMAIN entry for the name. Entries too old to serve even
    /// stale are not returned.
    pub fn get(&self, name: &Name, rtype: u16, now: u64) -> Option<Arc<RrsetEntry>> {
        let usable = |e: &Arc<RrsetEntry>| e.freshness(now, &self.policy) != Freshness::Expired;
        let key = (name.clone(), rtype);
        if let Some(e) = self.entries.get(&key).filter(usable) {
            return Some(e);
        }
        self.entries.get(&(key.0, NXDOMAIN_TYPE)).filter(usable)
    }

    /// The entry only if it is fresh.
    pub fn get_fresh(&self, name: &Name, rtype: u16, now: u64) -> Option<Arc<RrsetEntry>> {
        self.get(name, rtype, now).filter(|e| e.freshness(now, &self.policy) == Freshness::Fresh)
    }

    /// Stores an RRset (all records share owner and type). Does nothing when
    /// a fresh entry of higher rank is present.
    pub fn insert_rrset(&self, records: Vec<Record>, rank: Rank, now: u64) {
        self.insert_validated(records, Vec::new(), Security::Unchecked, rank, now);
    }

    /// Stores an RRset with its signatures and validation status. Bogus
    /// data is kept for at most [`BOGUS_TTL`] seconds.
    pub fn insert_validated(&self, records: Vec<Record>, sigs: Vec<Record>, security: Security, rank: Rank, now: u64) {
        let Some(first) = records.first() else { return };
        let key = (first.name.clone(), first.rtype);
        let mut ttl = self.policy.clamp(records.iter().map(|r| r.ttl).min().unwrap_or(0));
        if security == Security::Bogus {
            ttl = ttl.min(BOGUS_TTL);
        }
        let records: Vec<Record> = records.into_iter().map(|r| Record { ttl, ..r }).collect();
        let sigs: Vec<Record> = sigs.into_iter().map(|r| Record { ttl, ..r }).collect();
        self.store(key, RrsetValue::Positive(records.into()), sigs.into(), security, rank, ttl, now);
    }

    /// Stores a negative answer for (name, type); NXDOMAIN covers all types.
    pub fn insert_negative(&self, name: &Name, rtype: u16, kind: Negative, soa: Option<Record>, rank: Rank, now: u64) {
        self.insert_negative_validated(name, rtype, kind, soa, Vec::new(), Security::Unchecked, rank, now);
    }

    /// Stores a negative answer with its proof and validation status.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_negative_validated(
        &self,
        name: &Name,
        rtype: u16,
        kind: Negative,
        soa: Option<Record>,
        proof: Vec<Record>,
        security: Security,
        rank: Rank,
        now: u64,
    ) {
        let mut ttl = self.policy.clamp_negative(soa.as_ref().and_then(Record::soa_negative_ttl).unwrap_or(0));
        if security == Security::Bogus {
            ttl = ttl.min(BOGUS_TTL);
        }
        let t = if kind == Negative::NxDomain { NXDOMAIN_TYPE } else { rtype };
        self.store((name.clone(), t), RrsetValue::Negative(kind, soa), proof.into(), security, rank, ttl, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        key: (Name, u16),
        value: RrsetValue,
        dnssec: Box<[Record]>,
        security: Security,
        rank: Rank,
        ttl: u32,
        now: u64,
    ) {
        if let Some(old) = self.entries.get(&key)
            && (old.rank, old.security) > (rank, security)
            && old.freshness(now, &self.policy) == Freshness::Fresh
        {
            return;
        }
        self.entries.insert(key, Arc::new(RrsetEntry { value, dnssec, security, rank, stored_at: now, ttl }));
    }

    /// Removes what is cached for (name, type).
    pub fn remove(&self, name: &Name, rtype: u16) {
        self.entries.remove(&(name.clone(), rtype));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes accounted.
    pub fn weight(&self) -> u64 {
        self.entries.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::rtype;

    fn a(name: &str, ttl: u32) -> Record {
        Record {
            name: Name::from_ascii(name).expect("name"),
            rtype: rtype::A,
            class: 1,
            ttl,
            rdata: Box::new([192, 0, 2, 1]),
        }
    }

    #[test]
    fn rank_protects_authoritative_data() {
        let c = RrsetCache::new(1 << 20, TtlPolicy::default());
        let n = Name::from_ascii("ns1.example.test").expect("name");
        c.insert_rrset(vec![a("ns1.example.test", 300)], Rank::Authoritative, 0);
        let mut glue = a("ns1.example.test", 900);
        glue.rdata = Box::new([6, 6, 6, 6]);
        c.insert_rrset(vec![glue], Rank::Glue, 10);
        let e = c.get(&n, rtype::A, 20).expect("cached");
        assert_eq!(e.rank, Rank::Authoritative);
        assert_eq!(e.records_at(20)[0].ttl, 280);
    }

    #[test]
    fn nxdomain_covers_all_types_and_ttls_clamp() {
        let policy = TtlPolicy { max_ttl: 100, ..TtlPolicy::default() };
        let c = RrsetCache::new(1 << 20, policy);
        let n = Name::from_ascii("nope.example.test").expect("name");
        c.insert_negative(&n, rtype::A, Negative::NxDomain, None, Rank::Authoritative, 0);
        let e = c.get(&n, rtype::MX, 0).expect("negative");
        assert!(matches!(e.value, RrsetValue::Negative(Negative::NxDomain, _)));
        c.insert_rrset(vec![a("www.example.test", 5000)], Rank::Authoritative, 0);
        let www = Name::from_ascii("www.example.test").expect("name");
        assert_eq!(c.get(&www, rtype::A, 0).expect("pos").ttl, 100);
        assert!(c.get_fresh(&www, rtype::A, 100).is_none());
        assert!(c.get(&www, rtype::A, 100).is_some(), "stale still available");
    }
}

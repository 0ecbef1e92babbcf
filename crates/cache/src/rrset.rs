//! The RRset cache used by the recursor: positive RRsets and negative
//! answers, each with the trust rank of where it came from.
//!
//! Layout: an entry is one allocation (`Arc<[u8]>`) holding a fixed header,
//! the owner name, the RDATA of each record (owner, type, class and TTL are
//! shared within an RRset) and then the negative answer's SOA and the DNSSEC
//! records in a compact wire form, an RRSIG's owner written as one byte when
//! it is the entry's owner. The key is a keyed 64-bit hash of the owner name
//! and the type, not the name itself: a lookup allocates nothing, and a hit
//! checks the owner stored in the entry, so a hash collision is a miss, never
//! a wrong answer (the hash key is random per process, so collisions cannot
//! be aimed). The first layout, a `Box<[Record]>` with a boxed name and RDATA
//! per record and the name again in the key, cost 541 bytes per lab RRset.

use std::hash::{BuildHasher, RandomState};
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

impl Rank {
    /// The inverse of `rank as u8` (the two low bits).
    fn from_u8(b: u8) -> Rank {
        [Rank::Glue, Rank::Referral, Rank::NonAuthAnswer, Rank::Authoritative][usize::from(b & 3)]
    }
}

/// A negative answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negative {
    /// The name does not exist (cached under the pseudo-type 0, so it covers
    /// every type).
    NxDomain,
    /// The name exists but has no data of this type.
    NoData,
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

impl Security {
    /// The inverse of `security as u8` (the two low bits).
    fn from_u8(b: u8) -> Security {
        [Security::Unchecked, Security::Insecure, Security::Secure, Security::Bogus][usize::from(b & 3)]
    }
}

// Header of an entry: kind, security, rank, a spare byte, stored_at (u64),
// ttl (u32), type (u16), class (u16); then the owner name.
const KIND: usize = 0;
const SECURITY: usize = 1;
const RANK: usize = 2;
const STORED_AT: usize = 4;
const TTL: usize = 12;
const TYPE: usize = 16;
const CLASS: usize = 18;
const HEADER: usize = 20;

const KIND_POSITIVE: u8 = 0;
const KIND_NXDOMAIN: u8 = 1;
const KIND_NODATA: u8 = 2;
/// Set in the kind byte when a negative entry holds its SOA.
const HAS_SOA: u8 = 0x80;
/// Written instead of a record's owner name when it is the entry's owner
/// (never a valid first byte of a name: labels are at most 63 bytes).
const SAME_OWNER: u8 = 0xff;

/// A cache entry: one shared allocation, cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct RrsetEntry(Arc<[u8]>);

impl std::fmt::Debug for RrsetEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RrsetEntry")
            .field("negative", &self.negative())
            .field("type", &self.rtype())
            .field("security", &self.security())
            .field("rank", &self.rank())
            .field("ttl", &self.ttl())
            .finish()
    }
}

/// Length of the uncompressed wire name at the start of `b` (0 when it is
/// cut short, which a blob we wrote never is).
fn name_len(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&l) = b.get(i) {
        i += 1 + l as usize;
        if l == 0 {
            return i;
        }
    }
    0
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |x| u16::from_be_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

/// Appends a record in the entry's compact form.
fn put_record(out: &mut Vec<u8>, owner: &[u8], r: &Record) {
    let name = r.name.as_wire();
    if name == owner {
        out.push(SAME_OWNER);
    } else {
        out.extend_from_slice(name);
    }
    out.extend_from_slice(&r.rtype.to_be_bytes());
    out.extend_from_slice(&r.class.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    put_rdata(out, &r.rdata);
}

fn put_rdata(out: &mut Vec<u8>, rdata: &[u8]) {
    // RDATA is at most 65535 bytes on the wire, so it always fits.
    out.extend_from_slice(&(rdata.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&rdata[..rdata.len().min(u16::MAX as usize)]);
}

/// Reads a record in the compact form at `at`, with its TTL capped at
/// `left`; returns it and where the next one starts.
fn get_record(b: &[u8], owner: &[u8], at: usize, left: u32) -> Option<(Record, usize)> {
    let (name, at) = if *b.get(at)? == SAME_OWNER {
        (owner, at + 1)
    } else {
        let n = name_len(&b[at..]);
        (b.get(at..at + n)?, at + n)
    };
    let rtype = u16_at(b, at);
    let class = u16_at(b, at + 2);
    let ttl = u32_at(b, at + 4).min(left);
    let len = u16_at(b, at + 8) as usize;
    let rdata = b.get(at + 10..at + 10 + len)?;
    let record = Record { name: Name::from_wire(name).ok()?, rtype, class, ttl, rdata: rdata.into() };
    Some((record, at + 10 + len))
}

impl RrsetEntry {
    #[allow(clippy::too_many_arguments)]
    fn encode(
        owner: &[u8],
        rtype: u16,
        class: u16,
        kind: u8,
        rdatas: &[Record],
        soa: Option<&Record>,
        dnssec: &[Record],
        security: Security,
        rank: Rank,
        ttl: u32,
        now: u64,
    ) -> RrsetEntry {
        let size = HEADER
            + owner.len()
            + 2
            + rdatas.iter().map(|r| 2 + r.rdata.len()).sum::<usize>()
            + soa.map_or(0, |r| 11 + r.name.as_wire().len() + r.rdata.len())
            + 2
            + dnssec.iter().map(|r| 11 + r.name.as_wire().len() + r.rdata.len()).sum::<usize>();
        let mut b = Vec::with_capacity(size);
        b.push(kind | if soa.is_some() { HAS_SOA } else { 0 });
        b.push(security as u8);
        b.push(rank as u8);
        b.push(0);
        b.extend_from_slice(&now.to_be_bytes());
        b.extend_from_slice(&ttl.to_be_bytes());
        b.extend_from_slice(&rtype.to_be_bytes());
        b.extend_from_slice(&class.to_be_bytes());
        b.extend_from_slice(owner);
        b.extend_from_slice(&(rdatas.len().min(u16::MAX as usize) as u16).to_be_bytes());
        for r in rdatas.iter().take(u16::MAX as usize) {
            put_rdata(&mut b, &r.rdata);
        }
        if let Some(soa) = soa {
            put_record(&mut b, owner, soa);
        }
        b.extend_from_slice(&(dnssec.len().min(u16::MAX as usize) as u16).to_be_bytes());
        for r in dnssec.iter().take(u16::MAX as usize) {
            put_record(&mut b, owner, r);
        }
        RrsetEntry(b.into())
    }

    /// Its validation status.
    pub fn security(&self) -> Security {
        Security::from_u8(self.0[SECURITY])
    }

    /// The rank it was learnt with.
    pub fn rank(&self) -> Rank {
        Rank::from_u8(self.0[RANK])
    }

    /// Unix time stored.
    pub fn stored_at(&self) -> u64 {
        let mut t = [0u8; 8];
        t.copy_from_slice(&self.0[STORED_AT..STORED_AT + 8]);
        u64::from_be_bytes(t)
    }

    /// TTL at storage (clamped).
    pub fn ttl(&self) -> u32 {
        u32_at(&self.0, TTL)
    }

    /// The record type (0 for an NXDOMAIN entry).
    pub fn rtype(&self) -> u16 {
        u16_at(&self.0, TYPE)
    }

    /// The owner name, uncompressed wire form.
    pub fn owner(&self) -> &[u8] {
        let n = name_len(&self.0[HEADER..]);
        &self.0[HEADER..HEADER + n]
    }

    /// `None` for an RRset, else the kind of negative answer.
    pub fn negative(&self) -> Option<Negative> {
        match self.0[KIND] & !HAS_SOA {
            KIND_NXDOMAIN => Some(Negative::NxDomain),
            KIND_NODATA => Some(Negative::NoData),
            _ => None,
        }
    }

    /// Freshness at `now`.
    pub fn freshness(&self, now: u64, policy: &TtlPolicy) -> Freshness {
        crate::freshness(self.stored_at(), self.ttl(), now, policy)
    }

    /// Seconds of TTL left at `now` (0 when expired).
    pub fn remaining(&self, now: u64) -> u32 {
        (self.stored_at() + self.ttl() as u64).saturating_sub(now).min(u32::MAX as u64) as u32
    }

    /// Where the records' RDATA starts (after the count).
    fn data_start(&self) -> usize {
        HEADER + self.owner().len()
    }

    /// The RDATA of each record of an RRset (none for a negative entry).
    pub fn rdatas(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let b = &self.0[..];
        let start = self.data_start();
        let count = u16_at(b, start);
        let mut at = start + 2;
        (0..count).map_while(move |_| {
            let len = u16_at(b, at) as usize;
            let rdata = b.get(at + 2..at + 2 + len)?;
            at += 2 + len;
            Some(rdata)
        })
    }

    /// Where the SOA (if any) or the DNSSEC records start.
    fn after_data(&self) -> usize {
        let b = &self.0[..];
        let start = self.data_start();
        let mut at = start + 2;
        for _ in 0..u16_at(b, start) {
            at += 2 + u16_at(b, at) as usize;
        }
        at
    }

    /// The records with their TTLs counted down to `now` (empty for a
    /// negative entry).
    pub fn records_at(&self, now: u64) -> Vec<Record> {
        let left = self.remaining(now);
        let (rtype, class) = (self.rtype(), u16_at(&self.0, CLASS));
        let Ok(name) = Name::from_wire(self.owner()) else { return Vec::new() };
        self.rdatas().map(|rdata| Record { name: name.clone(), rtype, class, ttl: left, rdata: rdata.into() }).collect()
    }

    /// A negative entry's SOA, its TTL counted down to `now`.
    pub fn soa_at(&self, now: u64) -> Option<Record> {
        if self.0[KIND] & HAS_SOA == 0 {
            return None;
        }
        get_record(&self.0, self.owner(), self.after_data(), self.remaining(now)).map(|(r, _)| r)
    }

    /// The RRSIGs of an RRset, or a negative entry's NSEC/NSEC3 proof with
    /// its RRSIGs, their TTLs counted down to `now`.
    pub fn dnssec_at(&self, now: u64) -> Vec<Record> {
        let (b, owner, left) = (&self.0[..], self.owner(), self.remaining(now));
        let mut at = self.after_data();
        if b[KIND] & HAS_SOA != 0 {
            match get_record(b, owner, at, left) {
                Some((_, next)) => at = next,
                None => return Vec::new(),
            }
        }
        let count = u16_at(b, at);
        at += 2;
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let Some((r, next)) = get_record(b, owner, at, left) else { break };
            out.push(r);
            at = next;
        }
        out
    }

    /// Bytes of the allocation, as malloc charges for it.
    fn heap_bytes(&self) -> usize {
        // An `Arc<[u8]>` allocation is the two reference counts and the bytes.
        heap_cost(16 + self.0.len())
    }
}

/// The cache key: a keyed hash of the owner name, and the type.
type Key = (u64, u16);

#[derive(Clone)]
struct EntryWeighter;

impl Weighter<Key, RrsetEntry> for EntryWeighter {
    fn weight(&self, _key: &Key, val: &RrsetEntry) -> u64 {
        // The one allocation the entry owns, and its slot in the table.
        (val.heap_bytes() + SLOT_COST) as u64
    }
}

/// RRsets and negative answers keyed by (name, type), bounded by bytes.
pub struct RrsetCache {
    entries: Cache<Key, RrsetEntry, EntryWeighter>,
    names: RandomState,
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
        RrsetCache {
            entries: Cache::with_weighter(items, max_bytes.max(4096), EntryWeighter),
            names: RandomState::new(),
            policy,
        }
    }

    /// The TTL policy.
    pub fn policy(&self) -> &TtlPolicy {
        &self.policy
    }

    fn key(&self, name: &[u8], rtype: u16) -> Key {
        (self.names.hash_one(name), rtype)
    }

    /// The entry under `key` if it is for `name` (a hash collision is a miss).
    fn lookup(&self, name: &[u8], rtype: u16) -> Option<RrsetEntry> {
        self.entries.get(&self.key(name, rtype)).filter(|e| e.owner() == name)
    }

    /// The entry for (name, type): a positive or NODATA entry for that type,
    /// else an NXDOMAIN entry for the name. Entries too old to serve even
    /// stale are not returned.
    pub fn get(&self, name: &Name, rtype: u16, now: u64) -> Option<RrsetEntry> {
        let usable = |e: &RrsetEntry| e.freshness(now, &self.policy) != Freshness::Expired;
        let wire = name.as_wire();
        if let Some(e) = self.lookup(wire, rtype).filter(usable) {
            return Some(e);
        }
        self.lookup(wire, NXDOMAIN_TYPE).filter(usable)
    }

    /// The entry only if it is fresh.
    pub fn get_fresh(&self, name: &Name, rtype: u16, now: u64) -> Option<RrsetEntry> {
        self.get(name, rtype, now).filter(|e| e.freshness(now, &self.policy) == Freshness::Fresh)
    }

    /// Stores an RRset (all records share owner and type). Does nothing when
    /// a fresh entry of higher rank is present.
    pub fn insert_rrset(&self, records: Vec<Record>, rank: Rank, now: u64) {
        self.insert_validated(records, Vec::new(), Security::Unchecked, rank, now);
    }

    /// Stores an RRset with its signatures and validation status. Bogus
    /// data is kept for at most [`BOGUS_TTL`] seconds. All records and
    /// signatures are stored with the RRset's smallest TTL, clamped.
    pub fn insert_validated(&self, records: Vec<Record>, sigs: Vec<Record>, security: Security, rank: Rank, now: u64) {
        let Some(first) = records.first() else { return };
        let mut ttl = self.policy.clamp(records.iter().map(|r| r.ttl).min().unwrap_or(0));
        if security == Security::Bogus {
            ttl = ttl.min(BOGUS_TTL);
        }
        let sigs: Vec<Record> = sigs.into_iter().map(|r| Record { ttl, ..r }).collect();
        let owner = first.name.as_wire();
        let key = self.key(owner, first.rtype);
        let entry = RrsetEntry::encode(
            owner,
            first.rtype,
            first.class,
            KIND_POSITIVE,
            &records,
            None,
            &sigs,
            security,
            rank,
            ttl,
            now,
        );
        self.store(key, entry, now);
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
        let (t, k) = match kind {
            Negative::NxDomain => (NXDOMAIN_TYPE, KIND_NXDOMAIN),
            Negative::NoData => (rtype, KIND_NODATA),
        };
        let owner = name.as_wire();
        let entry = RrsetEntry::encode(owner, t, 1, k, &[], soa.as_ref(), &proof, security, rank, ttl, now);
        self.store(self.key(owner, t), entry, now);
    }

    fn store(&self, key: Key, entry: RrsetEntry, now: u64) {
        if let Some(old) = self.entries.get(&key)
            && old.owner() == entry.owner()
            && (old.rank(), old.security()) > (entry.rank(), entry.security())
            && old.freshness(now, &self.policy) == Freshness::Fresh
        {
            return;
        }
        self.entries.insert(key, entry);
    }

    /// Removes what is cached for (name, type).
    pub fn remove(&self, name: &Name, rtype: u16) {
        let wire = name.as_wire();
        let key = self.key(wire, rtype);
        if self.entries.get(&key).is_some_and(|e| e.owner() == wire) {
            self.entries.remove(&key);
        }
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
        assert_eq!(e.rank(), Rank::Authoritative);
        assert_eq!(e.records_at(20)[0].ttl, 280);
    }

    fn rec(name: &str, t: u16, ttl: u32, rdata: &[u8]) -> Record {
        Record { name: Name::from_ascii(name).expect("name"), rtype: t, class: 1, ttl, rdata: rdata.into() }
    }

    #[test]
    fn entries_round_trip_records_soa_and_proofs() {
        let c = RrsetCache::new(1 << 20, TtlPolicy::default());
        let www = Name::from_ascii("www.example.test").expect("name");
        let set = vec![
            rec("www.example.test", rtype::A, 300, &[192, 0, 2, 1]),
            rec("www.example.test", rtype::A, 200, &[192, 0, 2, 2]),
        ];
        let sig = rec("www.example.test", rtype::RRSIG, 300, &[7; 90]);
        c.insert_validated(set, vec![sig.clone()], Security::Secure, Rank::Authoritative, 1000);
        let e = c.get(&www, rtype::A, 1050).expect("cached");
        assert_eq!(
            (e.negative(), e.security(), e.rank(), e.ttl(), e.stored_at()),
            (None, Security::Secure, Rank::Authoritative, 200, 1000)
        );
        let rs = e.records_at(1050);
        assert_eq!(rs.len(), 2);
        assert_eq!(
            (rs[1].name.clone(), rs[1].rtype, rs[1].class, rs[1].ttl, &rs[1].rdata[..]),
            (www.clone(), rtype::A, 1, 150, &[192, 0, 2, 2][..])
        );
        assert_eq!(e.dnssec_at(1050), vec![Record { ttl: 150, ..sig }]);
        assert!(e.soa_at(1050).is_none());

        let nope = Name::from_ascii("nope.example.test").expect("name");
        let soa = rec(
            "example.test",
            rtype::SOA,
            3600,
            &[&[1, b'a', 0, 1, b'b', 0][..], &[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 1, 44]].concat(),
        );
        let nsec = rec("c.example.test", rtype::NSEC, 300, &[1, b'z', 0, 0, 1, 0x40]);
        let nsec_sig = rec("c.example.test", rtype::RRSIG, 300, &[9; 80]);
        c.insert_negative_validated(
            &nope,
            rtype::A,
            Negative::NxDomain,
            Some(soa.clone()),
            vec![nsec.clone(), nsec_sig.clone()],
            Security::Secure,
            Rank::Authoritative,
            1000,
        );
        let e = c.get(&nope, rtype::TXT, 1010).expect("negative");
        assert_eq!((e.negative(), e.ttl(), e.rtype()), (Some(Negative::NxDomain), 300, 0));
        assert!(e.records_at(1010).is_empty());
        assert_eq!(e.soa_at(1010), Some(Record { ttl: 290, ..soa.clone() }));
        assert_eq!(e.dnssec_at(1010), vec![Record { ttl: 290, ..nsec }, Record { ttl: 290, ..nsec_sig }]);

        c.insert_negative(&www, rtype::MX, Negative::NoData, None, Rank::Authoritative, 1000);
        let e = c.get(&www, rtype::MX, 1000).expect("nodata");
        assert_eq!((e.negative(), e.soa_at(1000), e.dnssec_at(1000)), (Some(Negative::NoData), None, Vec::new()));
    }

    #[test]
    fn a_hash_collision_is_a_miss_not_a_wrong_answer() {
        let c = RrsetCache::new(1 << 20, TtlPolicy::default());
        c.insert_rrset(vec![a("www.example.test", 300)], Rank::Authoritative, 0);
        let stored = c.get(&Name::from_ascii("www.example.test").expect("name"), rtype::A, 0).expect("cached");
        // Forge a collision: the other name's key holds www's entry.
        let other = Name::from_ascii("evil.example.test").expect("name");
        c.entries.insert(c.key(other.as_wire(), rtype::A), stored);
        assert!(c.get(&other, rtype::A, 0).is_none());
        c.remove(&other, rtype::A);
        assert_eq!(c.len(), 2, "remove leaves an entry that is not the name's");
    }

    #[test]
    fn a_lab_rrset_costs_under_256_bytes() {
        let c = RrsetCache::new(1 << 20, TtlPolicy::default());
        c.insert_rrset(vec![a("www.z001.test", 300)], Rank::Authoritative, 0);
        assert!(c.weight() <= 256, "{} bytes", c.weight());
    }

    #[test]
    fn nxdomain_covers_all_types_and_ttls_clamp() {
        let policy = TtlPolicy { max_ttl: 100, ..TtlPolicy::default() };
        let c = RrsetCache::new(1 << 20, policy);
        let n = Name::from_ascii("nope.example.test").expect("name");
        c.insert_negative(&n, rtype::A, Negative::NxDomain, None, Rank::Authoritative, 0);
        let e = c.get(&n, rtype::MX, 0).expect("negative");
        assert_eq!(e.negative(), Some(Negative::NxDomain));
        c.insert_rrset(vec![a("www.example.test", 5000)], Rank::Authoritative, 0);
        let www = Name::from_ascii("www.example.test").expect("name");
        assert_eq!(c.get(&www, rtype::A, 0).expect("pos").ttl(), 100);
        assert!(c.get_fresh(&www, rtype::A, 100).is_none());
        assert!(c.get(&www, rtype::A, 100).is_some(), "stale still available");
    }
}

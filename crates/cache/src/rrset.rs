//! The RRset cache used by the recursor: positive RRsets and negative
//! answers, each with the trust rank of where it came from.
//!
//! Layout: an entry is one allocation (`Arc<[u8]>`) holding a 12-byte
//! header, the owner name, the RDATA of each record (owner, type, class and
//! TTL are shared within an RRset) and then the negative answer's SOA and
//! the DNSSEC records in a compact form: a record's owner is one byte when
//! it is the entry's owner or the previous record's, two when it is an
//! ancestor of the entry's owner; its class and TTL are left out when they
//! are the entry's; an RRSIG leaves out its type, the type it covers when
//! that is the entry's, and its signer when that is an ancestor of its owner
//! (as it always is in a signed zone). Lengths and counts below 255 take
//! one byte. The key is a keyed 64-bit hash of the owner name and the type,
//! not the name itself: a lookup allocates nothing, and a hit checks the
//! owner stored in the entry, so a hash collision is a miss, never a wrong
//! answer (the hash key is random per process, so collisions cannot be
//! aimed). The first layout, a `Box<[Record]>` with a boxed name and RDATA
//! per record and the name again in the key, cost 541 bytes per lab RRset;
//! one allocation with whole records in it, 292; this one, 245 (what the
//! cache charges, after the lab's 900 questions).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use proto::{Name, Record, rtype};
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

// Header of an entry: flags (the kind in the low two bits, HAS_SOA,
// HAS_CLASS), security and rank (two bits each), stored_at (u32 Unix
// seconds), ttl (u32), type (u16), the class when it is not IN; then the
// owner name.
const FLAGS: usize = 0;
const STATUS: usize = 1;
const STORED_AT: usize = 2;
const TTL: usize = 6;
const TYPE: usize = 10;
const HEADER: usize = 12;

const KIND_MASK: u8 = 0x03;
const KIND_POSITIVE: u8 = 0;
const KIND_NXDOMAIN: u8 = 1;
const KIND_NODATA: u8 = 2;
/// Set in the flags when a negative entry holds its SOA.
const HAS_SOA: u8 = 0x80;
/// Set in the flags when the class (not IN) follows the header.
const HAS_CLASS: u8 = 0x40;
/// The class almost every entry has, so it is left out.
const CLASS_IN: u16 = 1;

// A record in compact form (a negative entry's SOA, the RRSIGs and NSEC or
// NSEC3 proofs) starts with one byte of these bits, then: the owner's offset
// (OWNER_SUFFIX) or name (OWNER_LITERAL), the type unless REC_RRSIG, the
// class if REC_CLASS, the TTL if REC_TTL, the signer's offset if
// REC_SIGNER, the RDATA's length and the RDATA.
/// The owner is the entry's owner.
const OWNER_ENTRY: u8 = 0;
/// The owner is the previous record's owner (an RRSIG after what it signs).
const OWNER_PREVIOUS: u8 = 1;
/// The owner is a suffix of the entry's owner, at the offset that follows.
const OWNER_SUFFIX: u8 = 2;
/// The owner's name follows.
const OWNER_LITERAL: u8 = 3;
const OWNER_MASK: u8 = 0x03;
/// The record's class follows (else the entry's).
const REC_CLASS: u8 = 0x04;
/// The record's own TTL follows (else the entry's, which is never longer).
const REC_TTL: u8 = 0x08;
/// An RRSIG whose signer is a suffix of its owner: the signer's offset in
/// the owner follows, and the signer is left out of the stored RDATA.
const REC_SIGNER: u8 = 0x10;
/// The type is RRSIG (else it follows).
const REC_RRSIG: u8 = 0x20;
/// An RRSIG covering the entry's type: the type covered is left out of the
/// stored RDATA.
const REC_COVERED: u8 = 0x40;
/// The fixed part of RRSIG RDATA before the signer's name (RFC 4034 §3.1).
const RRSIG_FIXED: usize = 18;

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
            return if i <= b.len() { i } else { 0 };
        }
    }
    0
}

/// The offset of `suffix` in the wire name `name`, when it is `name` or one
/// of its ancestors (a label boundary).
fn suffix_offset(name: &[u8], suffix: &[u8]) -> Option<u8> {
    let mut i = 0;
    while i < name.len() {
        if name[i..] == *suffix {
            return u8::try_from(i).ok();
        }
        i += 1 + name[i] as usize;
    }
    None
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |x| u16::from_be_bytes([x[0], x[1]]))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

/// Appends a length or count: one byte below 255, else 255 and two bytes.
fn put_len(out: &mut Vec<u8>, n: usize) {
    // Counts and RDATA lengths come from DNS messages: at most 65535.
    let n = n.min(u16::MAX as usize);
    match u8::try_from(n) {
        Ok(b) if b < 255 => out.push(b),
        _ => {
            out.push(255);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
}

/// Reads what [`put_len`] wrote at `at`; returns it and where what follows
/// starts.
fn get_len(b: &[u8], at: usize) -> Option<(usize, usize)> {
    match *b.get(at)? {
        255 => b.get(at + 1..at + 3).map(|x| (u16::from_be_bytes([x[0], x[1]]) as usize, at + 3)),
        n => Some((n as usize, at + 1)),
    }
}

fn put_rdata(out: &mut Vec<u8>, rdata: &[u8]) {
    let rdata = &rdata[..rdata.len().min(u16::MAX as usize)];
    put_len(out, rdata.len());
    out.extend_from_slice(rdata);
}

/// Writes an entry's compact records, remembering the previous owner.
struct RecordWriter<'a> {
    out: Vec<u8>,
    owner: &'a [u8],
    rtype: u16,
    class: u16,
    ttl: u32,
    previous: Option<&'a [u8]>,
}

impl<'a> RecordWriter<'a> {
    fn put(&mut self, r: &'a Record) {
        let name = r.name.as_wire();
        let flags_at = self.out.len();
        self.out.push(0);
        let mut flags = if name == self.owner {
            OWNER_ENTRY
        } else if self.previous == Some(name) {
            OWNER_PREVIOUS
        } else if let Some(offset) = suffix_offset(self.owner, name) {
            self.out.push(offset);
            OWNER_SUFFIX
        } else {
            self.out.extend_from_slice(name);
            OWNER_LITERAL
        };
        self.previous = Some(name);
        if r.rtype == rtype::RRSIG {
            flags |= REC_RRSIG;
        } else {
            self.out.extend_from_slice(&r.rtype.to_be_bytes());
        }
        if r.class != self.class {
            flags |= REC_CLASS;
            self.out.extend_from_slice(&r.class.to_be_bytes());
        }
        if r.ttl < self.ttl {
            flags |= REC_TTL;
            self.out.extend_from_slice(&r.ttl.to_be_bytes());
        }
        flags |= match r.rdata.get(RRSIG_FIXED..) {
            Some(_) if r.rtype == rtype::RRSIG => self.put_rrsig_rdata(name, &r.rdata),
            _ => {
                put_rdata(&mut self.out, &r.rdata);
                0
            }
        };
        self.out[flags_at] = flags;
    }

    /// Appends an RRSIG's RDATA (at least its fixed part long) without the
    /// type covered when it is the entry's and without the signer when it is
    /// an ancestor of `owner` (its offset first); returns the flags saying
    /// which.
    fn put_rrsig_rdata(&mut self, owner: &[u8], rdata: &[u8]) -> u8 {
        let rdata = &rdata[..rdata.len().min(u16::MAX as usize)];
        let rest = &rdata[RRSIG_FIXED..];
        let n = name_len(rest);
        let signer = suffix_offset(owner, &rest[..n]).filter(|_| n > 0);
        let (covered, skip) = if u16_at(rdata, 0) == self.rtype { (REC_COVERED, 2) } else { (0, 0) };
        let (signer_flag, n) = match signer {
            Some(offset) => {
                self.out.push(offset);
                (REC_SIGNER, n)
            }
            None => (0, 0),
        };
        put_len(&mut self.out, rdata.len() - n - skip);
        self.out.extend_from_slice(&rdata[skip..RRSIG_FIXED]);
        self.out.extend_from_slice(&rdata[RRSIG_FIXED + n..]);
        covered | signer_flag
    }
}

/// Reads an entry's compact records.
struct RecordReader<'a> {
    b: &'a [u8],
    owner: &'a [u8],
    rtype: u16,
    class: u16,
    /// The entry's TTL left: every record's TTL is capped by it.
    left: u32,
    /// Seconds since the entry was stored: a record's own TTL counts down.
    elapsed: u32,
    previous: &'a [u8],
}

impl<'a> RecordReader<'a> {
    /// The record at `at` and where the next one starts.
    fn get(&mut self, at: usize) -> Option<(Record, usize)> {
        let b = self.b;
        let flags = *b.get(at)?;
        let mut at = at + 1;
        let name = match flags & OWNER_MASK {
            OWNER_ENTRY => self.owner,
            OWNER_PREVIOUS => self.previous,
            OWNER_SUFFIX => {
                at += 1;
                self.owner.get(usize::from(*b.get(at - 1)?)..)?
            }
            _ => {
                let n = name_len(b.get(at..)?);
                at += n;
                b.get(at - n..at)?
            }
        };
        self.previous = name;
        let rtype = if flags & REC_RRSIG != 0 {
            rtype::RRSIG
        } else {
            at += 2;
            u16_at(b, at - 2)
        };
        let class = if flags & REC_CLASS != 0 {
            at += 2;
            u16_at(b, at - 2)
        } else {
            self.class
        };
        let ttl = if flags & REC_TTL != 0 {
            at += 4;
            u32_at(b, at - 4).saturating_sub(self.elapsed).min(self.left)
        } else {
            self.left
        };
        let signer = if flags & REC_SIGNER != 0 {
            at += 1;
            Some(name.get(usize::from(*b.get(at - 1)?)..)?)
        } else {
            None
        };
        let (len, at) = get_len(b, at)?;
        let stored = b.get(at..at + len)?;
        let covered: &[u8] = if flags & REC_COVERED != 0 { &self.rtype.to_be_bytes() } else { &[] };
        let rdata: Box<[u8]> = match signer {
            Some(signer) => {
                let fixed = stored.get(..RRSIG_FIXED - covered.len())?;
                [covered, fixed, signer, &stored[fixed.len()..]].concat().into()
            }
            None => [covered, stored].concat().into(),
        };
        let record = Record { name: Name::from_wire(name).ok()?, rtype, class, ttl, rdata };
        Some((record, at + len))
    }
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
        let mut flags = kind;
        if soa.is_some() {
            flags |= HAS_SOA;
        }
        if class != CLASS_IN {
            flags |= HAS_CLASS;
        }
        let mut b = Vec::with_capacity(256);
        b.push(flags);
        b.push(security as u8 | (rank as u8) << 2);
        // Unix seconds fit in 32 bits until 2106.
        b.extend_from_slice(&(now.min(u64::from(u32::MAX)) as u32).to_be_bytes());
        b.extend_from_slice(&ttl.to_be_bytes());
        b.extend_from_slice(&rtype.to_be_bytes());
        if class != CLASS_IN {
            b.extend_from_slice(&class.to_be_bytes());
        }
        b.extend_from_slice(owner);
        let rdatas = &rdatas[..rdatas.len().min(u16::MAX as usize)];
        put_len(&mut b, rdatas.len());
        for r in rdatas {
            put_rdata(&mut b, &r.rdata);
        }
        let mut w = RecordWriter { out: b, owner, rtype, class, ttl, previous: None };
        if let Some(soa) = soa {
            w.put(soa);
        }
        let dnssec = &dnssec[..dnssec.len().min(u16::MAX as usize)];
        put_len(&mut w.out, dnssec.len());
        for r in dnssec {
            w.put(r);
        }
        RrsetEntry(w.out.into())
    }

    /// Its validation status.
    pub fn security(&self) -> Security {
        Security::from_u8(self.0[STATUS])
    }

    /// The rank it was learnt with.
    pub fn rank(&self) -> Rank {
        Rank::from_u8(self.0[STATUS] >> 2)
    }

    /// Unix time stored.
    pub fn stored_at(&self) -> u64 {
        u64::from(u32_at(&self.0, STORED_AT))
    }

    /// TTL at storage (clamped).
    pub fn ttl(&self) -> u32 {
        u32_at(&self.0, TTL)
    }

    /// The record type (0 for an NXDOMAIN entry).
    pub fn rtype(&self) -> u16 {
        u16_at(&self.0, TYPE)
    }

    /// The class of its records.
    fn class(&self) -> u16 {
        if self.0[FLAGS] & HAS_CLASS != 0 { u16_at(&self.0, HEADER) } else { CLASS_IN }
    }

    /// Where the owner name starts.
    fn owner_start(&self) -> usize {
        if self.0[FLAGS] & HAS_CLASS != 0 { HEADER + 2 } else { HEADER }
    }

    /// The owner name, uncompressed wire form.
    pub fn owner(&self) -> &[u8] {
        let start = self.owner_start();
        let n = name_len(&self.0[start..]);
        &self.0[start..start + n]
    }

    /// `None` for an RRset, else the kind of negative answer.
    pub fn negative(&self) -> Option<Negative> {
        match self.0[FLAGS] & KIND_MASK {
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

    /// Where the records' count starts.
    fn data_start(&self) -> usize {
        self.owner_start() + self.owner().len()
    }

    /// The RDATA of each record of an RRset (none for a negative entry).
    pub fn rdatas(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let b = &self.0[..];
        let (count, mut at) = get_len(b, self.data_start()).unwrap_or((0, b.len()));
        (0..count).map_while(move |_| {
            let (len, start) = get_len(b, at)?;
            let rdata = b.get(start..start + len)?;
            at = start + len;
            Some(rdata)
        })
    }

    /// Where the SOA (if any) or the DNSSEC records start.
    fn after_data(&self) -> usize {
        let b = &self.0[..];
        let Some((count, mut at)) = get_len(b, self.data_start()) else { return b.len() };
        for _ in 0..count {
            match get_len(b, at) {
                Some((len, start)) => at = start + len,
                None => return b.len(),
            }
        }
        at
    }

    fn reader(&self, now: u64) -> RecordReader<'_> {
        let owner = self.owner();
        RecordReader {
            b: &self.0,
            owner,
            rtype: self.rtype(),
            class: self.class(),
            left: self.remaining(now),
            elapsed: now.saturating_sub(self.stored_at()).min(u64::from(u32::MAX)) as u32,
            previous: owner,
        }
    }

    /// The records with their TTLs counted down to `now` (empty for a
    /// negative entry).
    pub fn records_at(&self, now: u64) -> Vec<Record> {
        let left = self.remaining(now);
        let (rtype, class) = (self.rtype(), self.class());
        let Ok(name) = Name::from_wire(self.owner()) else { return Vec::new() };
        self.rdatas().map(|rdata| Record { name: name.clone(), rtype, class, ttl: left, rdata: rdata.into() }).collect()
    }

    /// A negative entry's SOA, its TTL counted down to `now`.
    pub fn soa_at(&self, now: u64) -> Option<Record> {
        if self.0[FLAGS] & HAS_SOA == 0 {
            return None;
        }
        self.reader(now).get(self.after_data()).map(|(r, _)| r)
    }

    /// The RRSIGs of an RRset, or a negative entry's NSEC/NSEC3 proof with
    /// its RRSIGs, their TTLs counted down to `now`.
    pub fn dnssec_at(&self, now: u64) -> Vec<Record> {
        let mut reader = self.reader(now);
        let mut at = self.after_data();
        if self.0[FLAGS] & HAS_SOA != 0 {
            match reader.get(at) {
                Some((_, next)) => at = next,
                None => return Vec::new(),
            }
        }
        let Some((count, mut at)) = get_len(&self.0, at) else { return Vec::new() };
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let Some((r, next)) = reader.get(at) else { break };
            out.push(r);
            at = next;
        }
        out
    }

    /// The entry's bytes, for a cache snapshot.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// An entry from bytes [`RrsetEntry::as_bytes`] gave, or `None` when
    /// they are not one. The check decodes every part and encodes them
    /// again: only bytes that come back identical are taken, so a corrupt
    /// or crafted snapshot can neither panic a later read nor slip in data
    /// a resolution would not have stored.
    pub fn from_bytes(b: &[u8]) -> Option<RrsetEntry> {
        let flags = *b.first()?;
        let start = if flags & HAS_CLASS != 0 { HEADER + 2 } else { HEADER };
        if b.len() <= start || flags & KIND_MASK == 3 {
            return None;
        }
        let candidate = RrsetEntry(b.into());
        let owner = Name::from_wire(candidate.owner()).ok()?;
        let stored_at = candidate.stored_at();
        let records = candidate.records_at(stored_at);
        if records.len() != candidate.rdatas().count() {
            return None;
        }
        let soa = candidate.soa_at(stored_at);
        if (flags & HAS_SOA != 0) != soa.is_some() {
            return None;
        }
        let again = RrsetEntry::encode(
            owner.as_wire(),
            candidate.rtype(),
            candidate.class(),
            flags & KIND_MASK,
            &records,
            soa.as_ref(),
            &candidate.dnssec_at(stored_at),
            candidate.security(),
            candidate.rank(),
            candidate.ttl(),
            stored_at,
        );
        (again.0[..] == *b).then_some(candidate)
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

    /// A fresh NXDOMAIN entry for `name` itself, if there is one.
    pub fn get_nxdomain(&self, name: &Name, now: u64) -> Option<RrsetEntry> {
        self.lookup(name.as_wire(), NXDOMAIN_TYPE).filter(|e| e.freshness(now, &self.policy) == Freshness::Fresh)
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

    /// Keeps only the entries `keep` says yes to (for `onedot ctl flush`);
    /// returns how many went.
    pub fn retain(&self, keep: impl Fn(&RrsetEntry) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| keep(e));
        before.saturating_sub(self.entries.len())
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.entries.clear();
    }

    /// Calls `f` with every entry (for a snapshot; entries added or
    /// evicted meanwhile may be seen or missed).
    pub fn for_each(&self, mut f: impl FnMut(&RrsetEntry)) {
        for (_, e) in self.entries.iter() {
            f(&e);
        }
    }

    /// Stores an entry from a snapshot under its owner and type, unless a
    /// fresh entry of higher rank is there.
    pub fn insert_entry(&self, entry: RrsetEntry, now: u64) {
        let key = self.key(entry.owner(), entry.rtype());
        self.store(key, entry, now);
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

    /// RRSIG RDATA: the 18 fixed bytes, the signer, a 64-byte signature.
    fn rrsig_rdata(covered: u16, signer: &str) -> Vec<u8> {
        let mut rdata = covered.to_be_bytes().to_vec();
        rdata.extend_from_slice(&[13, 3, 0, 0, 1, 44, 0x68, 0, 0, 0, 0x67, 0, 0, 0, 0x30, 0x39]);
        rdata.extend_from_slice(Name::from_ascii(signer).expect("signer").as_wire());
        rdata.extend_from_slice(&[0x5a; 64]);
        rdata
    }

    #[test]
    fn compact_records_give_back_what_was_stored() {
        let c = RrsetCache::new(1 << 20, TtlPolicy::default());
        // Signed positive RRset: the RRSIG's owner, type, class, TTL and
        // signer are left out of the entry and come back.
        let www = Name::from_ascii("www.Example.test").expect("name");
        let sig = rec("www.Example.test", rtype::RRSIG, 300, &rrsig_rdata(rtype::A, "Example.test"));
        c.insert_validated(
            vec![rec("www.Example.test", rtype::A, 300, &[192, 0, 2, 1])],
            vec![sig.clone()],
            Security::Secure,
            Rank::Authoritative,
            1000,
        );
        let e = c.get(&www, rtype::A, 1000).expect("cached");
        assert_eq!(e.dnssec_at(1000), vec![sig.clone()]);
        // 12 header + 18 owner + 1 count + 5 + 1 count + 1 flags + 1 signer
        // offset + 1 length + 80 RDATA without its type covered and 14-byte
        // signer.
        assert_eq!(e.0.len(), 120);

        // A signer that is not the owner's ancestor, a long RDATA, a class
        // other than IN and records with their own shorter TTLs.
        let odd_sig = rec("www.Example.test", rtype::RRSIG, 300, &rrsig_rdata(rtype::TXT, "other.test"));
        let mut txt = rec("www.Example.test", rtype::TXT, 300, &[b'x'; 300]);
        txt.class = 3;
        c.insert_validated(
            vec![txt.clone()],
            vec![Record { class: 3, ..odd_sig.clone() }],
            Security::Secure,
            Rank::Authoritative,
            1000,
        );
        let e = c.get(&www, rtype::TXT, 1000).expect("cached");
        assert_eq!(e.records_at(1010), vec![Record { ttl: 290, ..txt }]);
        assert_eq!(e.dnssec_at(1010), vec![Record { ttl: 290, class: 3, ..odd_sig }]);

        // A negative entry whose SOA is at the zone apex (a suffix of the
        // owner), an NSEC3 at another owner and its RRSIG after it, with the
        // proof's TTL shorter than the entry's: it counts down on its own.
        let nope = Name::from_ascii("a.b.nope.example.test").expect("name");
        let soa = rec("example.test", rtype::SOA, 3600, &[&[1, b'a', 0, 1, b'b', 0][..], &[0; 20]].concat());
        let soa_sig = rec("example.test", rtype::RRSIG, 3600, &rrsig_rdata(rtype::SOA, "example.test"));
        let n3 =
            rec("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example.test", rtype::NSEC3, 100, &[1, 0, 0, 10, 0, 4, 1, 2, 3, 4]);
        let n3_sig = rec(
            "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example.test",
            rtype::RRSIG,
            100,
            &rrsig_rdata(rtype::NSEC3, "example.test"),
        );
        let mut soa_ttl = soa.clone();
        soa_ttl.rdata[soa_ttl.rdata.len() - 1] = 200;
        c.insert_negative_validated(
            &nope,
            rtype::A,
            Negative::NxDomain,
            Some(soa_ttl.clone()),
            vec![soa_sig.clone(), n3.clone(), n3_sig.clone()],
            Security::Secure,
            Rank::Authoritative,
            1000,
        );
        let e = c.get(&nope, rtype::A, 1050).expect("negative");
        assert_eq!(e.ttl(), 200);
        assert_eq!(e.soa_at(1050), Some(Record { ttl: 150, ..soa_ttl }));
        assert_eq!(
            e.dnssec_at(1050),
            vec![Record { ttl: 150, ..soa_sig }, Record { ttl: 50, ..n3 }, Record { ttl: 50, ..n3_sig }]
        );
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

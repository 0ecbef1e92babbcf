//! Aggressive use of the validated cache (RFC 8198): NXDOMAIN and NODATA
//! synthesised from validated NSEC records, and answers synthesised from
//! validated wildcards (§5.3), so random-subdomain floods stop at the
//! resolver instead of reaching the authorities, and a name under a signed
//! wildcard costs no signature check once the wildcard's RRset has been
//! verified.
//!
//! Only NSEC from validated (secure) answers enter the index; NSEC3 is not
//! used for synthesis (RFC 8198 §5.2 allows it; we have not yet measured it
//! safe against opt-out spans).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use dnssec::Nsec;
use proto::{Name, Record, rtype};

/// Most zones, and NSEC records per zone, kept; beyond that the index is
/// cleared (it refills from ordinary negative answers).
const MAX_ZONES: usize = 10_000;
const MAX_PER_ZONE: usize = 10_000;
/// Longest time an NSEC is used for synthesis.
const MAX_NSEC_TTL: u32 = 3_600;

/// A name as a key that sorts in canonical DNS order (RFC 4034 §6.1).
fn canonical_key(name: &Name) -> Vec<Vec<u8>> {
    let mut labels: Vec<Vec<u8>> = name.labels().map(|l| l.to_ascii_lowercase()).collect();
    labels.reverse();
    labels
}

#[derive(Debug, Clone)]
struct Entry {
    owner: Name,
    nsec: Nsec,
    /// The NSEC record and its RRSIGs, for the authority section.
    records: Vec<Record>,
    expires: u64,
}

/// A validated RRset at a wildcard owner (`*.example.`), learnt from an
/// answer expanded from it, with its RRSIGs (owner `*.example.` too).
#[derive(Debug, Clone)]
struct Wildcard {
    records: Vec<Record>,
    sigs: Vec<Record>,
    expires: u64,
}

#[derive(Debug, Default)]
struct ZoneIndex {
    by_owner: BTreeMap<Vec<Vec<u8>>, Entry>,
    /// Validated wildcard RRsets by (wildcard owner, type).
    wildcards: HashMap<(Name, u16), Wildcard>,
    soa: Option<Record>,
    /// The SOA's RRSIGs: a synthesised answer carries them beside it, as
    /// the authority's own would (RFC 4035 §3.1.3).
    soa_sigs: Vec<Record>,
}

/// What the index can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Synthesised {
    /// An answer expanded from a validated wildcard: the RRset and its
    /// RRSIGs with the query's name as owner (empty for a denial).
    pub answer: Vec<Record>,
    /// True for NXDOMAIN, false for NODATA (and for an answer).
    pub nxdomain: bool,
    /// The zone's SOA, TTL counted down.
    pub soa: Option<Record>,
    /// The NSEC records and RRSIGs that prove it.
    pub proof: Vec<Record>,
}

/// Validated NSEC records by zone, in canonical order.
#[derive(Debug, Default)]
pub(crate) struct NsecIndex {
    zones: Mutex<HashMap<Name, ZoneIndex>>,
}

impl NsecIndex {
    /// Remembers the NSEC records (with RRSIGs) of a validated negative
    /// answer from `zone`.
    pub fn insert(&self, zone: &Name, proof: &[Record], soa: Option<&Record>, now: u64) {
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        if zones.len() >= MAX_ZONES && !zones.contains_key(zone) {
            zones.clear();
        }
        let index = zones.entry(zone.clone()).or_default();
        // A wildcard's proof comes without an SOA: the one known for the
        // zone bounds it then, else the NSEC's own TTL (which RFC 9077 has
        // authorities set to the negative TTL).
        let soa_ttl = soa.or(index.soa.as_ref()).and_then(Record::soa_negative_ttl).unwrap_or(u32::MAX);
        if let Some(s) = soa {
            index.soa = Some(s.clone());
            index.soa_sigs = proof
                .iter()
                .filter(|r| r.rtype == rtype::RRSIG && r.name == s.name)
                .filter(|r| r.rdata.get(..2) == Some(&rtype::SOA.to_be_bytes()[..]))
                .cloned()
                .collect();
        }
        for r in proof.iter().filter(|r| r.rtype == rtype::NSEC && r.name.is_subdomain_of(zone)) {
            let Ok(nsec) = Nsec::parse(&r.rdata) else { continue };
            if index.by_owner.len() >= MAX_PER_ZONE {
                index.by_owner.clear();
            }
            let mut records = vec![r.clone()];
            records.extend(
                proof
                    .iter()
                    .filter(|s| s.rtype == rtype::RRSIG && s.name == r.name)
                    .filter(|s| s.rdata.get(..2) == Some(&rtype::NSEC.to_be_bytes()[..]))
                    .cloned(),
            );
            // RFC 8198 §5.4: no longer than the SOA's negative TTL, and never
            // more than an hour whatever the records claim.
            let ttl = r.ttl.min(soa_ttl).min(MAX_NSEC_TTL) as u64;
            index
                .by_owner
                .insert(canonical_key(&r.name), Entry { owner: r.name.clone(), nsec, records, expires: now + ttl });
        }
    }

    /// Remembers a validated RRset expanded from the wildcard `wildcard` of
    /// `zone` (`records` and their RRSIGs `sigs`, with any owner), and the
    /// NSEC records (with RRSIGs) that proved the expansion.
    pub fn insert_wildcard(
        &self,
        zone: &Name,
        wildcard: &Name,
        records: &[Record],
        sigs: &[Record],
        proof: &[Record],
        now: u64,
    ) {
        let Some(first) = records.first() else { return };
        if !wildcard.is_wildcard() || !wildcard.is_subdomain_of(zone) || !proof.iter().any(|r| r.rtype == rtype::NSEC) {
            return;
        }
        self.insert(zone, proof, None, now);
        let ttl = records.iter().chain(sigs).map(|r| r.ttl).min().unwrap_or(0);
        let owned = |r: &Record| Record { name: wildcard.clone(), ..r.clone() };
        let entry = Wildcard {
            records: records.iter().map(owned).collect(),
            sigs: sigs.iter().map(owned).collect(),
            expires: now + u64::from(ttl),
        };
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let Some(index) = zones.get_mut(zone) else { return };
        if index.wildcards.len() >= MAX_PER_ZONE {
            index.wildcards.clear();
        }
        index.wildcards.insert((wildcard.clone(), first.rtype), entry);
    }

    /// A negative answer for (qname, qtype) from validated NSEC records, or
    /// an answer from a validated wildcard they show applies, if they prove
    /// one.
    pub fn synthesise(&self, qname: &Name, qtype: u16, now: u64) -> Option<Synthesised> {
        if qtype == rtype::DS || qtype == rtype::ANY {
            return None;
        }
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        // The deepest zone we hold NSEC records for.
        let mut candidate = Some(qname.clone());
        let (zone, index) = loop {
            let z = candidate?;
            if let Some(index) = zones.get(&z) {
                break (z, index);
            }
            candidate = z.parent();
        };
        let fresh = |e: &&Entry| e.expires > now;
        let left = |e: &Entry| (e.expires - now) as u32;
        let soa = index.soa.clone();
        let with_ttl = |records: &[Record], ttl: u32| -> Vec<Record> {
            index.soa_sigs.iter().chain(records).map(|r| Record { ttl: ttl.min(r.ttl), ..r.clone() }).collect()
        };
        let key = canonical_key(qname);
        // NODATA: an NSEC at the name without the type (nor CNAME).
        if let Some(e) = index.by_owner.get(&key).filter(fresh) {
            // At a delegation point the parent's NSEC speaks for DS only.
            let delegation = e.nsec.has_type(rtype::NS) && !e.nsec.has_type(rtype::SOA);
            if delegation || e.nsec.has_type(qtype) || e.nsec.has_type(rtype::CNAME) {
                return None;
            }
            let ttl = left(e);
            return Some(Synthesised {
                answer: Vec::new(),
                nxdomain: false,
                soa: soa.map(|s| Record { ttl: ttl.min(s.ttl), ..s }),
                proof: with_ttl(&e.records, ttl),
            });
        }
        // The NSEC before the name must cover it.
        let (_, e) = index.by_owner.range(..key).next_back()?;
        if !fresh(&e)
            || !dnssec::nsec::covers(&e.owner, &e.nsec.next, qname)
            || !dnssec::nsec::can_deny(&e.owner, &e.nsec, qname)
            || !qname.is_subdomain_of(&zone)
        {
            return None;
        }
        if e.nsec.next.is_subdomain_of(qname) {
            // An empty non-terminal: NODATA for every type.
            let ttl = left(e);
            return Some(Synthesised {
                answer: Vec::new(),
                nxdomain: false,
                soa: soa.map(|s| Record { ttl: ttl.min(s.ttl), ..s }),
                proof: with_ttl(&e.records, ttl),
            });
        }
        // NXDOMAIN also needs the wildcard at the closest encloser denied.
        let common = |a: &Name, b: &Name| {
            let mut n = a.label_count().min(b.label_count());
            while a.suffix(n) != b.suffix(n) {
                n -= 1;
            }
            a.suffix(n)
        };
        let (c1, c2) = (common(qname, &e.owner), common(qname, &e.nsec.next));
        let ce = if c1.label_count() >= c2.label_count() { c1 } else { c2 };
        let wildcard = ce.prepend(b"*").ok()?;
        // The name does not exist and the wildcard at its closest encloser
        // does: the wildcard's RRset (or CNAME), with the name as owner and
        // the NSEC that denies the name as proof (RFC 4035 §3.1.3.3).
        let expanded = [qtype, rtype::CNAME].into_iter().find_map(|t| index.wildcards.get(&(wildcard.clone(), t)));
        if let Some(x) = expanded.filter(|x| x.expires > now) {
            let ttl = left(e).min((x.expires - now) as u32);
            let owned = |r: &Record| Record { name: qname.clone(), ttl: ttl.min(r.ttl), ..r.clone() };
            return Some(Synthesised {
                answer: x.records.iter().chain(&x.sigs).map(owned).collect(),
                nxdomain: false,
                soa: None,
                proof: e.records.iter().map(|r| Record { ttl: ttl.min(r.ttl), ..r.clone() }).collect(),
            });
        }
        let (_, w) = index.by_owner.range(..=canonical_key(&wildcard)).next_back()?;
        if !fresh(&w)
            || w.owner == wildcard
            || !dnssec::nsec::covers(&w.owner, &w.nsec.next, &wildcard)
            || !dnssec::nsec::can_deny(&w.owner, &w.nsec, &wildcard)
        {
            return None;
        }
        let ttl = left(e).min(left(w));
        let mut proof = with_ttl(&e.records, ttl);
        if w.owner != e.owner {
            proof.extend(w.records.iter().map(|r| Record { ttl: ttl.min(r.ttl), ..r.clone() }));
        }
        Some(Synthesised {
            answer: Vec::new(),
            nxdomain: true,
            soa: soa.map(|s| Record { ttl: ttl.min(s.ttl), ..s }),
            proof,
        })
    }
}

//! NSEC and NSEC3 denial proofs on hostile, structured input: a query name
//! of a few short labels (from a small alphabet, so names collide), NSEC
//! records whose owner/next names are built around it, and NSEC3 records
//! with any hash algorithm, flags, iterations up to 65535, salts and hashes
//! of any length (and lying length octets), and type bitmaps of random
//! octets. Nothing may panic, and the proofs must stay cheap: libFuzzer's
//! `-timeout` (set by scripts/fuzz.sh) turns a slow input into a crash.
//!
//! Calls: `dnssec::nsec::{parse_nsecs, covers, can_deny, prove_nxdomain,
//! prove_nodata, prove_no_ds, prove_wildcard_expansion}`,
//! `dnssec::nsec3::{Nsec3Set::new, prove_nxdomain, prove_nodata,
//! prove_no_ds, prove_wildcard_expansion, hash, base32hex, Nsec3::parse}`,
//! `dnssec::canonical::compare_names`, and `Nsec3Set::{matching,
//! covering, closest_encloser}`.

#![no_main]

use std::cmp::Ordering;

use arbitrary::Arbitrary;
use dnssec::canonical::compare_names;
use dnssec::nsec3::{self, MAX_ITERATIONS, Nsec3, Nsec3Set};
use dnssec::records::make_bitmap;
use dnssec::{Nsec, nsec};
use libfuzzer_sys::fuzz_target;
use proto::{Name, Record, rtype};

/// Label octets: letters that sort around each other, the wildcard, and
/// octets that need escaping or sort first/last.
const ALPHABET: &[u8] = b"abyz*-0_\x00\xff.A";
const COMMON_TYPES: [u16; 12] = [
    rtype::A,
    rtype::NS,
    rtype::SOA,
    rtype::CNAME,
    rtype::DNAME,
    rtype::DS,
    rtype::RRSIG,
    rtype::NSEC,
    rtype::NSEC3,
    rtype::TXT,
    rtype::MX,
    rtype::AAAA,
];

#[derive(Arbitrary, Debug)]
struct Label {
    octets: Vec<u8>,
    /// A 63-octet label, to reach the 255-octet name limit (the wildcard
    /// at a long closest encloser cannot be built).
    long: bool,
}

impl Label {
    fn render(&self) -> Vec<u8> {
        if self.long {
            let c = ALPHABET[usize::from(self.octets.first().copied().unwrap_or(0)) % ALPHABET.len()];
            return vec![c; 63];
        }
        self.octets.iter().take(6).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()]).collect()
    }
}

/// A name relative to the query name: its ancestor with `keep` labels, with
/// `extra` labels prepended.
#[derive(Arbitrary, Debug)]
struct NameIn {
    keep: u8,
    extra: Vec<Label>,
}

impl NameIn {
    fn render(&self, qname: &Name) -> Name {
        prepend_all(qname.suffix(usize::from(self.keep)), &self.extra)
    }
}

fn prepend_all(mut name: Name, labels: &[Label]) -> Name {
    for l in labels.iter().take(8).rev() {
        if let Ok(n) = name.prepend(&l.render()) {
            name = n;
        }
    }
    name
}

#[derive(Arbitrary, Debug)]
enum TypeIn {
    Common(u8),
    Raw(u16),
}

#[derive(Arbitrary, Debug)]
enum BitmapIn {
    Types(Vec<TypeIn>),
    Raw(Vec<u8>),
}

impl BitmapIn {
    fn render(&self) -> Vec<u8> {
        match self {
            BitmapIn::Types(ts) => {
                let types: Vec<u16> = ts
                    .iter()
                    .take(32)
                    .map(|t| match t {
                        TypeIn::Common(i) => COMMON_TYPES[usize::from(*i) % COMMON_TYPES.len()],
                        TypeIn::Raw(t) => *t,
                    })
                    .collect();
                make_bitmap(&types)
            }
            BitmapIn::Raw(b) => b.iter().copied().take(512).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct NsecIn {
    owner: NameIn,
    next: NameIn,
    bitmap: BitmapIn,
    /// Replaces the whole rdata.
    raw_rdata: Option<Vec<u8>>,
    /// Another record type under the same owner (must be ignored).
    other_type: Option<u16>,
}

#[derive(Arbitrary, Debug)]
enum HashIn {
    /// The real NSEC3 hash of a name (computed only for small iteration
    /// counts, else zeros: the harness itself must stay fast).
    Of(NameIn),
    Octets(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum OwnerIn {
    Hash(HashIn),
    /// A label that may not be base32hex at all.
    Label(Label),
}

#[derive(Arbitrary, Debug)]
struct Nsec3In {
    owner: OwnerIn,
    next: HashIn,
    hash_algorithm: u8,
    flags: u8,
    iterations: u16,
    small_iterations: bool,
    salt: Vec<u8>,
    salt_len_lie: Option<u8>,
    hash_len_lie: Option<u8>,
    bitmap: BitmapIn,
    raw_rdata: Option<Vec<u8>>,
    /// Owner not directly below the zone.
    misplaced: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    qname: Vec<Label>,
    zone_keep: u8,
    qtype: TypeIn,
    /// The RRSIG Labels field for wildcard-expansion proofs.
    source_labels: u8,
    other: NameIn,
    nsecs: Vec<NsecIn>,
    nsec3s: Vec<Nsec3In>,
}

fn rtype_of(t: &TypeIn) -> u16 {
    match t {
        TypeIn::Common(i) => COMMON_TYPES[usize::from(*i) % COMMON_TYPES.len()],
        TypeIn::Raw(t) => *t,
    }
}

fn hash_octets(h: &HashIn, qname: &Name, salt: &[u8], iterations: u16) -> Vec<u8> {
    match h {
        HashIn::Of(n) if iterations <= MAX_ITERATIONS => nsec3::hash(&n.render(qname), salt, iterations),
        HashIn::Of(_) => vec![0; 20],
        HashIn::Octets(o) => o.iter().copied().take(255).collect(),
    }
}

fn record(name: Name, rtype: u16, rdata: Vec<u8>) -> Record {
    Record { name, rtype, class: 1, ttl: 300, rdata: rdata.into() }
}

fuzz_target!(|input: Input| {
    let qname = prepend_all(Name::root(), &input.qname);
    let zone = qname.suffix(usize::from(input.zone_keep) % (qname.label_count() + 1));
    let qtype = rtype_of(&input.qtype);
    let other = input.other.render(&qname);
    let source_labels = usize::from(input.source_labels);

    // NSEC.
    let mut records = Vec::new();
    for n in input.nsecs.iter().take(32) {
        let owner = n.owner.render(&qname);
        let rdata = match &n.raw_rdata {
            Some(r) => r.clone(),
            None => {
                let mut r = n.next.render(&qname).as_wire().to_vec();
                r.extend_from_slice(&n.bitmap.render());
                r
            }
        };
        if let Some(t) = n.other_type {
            records.push(record(owner.clone(), t, rdata.clone()));
        }
        records.push(record(owner, rtype::NSEC, rdata));
    }
    let nsecs: Vec<(Name, Nsec)> = nsec::parse_nsecs(&records);
    for (owner, n) in &nsecs {
        assert_eq!(compare_names(owner, owner), Ordering::Equal);
        assert_eq!(compare_names(owner, &n.next), compare_names(&n.next, owner).reverse());
        let _ = nsec::covers(owner, &n.next, &qname);
        let _ = nsec::can_deny(owner, n, &qname);
    }
    for name in [&qname, &other, &zone] {
        let _ = nsec::prove_nxdomain(name, &nsecs).map_err(|e| e.ede_code());
        let _ = nsec::prove_nodata(name, qtype, &nsecs);
        let _ = nsec::prove_no_ds(name, &nsecs);
        let _ = nsec::prove_wildcard_expansion(name, source_labels, &nsecs);
    }

    // NSEC3.
    let mut records = Vec::new();
    for n in input.nsec3s.iter().take(32) {
        let iterations = if n.small_iterations { n.iterations % 16 } else { n.iterations };
        let salt: Vec<u8> = n.salt.iter().copied().take(255).collect();
        // Mostly SHA-1 and flags 0/1, so records pass Nsec3Set's filter.
        let hash_algorithm = if n.hash_algorithm < 224 { 1 } else { n.hash_algorithm };
        let flags = if n.flags < 224 { n.flags & 1 } else { n.flags };
        let label: Vec<u8> = match &n.owner {
            OwnerIn::Hash(h) => {
                let h = hash_octets(h, &qname, &salt, iterations);
                // At most 39 octets make a label of at most 63 characters.
                nsec3::base32hex(&h[..h.len().min(39)]).into_bytes()
            }
            OwnerIn::Label(l) => l.render(),
        };
        let base = if n.misplaced { zone.prepend(b"x").unwrap_or_else(|_| Name::root()) } else { zone.clone() };
        let Ok(owner) = base.prepend(&label) else { continue };
        let rdata = match &n.raw_rdata {
            Some(r) => r.clone(),
            None => {
                let next = hash_octets(&n.next, &qname, &salt, iterations);
                let mut r = vec![hash_algorithm, flags];
                r.extend_from_slice(&iterations.to_be_bytes());
                r.push(n.salt_len_lie.unwrap_or(salt.len() as u8));
                r.extend_from_slice(&salt);
                r.push(n.hash_len_lie.unwrap_or(next.len() as u8));
                r.extend_from_slice(&next);
                r.extend_from_slice(&n.bitmap.render());
                r
            }
        };
        if let Ok(p) = Nsec3::parse(&rdata) {
            assert!(!p.next_hash.is_empty());
        } else if n.raw_rdata.is_none() {
            // Only a lying length octet (or an empty hash) can make the
            // rdata built above unparseable.
            assert!(n.salt_len_lie.is_some() || n.hash_len_lie.is_some() || next_is_empty(&rdata));
        }
        records.push(record(owner, rtype::NSEC3, rdata));
    }
    let set = Nsec3Set::new(&zone, &records);
    let _ = set.is_empty();
    for name in [&qname, &other, &zone] {
        let _ = nsec3::prove_nxdomain(name, &set);
        let _ = nsec3::prove_nodata(name, qtype, &set);
        let _ = nsec3::prove_no_ds(name, &set);
        let _ = nsec3::prove_wildcard_expansion(name, source_labels, &set);
        // Past the iteration limit these hash nothing (they once hashed
        // 65,536 times per ancestor; nsec3's regression test pins it).
        let _ = set.matching(name);
        let _ = set.covering(name);
        let _ = set.closest_encloser(name);
    }
});

/// Whether the (honest) rdata built above has an empty next-hash field.
fn next_is_empty(rdata: &[u8]) -> bool {
    let salt_len = usize::from(rdata[4]);
    rdata.get(5 + salt_len) == Some(&0)
}

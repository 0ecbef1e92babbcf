//! RRSIG verification under the work budget: arbitrary RRsets, DNSKEYs
//! (including many with the same, forced key tag: KeyTrap) and RRSIGs with
//! any algorithm, labels, validity window, key tag and signer.
//!
//! Checks, besides "no panic":
//! * a call never spends more than `MAX_SIGS_PER_RRSET * MAX_KEYS_PER_SIG`
//!   verifications, never more than the budget, and `Bogus::Budget` only
//!   when the budget is spent;
//! * optionally a *real* Ed25519 signature (key from a fuzzed seed, signed
//!   over `dnssec::canonical::signing_input`) is put first: then, with a
//!   budget of at least one, `verify_rrset` must succeed (and the DS made
//!   with `ds_sha256` must match the key). That keeps the success path and
//!   the canonical form under test, not just the rejections.
//!
//! Calls: `dnssec::verify_rrset`, `dnssec::verify_rrset_unexpanded`,
//! `dnssec::WorkBudget::{new, left}`, `dnssec::AlgorithmPolicy`,
//! `dnssec::Dnskey::parse` (and `Dnskey { .. }` built directly for forced
//! tags), `dnssec::Rrsig::parse`, `dnssec::Ds::parse`, `dnssec::ds_matches`,
//! `dnssec::verify::ds_sha256`, `dnssec::key_tag`,
//! `dnssec::canonical::{signing_input, signed_data, signed_owner}`.

#![no_main]

use arbitrary::Arbitrary;
use dnssec::canonical::{signed_data, signed_owner, signing_input};
use dnssec::verify::{MAX_KEYS_PER_SIG, MAX_SIGS_PER_RRSET, ds_sha256};
use dnssec::{AlgorithmPolicy, Bogus, Dnskey, Ds, Rrsig, WorkBudget, ds_matches, key_tag};
use libfuzzer_sys::fuzz_target;
use proto::{Name, Record, rtype};
use ring::signature::{Ed25519KeyPair, KeyPair};

const ALGORITHMS: [u8; 8] = [5, 7, 8, 10, 13, 14, 15, 16];
const MOST_PER_CALL: u32 = (MAX_SIGS_PER_RRSET * MAX_KEYS_PER_SIG) as u32;

#[derive(Arbitrary, Debug)]
enum AlgIn {
    Known(u8),
    Raw(u8),
}

impl AlgIn {
    fn get(&self) -> u8 {
        match self {
            AlgIn::Known(i) => ALGORITHMS[usize::from(*i) % ALGORITHMS.len()],
            AlgIn::Raw(a) => *a,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct KeyIn {
    flags: u16,
    /// Protocol 3 (else the raw octet).
    protocol: Option<u8>,
    algorithm: AlgIn,
    public_key: Vec<u8>,
    /// Colliding key tags without finding collisions.
    forced_tag: Option<u16>,
}

#[derive(Arbitrary, Debug)]
enum TagIn {
    /// The tag of key `i % keys`.
    Key(u8),
    Raw(u16),
}

#[derive(Arbitrary, Debug)]
struct SigIn {
    /// Owner other than the RRset's (must be ignored).
    other_owner: bool,
    type_covered: Option<u16>,
    algorithm: AlgIn,
    labels: Option<u8>,
    original_ttl: u32,
    expiration: u32,
    inception: u32,
    tag: TagIn,
    /// Signer other than the zone.
    other_signer: bool,
    signature: Vec<u8>,
    raw_rdata: Option<Vec<u8>>,
}

#[derive(Arbitrary, Debug)]
struct RealSig {
    seed: [u8; 32],
    original_ttl: u32,
    valid_since: u32,
    valid_for: u32,
}

#[derive(Arbitrary, Debug)]
struct Input {
    owner: Vec<Vec<u8>>,
    zone_keep: u8,
    rtype: u16,
    class: u16,
    rrset: Vec<(u32, Vec<u8>)>,
    sigs: Vec<SigIn>,
    keys: Vec<KeyIn>,
    ds: Vec<Vec<u8>>,
    now: u32,
    allow_sha1: bool,
    budget: u8,
    real: Option<RealSig>,
}

fuzz_target!(|input: Input| {
    let mut owner = Name::root();
    for l in input.owner.iter().take(6).rev() {
        if let Ok(n) = owner.prepend(&l[..l.len().min(12)]) {
            owner = n;
        }
    }
    let zone = owner.suffix(usize::from(input.zone_keep) % (owner.label_count() + 1));
    let rt = if input.rtype == rtype::RRSIG { rtype::A } else { input.rtype };
    let rrset: Vec<Record> = input
        .rrset
        .iter()
        .take(16)
        .map(|(ttl, rdata)| Record {
            name: owner.clone(),
            rtype: rt,
            class: input.class,
            ttl: *ttl & 0x7fff_ffff,
            rdata: rdata[..rdata.len().min(1024)].into(),
        })
        .collect();
    let policy = AlgorithmPolicy { allow_sha1: input.allow_sha1, ..AlgorithmPolicy::default() };

    // Keys, each with its rdata (for DS matching).
    let mut keys: Vec<(Dnskey, Vec<u8>)> = Vec::new();
    let mut rrsigs: Vec<Record> = Vec::new();
    let mut real_expected = false;
    if let Some(real) = &input.real
        && let Ok(pair) = Ed25519KeyPair::from_seed_unchecked(&real.seed)
        && !rrset.is_empty()
    {
        let mut key_rdata = vec![1, 1, 3, 15]; // zone key + SEP, protocol 3, Ed25519
        key_rdata.extend_from_slice(pair.public_key().as_ref());
        let key = Dnskey::parse(&key_rdata).expect("valid DNSKEY rdata");
        let ds_digest = ds_sha256(&zone, &key_rdata);
        let mut ds_rdata = key.tag.to_be_bytes().to_vec();
        ds_rdata.extend_from_slice(&[15, 2]);
        ds_rdata.extend_from_slice(&ds_digest);
        let ds = Ds::parse(&ds_rdata).expect("valid DS rdata");
        assert!(ds_matches(&zone, &key_rdata, &ds, &policy), "ds_sha256 output does not match its own key");

        let labels = owner.label_count() as u8;
        let mut rdata = rt.to_be_bytes().to_vec();
        rdata.extend_from_slice(&[15, labels]);
        rdata.extend_from_slice(&real.original_ttl.to_be_bytes());
        let (since, lasts) = (real.valid_since % (1 << 30), real.valid_for % (1 << 30));
        rdata.extend_from_slice(&input.now.wrapping_add(lasts).to_be_bytes());
        rdata.extend_from_slice(&input.now.wrapping_sub(since).to_be_bytes());
        rdata.extend_from_slice(&key.tag.to_be_bytes());
        rdata.extend_from_slice(zone.as_wire());
        let data = signing_input(&rdata, &owner, real.original_ttl, &rrset);
        rdata.extend_from_slice(pair.sign(&data).as_ref());
        rrsigs.push(Record {
            name: owner.clone(),
            rtype: rtype::RRSIG,
            class: input.class,
            ttl: 0,
            rdata: rdata.into(),
        });
        keys.push((key, key_rdata));
        real_expected = true;
    }
    for k in input.keys.iter().take(16) {
        let mut rdata = k.flags.to_be_bytes().to_vec();
        rdata.push(k.protocol.unwrap_or(3));
        rdata.push(k.algorithm.get());
        rdata.extend_from_slice(&k.public_key[..k.public_key.len().min(1100)]);
        let Ok(mut key) = Dnskey::parse(&rdata) else { continue };
        if let Some(t) = k.forced_tag {
            key.tag = t;
        }
        keys.push((key, rdata));
    }
    let root = Name::root();
    for s in input.sigs.iter().take(16) {
        let rdata = match &s.raw_rdata {
            Some(r) => r.clone(),
            None => {
                let tag = match s.tag {
                    TagIn::Key(i) if !keys.is_empty() => keys[usize::from(i) % keys.len()].0.tag,
                    TagIn::Key(i) => u16::from(i),
                    TagIn::Raw(t) => t,
                };
                let mut r = s.type_covered.unwrap_or(rt).to_be_bytes().to_vec();
                r.push(s.algorithm.get());
                r.push(s.labels.unwrap_or(owner.label_count() as u8));
                r.extend_from_slice(&s.original_ttl.to_be_bytes());
                r.extend_from_slice(&s.expiration.to_be_bytes());
                r.extend_from_slice(&s.inception.to_be_bytes());
                r.extend_from_slice(&tag.to_be_bytes());
                r.extend_from_slice(if s.other_signer { root.as_wire() } else { zone.as_wire() });
                r.extend_from_slice(&s.signature[..s.signature.len().min(600)]);
                r
            }
        };
        let name = if s.other_owner { zone.clone() } else { owner.clone() };
        if let Ok(sig) = Rrsig::parse(&rdata) {
            let _ = signed_owner(&owner, &sig);
            let _ = signed_data(&rdata, &sig, &rrset);
        }
        rrsigs.push(Record { name, rtype: rtype::RRSIG, class: input.class, ttl: 0, rdata: rdata.into() });
    }
    let dnskeys: Vec<Dnskey> = keys.iter().map(|(k, _)| k.clone()).collect();

    for d in input.ds.iter().take(8) {
        if let Ok(ds) = Ds::parse(d) {
            for (_, rdata) in keys.iter().take(8) {
                let m = ds_matches(&zone, rdata, &ds, &policy);
                assert!(!m || ds.key_tag == key_tag(rdata));
            }
        }
    }

    let budget_start = u32::from(input.budget % 64);

    let budget = WorkBudget::new(budget_start);
    let result = dnssec::verify_rrset(&rrset, &rrsigs, &dnskeys, &zone, input.now, &policy, &budget);
    check_budget(&result, &budget, budget_start);
    if real_expected && budget_start >= 1 {
        let v = result.as_ref().expect("a correct Ed25519 signature placed first did not verify");
        assert_eq!(usize::from(v.labels), owner.label_count());
    }

    let budget = WorkBudget::new(budget_start);
    let result = dnssec::verify_rrset_unexpanded(&rrset, &rrsigs, &dnskeys, &zone, input.now, &policy, &budget);
    check_budget(&result, &budget, budget_start);
    if real_expected && budget_start >= 1 && !owner.is_wildcard() {
        assert!(result.is_ok(), "unexpanded verification refused a signature over the owner itself: {result:?}");
    }
});

fn check_budget<T: std::fmt::Debug>(result: &Result<T, Bogus>, budget: &WorkBudget, start: u32) {
    let left = budget.left();
    assert!(left <= start);
    assert!(start - left <= MOST_PER_CALL, "spent {} verifications on one RRset", start - left);
    if matches!(result, Err(Bogus::Budget { .. })) {
        assert_eq!(left, 0, "Bogus::Budget with budget left");
    }
    if let Err(e) = result {
        let _ = (e.ede_code(), e.to_string());
    }
}

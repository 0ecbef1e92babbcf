//! DNSSEC validation during iteration (RFC 4035 §5): the trust of each zone
//! cut, fetching and checking DNSKEY sets, the DS (or its proven absence) at
//! each referral, and the checks of answers and negative answers.

use std::sync::Arc;

use dnssec::nsec::{parse_nsecs, prove_no_ds, prove_nodata, prove_nxdomain, prove_wildcard_expansion};
use dnssec::nsec3::{self, Nsec3Set, Proven};
use dnssec::{AlgorithmPolicy, Bogus, Dnskey, Ds, WorkBudget, ds_matches, verify_rrset, verify_rrset_unexpanded};
use proto::{Name, Record, rtype};

/// The DNSSEC status of a resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    /// Validated from a trust anchor: AD may be set.
    Secure,
    /// Provably unsigned (an insecure delegation, or only unsupported
    /// algorithms).
    Insecure,
    /// Validation failed: SERVFAIL with this reason unless the client set CD.
    Bogus(Bogus),
    /// Insecure because the zone uses only algorithms or digests we do not
    /// support: answered without AD, with this EDE (1 or 2).
    Unsupported(proto::Ede),
    /// Not validated (validation off, or a proof we cannot check yet).
    Indeterminate,
}

impl Security {
    /// The weaker of two statuses: bogus, then indeterminate, then
    /// insecure, then secure.
    pub fn combine(self, other: Security) -> Security {
        fn rank(s: &Security) -> u8 {
            match s {
                Security::Secure => 0,
                Security::Insecure | Security::Unsupported(_) => 1,
                Security::Indeterminate => 2,
                Security::Bogus(_) => 3,
            }
        }
        if rank(&other) > rank(&self) { other } else { self }
    }

    pub(crate) fn to_cache(&self) -> cache::Security {
        match self {
            Security::Secure => cache::Security::Secure,
            Security::Insecure | Security::Unsupported(_) => cache::Security::Insecure,
            Security::Bogus(_) => cache::Security::Bogus,
            Security::Indeterminate => cache::Security::Unchecked,
        }
    }

    pub(crate) fn from_cache(s: cache::Security, what: impl FnOnce() -> String) -> Security {
        match s {
            cache::Security::Secure => Security::Secure,
            cache::Security::Insecure => Security::Insecure,
            cache::Security::Unchecked => Security::Indeterminate,
            cache::Security::Bogus => Security::Bogus(Bogus::Cached { rrset: what() }),
        }
    }
}

/// Validation settings.
#[derive(Debug, Clone)]
pub struct ValidationConfig {
    /// Trust anchors: DS or DNSKEY records (the root's, or a subtree's).
    pub trust_anchors: Vec<Record>,
    /// Which algorithms and digests count as supported.
    pub policy: AlgorithmPolicy,
    /// Signature checks one client query may cost (KeyTrap bound).
    pub max_verifications: u32,
    /// Negative trust anchors (RFC 7646): domains, with everything below
    /// them, treated as insecure whatever their signatures say.
    pub negative_trust_anchors: Vec<Name>,
    /// Negative trust anchors added while running (`onedot ctl nta`),
    /// shared by every clone of this config.
    pub runtime_anchors: RuntimeAnchors,
}

/// Negative trust anchors an operator adds and removes while serving
/// (RFC 7646 section 9: they are meant to be temporary), shared.
#[derive(Debug, Clone, Default)]
pub struct RuntimeAnchors(std::sync::Arc<std::sync::RwLock<Vec<Name>>>);

impl RuntimeAnchors {
    /// Adds `name`; false if it was there.
    pub fn add(&self, name: Name) -> bool {
        let mut v = self.0.write().unwrap_or_else(|e| e.into_inner());
        if v.contains(&name) {
            return false;
        }
        v.push(name);
        true
    }

    /// Removes `name`; false if it was not there.
    pub fn remove(&self, name: &Name) -> bool {
        let mut v = self.0.write().unwrap_or_else(|e| e.into_inner());
        let before = v.len();
        v.retain(|n| n != name);
        v.len() != before
    }

    /// The anchors now.
    pub fn list(&self) -> Vec<Name> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn covers(&self, name: &Name) -> bool {
        let v = self.0.read().unwrap_or_else(|e| e.into_inner());
        !v.is_empty() && v.iter().any(|nta| name.is_subdomain_of(nta))
    }
}

impl ValidationConfig {
    /// Whether `name` is at or below a negative trust anchor (configured
    /// or added while running).
    pub fn under_negative_anchor(&self, name: &Name) -> bool {
        self.negative_trust_anchors.iter().any(|nta| name.is_subdomain_of(nta)) || self.runtime_anchors.covers(name)
    }

    /// Validation from the given anchors with default limits.
    pub fn with_anchors(trust_anchors: Vec<Record>) -> ValidationConfig {
        ValidationConfig {
            trust_anchors,
            policy: AlgorithmPolicy::default(),
            max_verifications: 256,
            negative_trust_anchors: Vec::new(),
            runtime_anchors: RuntimeAnchors::default(),
        }
    }
}

/// What is known about a zone's keys.
#[derive(Debug, Clone)]
pub(crate) enum ZoneTrust {
    /// Validation is off.
    Off,
    /// Its DNSKEYs must match one of these DS (checked with the parent's
    /// keys) or be one of these anchor keys; not fetched yet.
    Pending { ds: Arc<Vec<Ds>>, anchor_keys: Arc<Vec<Box<[u8]>>> },
    /// Its validated DNSKEY set.
    Keys(Arc<Vec<Dnskey>>),
    /// Provably unsigned.
    Insecure,
    /// Signed only with algorithms or digests we do not support.
    Unsupported(proto::Ede),
    /// Its keys could not be validated.
    Bogus(Bogus),
}

impl ZoneTrust {
    /// The trust a configured anchor gives `zone`, if any anchor is for it.
    pub(crate) fn from_anchors(anchors: &[Record], zone: &Name) -> Option<ZoneTrust> {
        let ds: Vec<Ds> = anchors
            .iter()
            .filter(|r| &r.name == zone && r.rtype == rtype::DS)
            .filter_map(|r| Ds::parse(&r.rdata).ok())
            .collect();
        let keys: Vec<Box<[u8]>> =
            anchors.iter().filter(|r| &r.name == zone && r.rtype == rtype::DNSKEY).map(|r| r.rdata.clone()).collect();
        if ds.is_empty() && keys.is_empty() {
            return None;
        }
        Some(ZoneTrust::Pending { ds: Arc::new(ds), anchor_keys: Arc::new(keys) })
    }
}

fn now32(now: u64) -> u32 {
    now as u32
}

/// Checks a fetched DNSKEY RRset against the DS set or anchor keys: some
/// key must match, and that key must sign the set. Returns the keys and the
/// TTL they may be trusted for.
// Each argument is an input of the check (data, trust, policy, time, budget).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_dnskeys(
    zone: &Name,
    dnskeys: &[Record],
    sigs: &[Record],
    ds: &[Ds],
    anchor_keys: &[Box<[u8]>],
    policy: &AlgorithmPolicy,
    now: u64,
    budget: &WorkBudget,
) -> Result<(ZoneTrust, u32), Bogus> {
    let usable_ds: Vec<&Ds> =
        ds.iter().filter(|d| policy.supports(d.algorithm) && policy.supports_digest(d.digest_type)).collect();
    if anchor_keys.is_empty() && usable_ds.is_empty() {
        // Only algorithms or digests we do not support: insecure (RFC 4035
        // §5.2), said with EDE 1 or 2.
        let (code, what) = if ds.iter().any(|d| !policy.supports(d.algorithm)) {
            (proto::ede::code::UNSUPPORTED_DNSKEY_ALGORITHM, "DNSKEY algorithm")
        } else {
            (proto::ede::code::UNSUPPORTED_DS_DIGEST, "DS digest type")
        };
        let list: Vec<String> = ds.iter().map(|d| format!("{}/{}", d.algorithm, d.digest_type)).collect();
        let ede =
            proto::Ede::new(code, format!("{zone} uses an unsupported {what} (algorithm/digest {})", list.join(",")));
        return Ok((ZoneTrust::Unsupported(ede), 3600));
    }
    let keys: Vec<Dnskey> = dnskeys.iter().filter_map(|r| Dnskey::parse(&r.rdata).ok()).collect();
    let trusted: Vec<Dnskey> = dnskeys
        .iter()
        .filter(|r| {
            anchor_keys.iter().any(|a| **a == *r.rdata)
                || usable_ds.iter().any(|d| ds_matches(zone, &r.rdata, d, policy))
        })
        .filter_map(|r| Dnskey::parse(&r.rdata).ok())
        .collect();
    if trusted.is_empty() {
        let tags: Vec<String> = usable_ds.iter().map(|d| d.key_tag.to_string()).collect();
        return Err(Bogus::DnskeyMissing { zone: zone.to_string(), what: format!("DS key tags {}", tags.join(",")) });
    }
    // Keys the policy will not use (RSA below the floor) make the zone
    // insecure like an unsupported algorithm, not bogus: when every key the
    // chain of trust reaches is one, or every key of the zone is.
    let weak = |k: &Dnskey| policy.weak_key(k);
    if let Some(why) =
        trusted.iter().find_map(weak).filter(|_| trusted.iter().all(|k| weak(k).is_some())).or_else(|| {
            keys.iter()
                .find_map(weak)
                .filter(|_| keys.iter().all(|k| weak(k).is_some() || !policy.supports(k.algorithm)))
        })
    {
        let ede = proto::Ede::new(
            proto::ede::code::UNSUPPORTED_DNSKEY_ALGORITHM,
            format!("{zone} is signed only with keys below the validation policy: {why}"),
        );
        return Ok((ZoneTrust::Unsupported(ede), 3600));
    }
    let ttl = verify_rrset_unexpanded(dnskeys, sigs, &trusted, zone, now32(now), policy, budget)?.ttl;
    Ok((ZoneTrust::Keys(Arc::new(keys)), ttl))
}

/// The trust of `child` given its parent's and the referral's DS/NSEC
/// records (with their RRSIGs).
pub(crate) fn child_trust(
    parent: &ZoneTrust,
    parent_zone: &Name,
    child: &Name,
    dnssec_records: &[Record],
    policy: &AlgorithmPolicy,
    now: u64,
    budget: &WorkBudget,
) -> ZoneTrust {
    let keys = match parent {
        ZoneTrust::Keys(k) => k,
        ZoneTrust::Off => return ZoneTrust::Off,
        ZoneTrust::Insecure | ZoneTrust::Unsupported(_) => return ZoneTrust::Insecure,
        ZoneTrust::Bogus(b) => return ZoneTrust::Bogus(b.clone()),
        ZoneTrust::Pending { .. } => {
            return ZoneTrust::Bogus(Bogus::DnskeyMissing {
                zone: parent_zone.to_string(),
                what: "keys not fetched".into(),
            });
        }
    };
    let ds_set: Vec<Record> =
        dnssec_records.iter().filter(|r| r.rtype == rtype::DS && &r.name == child).cloned().collect();
    if !ds_set.is_empty() {
        return match verify_rrset_unexpanded(&ds_set, dnssec_records, keys, parent_zone, now32(now), policy, budget) {
            Ok(_) => ZoneTrust::Pending {
                ds: Arc::new(ds_set.iter().filter_map(|r| Ds::parse(&r.rdata).ok()).collect()),
                anchor_keys: Arc::new(Vec::new()),
            },
            Err(b) => ZoneTrust::Bogus(b),
        };
    }
    if dnssec_records.iter().any(|r| r.rtype == rtype::NSEC3) {
        return match verified_nsec3s(dnssec_records, keys, parent_zone, now, policy, budget) {
            Ok(set) => match nsec3::prove_no_ds(child, &set) {
                Ok(_) => ZoneTrust::Insecure,
                Err(b) => ZoneTrust::Bogus(b),
            },
            Err(b) => ZoneTrust::Bogus(b),
        };
    }
    match verified_nsecs(dnssec_records, keys, parent_zone, now, policy, budget) {
        Ok(nsecs) => match prove_no_ds(child, &parse_nsecs(&nsecs)) {
            Ok(()) => ZoneTrust::Insecure,
            Err(b) => ZoneTrust::Bogus(b),
        },
        Err(b) => ZoneTrust::Bogus(b),
    }
}

/// Whether `records`, a denial already validated, prove `child` an
/// insecure delegation: the NSEC at it lists NS but neither DS nor SOA, or
/// the NSEC3 matching it does, or an opt-out span covers it.
pub(crate) fn proves_insecure_cut(child: &Name, records: &[Record]) -> bool {
    let nsec3: Vec<Record> = records.iter().filter(|r| r.rtype == rtype::NSEC3).cloned().collect();
    if !nsec3.is_empty() {
        let zone = records
            .iter()
            .filter(|r| r.rtype == rtype::RRSIG)
            .find_map(|s| dnssec::Rrsig::parse(&s.rdata).ok())
            .map(|s| s.signer);
        return zone.is_some_and(|z| nsec3::prove_no_ds(child, &Nsec3Set::new(&z, &nsec3)).is_ok());
    }
    let nsecs: Vec<Record> = records.iter().filter(|r| r.rtype == rtype::NSEC).cloned().collect();
    prove_no_ds(child, &parse_nsecs(&nsecs)).is_ok()
}

/// The NSEC records of `records` whose RRsets verify with `keys`.
fn verified_nsecs(
    records: &[Record],
    keys: &[Dnskey],
    zone: &Name,
    now: u64,
    policy: &AlgorithmPolicy,
    budget: &WorkBudget,
) -> Result<Vec<Record>, Bogus> {
    verified_of(rtype::NSEC, records, keys, zone, now, policy, budget)
}

/// The NSEC3 records of `records`, verified, as a set for `zone`.
fn verified_nsec3s(
    records: &[Record],
    keys: &[Dnskey],
    zone: &Name,
    now: u64,
    policy: &AlgorithmPolicy,
    budget: &WorkBudget,
) -> Result<Nsec3Set, Bogus> {
    let verified = verified_of(rtype::NSEC3, records, keys, zone, now, policy, budget)?;
    Ok(Nsec3Set::new(zone, &verified))
}

/// What an NSEC3 proof means for the answer's security.
fn nsec3_security(zone: &Name, proven: Proven) -> Security {
    match proven {
        Proven::Secure => Security::Secure,
        Proven::OptOut => Security::Insecure,
        Proven::TooManyIterations => Security::Unsupported(proto::Ede::new(
            proto::ede::code::UNSUPPORTED_NSEC3_ITERATIONS,
            format!("{zone} uses more than {} NSEC3 iterations", nsec3::MAX_ITERATIONS),
        )),
    }
}

/// The records of type `t` in `records` whose RRsets verify with `keys`.
fn verified_of(
    t: u16,
    records: &[Record],
    keys: &[Dnskey],
    zone: &Name,
    now: u64,
    policy: &AlgorithmPolicy,
    budget: &WorkBudget,
) -> Result<Vec<Record>, Bogus> {
    let nsecs: Vec<&Record> = records.iter().filter(|r| r.rtype == t).collect();
    let mut out = Vec::new();
    for r in &nsecs {
        if out.iter().any(|x: &Record| x.name == r.name) {
            continue;
        }
        let set: Vec<Record> = nsecs.iter().filter(|x| x.name == r.name).map(|x| (*x).clone()).collect();
        verify_rrset_unexpanded(&set, records, keys, zone, now32(now), policy, budget)?;
        out.extend(set);
    }
    Ok(out)
}

/// Validates an answer chain from `zone` (all of it inside the zone).
// Each argument is an input of the check (data, trust, policy, time, budget).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_answer(
    trust: &ZoneTrust,
    zone: &Name,
    chain: &mut [Record],
    sigs: &[Record],
    authority: &[Record],
    policy: &AlgorithmPolicy,
    now: u64,
    budget: &WorkBudget,
) -> Security {
    let keys = match trust {
        ZoneTrust::Keys(k) => k,
        ZoneTrust::Off => return Security::Indeterminate,
        ZoneTrust::Insecure => return Security::Insecure,
        ZoneTrust::Unsupported(e) => return Security::Unsupported(e.clone()),
        ZoneTrust::Bogus(b) => return Security::Bogus(b.clone()),
        ZoneTrust::Pending { .. } => return Security::Indeterminate,
    };
    // CNAMEs synthesised from a DNAME are not signed; the DNAME is.
    let dnames: Vec<Name> = chain.iter().filter(|r| r.rtype == rtype::DNAME).map(|r| r.name.clone()).collect();
    let mut checked: Vec<(Name, u16)> = Vec::new();
    for i in 0..chain.len() {
        let r = chain[i].clone();
        if checked.contains(&(r.name.clone(), r.rtype)) {
            continue;
        }
        checked.push((r.name.clone(), r.rtype));
        if r.rtype == rtype::CNAME && dnames.iter().any(|d| r.name.is_subdomain_of(d) && r.name != *d) {
            continue;
        }
        let set: Vec<Record> = chain.iter().filter(|x| x.name == r.name && x.rtype == r.rtype).cloned().collect();
        let verified = match verify_rrset(&set, sigs, keys, zone, now32(now), policy, budget) {
            Ok(v) => v,
            Err(b) => return Security::Bogus(b),
        };
        // Cached no longer than the signature allows (RFC 4035 §5.3.3).
        for x in chain.iter_mut().filter(|x| x.name == r.name && x.rtype == r.rtype) {
            x.ttl = x.ttl.min(verified.ttl);
        }
        // A wildcard expansion: the signature that verified has fewer labels
        // than the owner (a literal `*` owner does not count its `*`).
        let labels = verified.labels as usize;
        let own = r.name.label_count() - usize::from(r.name.is_wildcard());
        let expanded = labels < own;
        if expanded && authority.iter().any(|r| r.rtype == rtype::NSEC3) {
            let set = match verified_nsec3s(authority, keys, zone, now, policy, budget) {
                Ok(set) => set,
                Err(b) => return Security::Bogus(b),
            };
            match nsec3::prove_wildcard_expansion(&r.name, labels, &set) {
                Ok(Proven::Secure) => {}
                Ok(p) => return nsec3_security(zone, p),
                Err(b) => return Security::Bogus(b),
            }
        } else if expanded {
            let proof = match verified_nsecs(authority, keys, zone, now, policy, budget) {
                Ok(p) => p,
                Err(b) => return Security::Bogus(b),
            };
            if let Err(b) = prove_wildcard_expansion(&r.name, labels, &parse_nsecs(&proof)) {
                return Security::Bogus(b);
            }
        }
    }
    Security::Secure
}

/// Validates a negative answer for (qname, qtype) from `zone`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_negative(
    trust: &ZoneTrust,
    zone: &Name,
    qname: &Name,
    qtype: u16,
    nxdomain: bool,
    soa: Option<&Record>,
    proof: &[Record],
    policy: &AlgorithmPolicy,
    now: u64,
    budget: &WorkBudget,
) -> Security {
    let keys = match trust {
        ZoneTrust::Keys(k) => k,
        ZoneTrust::Off | ZoneTrust::Pending { .. } => return Security::Indeterminate,
        ZoneTrust::Insecure => return Security::Insecure,
        ZoneTrust::Unsupported(e) => return Security::Unsupported(e.clone()),
        ZoneTrust::Bogus(b) => return Security::Bogus(b.clone()),
    };
    // The SOA sets the negative TTL and is served with AD: it must verify.
    if let Some(soa) = soa
        && let Err(b) =
            verify_rrset_unexpanded(std::slice::from_ref(soa), proof, keys, zone, now32(now), policy, budget)
    {
        return Security::Bogus(b);
    }
    if proof.iter().any(|r| r.rtype == rtype::NSEC3) && !proof.iter().any(|r| r.rtype == rtype::NSEC) {
        let set = match verified_nsec3s(proof, keys, zone, now, policy, budget) {
            Ok(set) => set,
            Err(b) => return Security::Bogus(b),
        };
        let result =
            if nxdomain { nsec3::prove_nxdomain(qname, &set) } else { nsec3::prove_nodata(qname, qtype, &set) };
        return match result {
            Ok(p) => nsec3_security(zone, p),
            Err(b) => Security::Bogus(b),
        };
    }
    let nsecs = match verified_nsecs(proof, keys, zone, now, policy, budget) {
        Ok(n) => parse_nsecs(&n),
        Err(b) => return Security::Bogus(b),
    };
    let result = if nxdomain { prove_nxdomain(qname, &nsecs) } else { prove_nodata(qname, qtype, &nsecs) };
    match result {
        Ok(()) => Security::Secure,
        Err(b) => Security::Bogus(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RSA/SHA-256 DNSKEY (flags 257) with exponent 65537 and a modulus
    /// of `bits` bits (not a real key: the policy decides before any
    /// signature is checked).
    fn rsa_key(bits: usize) -> Record {
        let mut rdata = vec![1, 1, 3, 8, 3, 1, 0, 1];
        let mut modulus = vec![0xc5u8; bits / 8];
        modulus[0] = 0x80;
        rdata.extend_from_slice(&modulus);
        Record { name: Name::root(), rtype: rtype::DNSKEY, class: 1, ttl: 3600, rdata: rdata.into() }
    }

    fn ds_for(key: &Record) -> Ds {
        let mut rdata = dnssec::key_tag(&key.rdata).to_be_bytes().to_vec();
        rdata.extend_from_slice(&[8, 2]);
        rdata.extend_from_slice(&dnssec::verify::ds_sha256(&key.name, &key.rdata));
        Ds::parse(&rdata).expect("DS")
    }

    /// Issue 18 item 2: a zone whose only key is RSA below the policy's
    /// floor is insecure with EDE 1, not bogus (before: DNSKEY bogus, as the
    /// key could not verify its own set).
    #[test]
    fn keys_below_the_rsa_floor_make_a_zone_insecure() {
        assert_eq!(dnssec::verify::rsa_modulus_bits(&rsa_key(512).rdata[4..]), Some(512));
        let policy = AlgorithmPolicy::default();
        let budget = WorkBudget::new(16);
        let weak = rsa_key(512);
        let got =
            check_dnskeys(&Name::root(), std::slice::from_ref(&weak), &[], &[ds_for(&weak)], &[], &policy, 0, &budget);
        match got {
            Ok((ZoneTrust::Unsupported(ede), _)) => {
                assert_eq!(ede.code, proto::ede::code::UNSUPPORTED_DNSKEY_ALGORITHM);
                assert!(ede.text.contains("512-bit"), "{}", ede.text);
            }
            other => panic!("want insecure (unsupported), got {other:?}"),
        }
        // At the floor the key is used: with no signature, the set is bogus.
        let strong = rsa_key(1024);
        let got = check_dnskeys(
            &Name::root(),
            std::slice::from_ref(&strong),
            &[],
            &[ds_for(&strong)],
            &[],
            &policy,
            0,
            &budget,
        );
        assert!(got.is_err(), "a 1024-bit key is validated with");
        // A lower floor takes the 512-bit key.
        let low = AlgorithmPolicy { min_rsa_bits: 512, ..policy };
        let got =
            check_dnskeys(&Name::root(), std::slice::from_ref(&weak), &[], &[ds_for(&weak)], &[], &low, 0, &budget);
        assert!(got.is_err(), "a 512-bit key is validated with when allowed");
    }
}

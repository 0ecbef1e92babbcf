//! Signing the lab (DNSSEC): keys generated at load, DNSKEY at every signed
//! apex, DS in the parent, an NSEC chain and RRSIGs over every
//! authoritative RRset. `zones/dnssec.toml` names zones that are unsigned
//! or broken on purpose.

use std::collections::HashMap;

use dnssec::canonical::{compare_names, signing_input};
use dnssec::records::make_bitmap;
use proto::{Name, Record, rtype};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde::Deserialize;

use crate::zone::Zone;

/// How a zone is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Signing {
    /// Signed correctly (the default).
    Signed,
    /// Not signed; the parent has no DS (an insecure delegation).
    Unsigned,
    /// Signed, but the signature over `www` A is corrupted.
    BadSignature,
    /// Every signature expired a day ago.
    Expired,
    /// Every signature starts being valid in a month.
    NotYetValid,
    /// The parent's DS is for a key the zone does not publish.
    DsMismatch,
    /// DNSKEY published, no RRSIG at all.
    NoSignatures,
    /// The only DNSKEY has flags 1 (SEP, no zone key bit).
    NoZoneBit,
    /// Signed without an NSEC chain.
    NoNsec,
    /// Keys, signatures and DS of an unassigned algorithm (100).
    UnsupportedAlgorithm,
    /// Signed normally, but the DS has an unassigned digest type (99).
    UnsupportedDigest,
    /// Built like the KeyTrap attacks (2023/2024): 50 extra DNSKEYs sharing
    /// the real key's tag, and 20 signatures under that tag on every RRset,
    /// none of them valid (the DNSKEY set also carries its real signature).
    KeyTrap,
    /// NSEC3 (no salt, no extra iterations, RFC 9276) instead of NSEC.
    Nsec3,
    /// NSEC3 with opt-out: insecure delegations are left out of the chain.
    Nsec3OptOut,
    /// NSEC3 with 200 extra iterations (above RFC 9276's limits).
    Nsec3Iterations,
    /// Mid-rollover: a new key published beside the old one; the parent's
    /// DS names the old key; the DNSKEY set is signed by both and every
    /// other RRset by the new key only.
    Rollover,
}

/// Fake keys and signatures per RRset of the KeyTrap zone.
const KEYTRAP_KEYS: usize = 50;
const KEYTRAP_SIGS: usize = 20;

/// DNSKEY rdata for algorithm `alg` whose key tag is `tag`: random key
/// bytes, the last 16-bit word chosen to make the checksum come out right.
fn colliding_key(alg: u8, tag: u16, rng: &SystemRandom) -> Result<Vec<u8>, String> {
    let mut rdata = vec![1, 1, 3, alg];
    let mut key = vec![0u8; 64];
    ring::rand::SecureRandom::fill(rng, &mut key).map_err(|e| e.to_string())?;
    rdata.extend_from_slice(&key);
    // The tag is a folded sum of 16-bit words (RFC 4034 Appendix B): sum
    // all but the last word once, then pick the last word.
    let n = rdata.len();
    let partial: u32 =
        rdata[..n - 2].chunks(2).map(|w| u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0))).sum();
    for w in 0..=u16::MAX {
        let ac = partial + u32::from(w);
        if ((ac + ((ac >> 16) & 0xffff)) & 0xffff) as u16 == tag {
            rdata[n - 2..].copy_from_slice(&w.to_be_bytes());
            debug_assert_eq!(dnssec::key_tag(&rdata), tag);
            return Ok(rdata);
        }
    }
    Err("no colliding key tag".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    zone: Vec<PolicyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    name: String,
    signing: Signing,
}

/// Parses `dnssec.toml`.
pub fn parse_policies(text: &str) -> Result<HashMap<Name, Signing>, String> {
    let file: PolicyFile = toml::from_str(text).map_err(|e| e.to_string())?;
    file.zone
        .into_iter()
        .map(|e| Name::from_ascii(&e.name).map(|n| (n, e.signing)).map_err(|e| e.to_string()))
        .collect()
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A zone's signing key (a combined KSK/ZSK, flags 257). Without a key
/// pair it is a fake of an algorithm nobody implements, signing with noise.
struct ZoneKey {
    algorithm: u8,
    pair: Option<Pair>,
    rdata: Vec<u8>,
    tag: u16,
}

/// The unassigned algorithm number the lab fakes for "unsupported".
const FAKE_ALGORITHM: u8 = 100;

impl ZoneKey {
    fn generate(algorithm: u8, flags: u16, rng: &SystemRandom) -> Result<ZoneKey, String> {
        let err = |e: ring::error::Unspecified| format!("key generation: {e}");
        if algorithm == FAKE_ALGORITHM {
            let mut public = vec![0u8; 32];
            ring::rand::SecureRandom::fill(rng, &mut public).map_err(err)?;
            let mut rdata = flags.to_be_bytes().to_vec();
            rdata.extend_from_slice(&[3, FAKE_ALGORITHM]);
            rdata.extend_from_slice(&public);
            let tag = dnssec::key_tag(&rdata);
            return Ok(ZoneKey { algorithm, pair: None, rdata, tag });
        }
        let (pair, public): (Pair, Vec<u8>) = match algorithm {
            15 => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(rng).map_err(err)?;
                let kp = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
                let public = kp.public_key().as_ref().to_vec();
                (Pair::Ed25519(kp), public)
            }
            _ => {
                let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, rng).map_err(err)?;
                let kp = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng).map_err(|e| e.to_string())?;
                // DNSSEC carries x || y without the 0x04 prefix (RFC 6605).
                let public = kp.public_key().as_ref()[1..].to_vec();
                (Pair::Ecdsa(kp), public)
            }
        };
        let algorithm = if algorithm == 15 { 15 } else { 13 };
        let mut rdata = flags.to_be_bytes().to_vec();
        rdata.extend_from_slice(&[3, algorithm]);
        rdata.extend_from_slice(&public);
        let tag = dnssec::key_tag(&rdata);
        Ok(ZoneKey { algorithm, pair: Some(pair), rdata, tag })
    }

    fn sign(&self, data: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, String> {
        match &self.pair {
            Some(Pair::Ecdsa(kp)) => kp.sign(rng, data).map(|s| s.as_ref().to_vec()).map_err(|e| e.to_string()),
            Some(Pair::Ed25519(kp)) => Ok(kp.sign(data).as_ref().to_vec()),
            None => {
                let mut noise = vec![0u8; 64];
                ring::rand::SecureRandom::fill(rng, &mut noise).map_err(|e| e.to_string())?;
                Ok(noise)
            }
        }
    }
}

/// Signs the lab's zones in place. Returns the root's DNSKEY record (the
/// lab's trust anchor), or `None` when the root is unsigned.
pub fn sign_lab(
    zones: &mut [(String, Zone)],
    policies: &HashMap<Name, Signing>,
    now: u32,
) -> Result<Option<Record>, String> {
    let rng = SystemRandom::new();
    let policy = |apex: &Name| policies.get(apex).copied().unwrap_or(Signing::Signed);
    // Keys: Ed25519 for the zones under lab., ECDSA P-256 elsewhere.
    let lab_tld = Name::from_ascii("lab").map_err(|e| e.to_string())?;
    let mut keys: Vec<Option<ZoneKey>> = Vec::with_capacity(zones.len());
    for (_, z) in zones.iter() {
        keys.push(match policy(z.apex()) {
            Signing::Unsigned => None,
            p => {
                let alg = if p == Signing::UnsupportedAlgorithm {
                    FAKE_ALGORITHM
                } else if z.apex().is_subdomain_of(&lab_tld) && z.apex() != &lab_tld {
                    15
                } else {
                    13
                };
                let flags = if p == Signing::NoZoneBit { 1 } else { 257 };
                Some(ZoneKey::generate(alg, flags, &rng)?)
            }
        });
    }
    let mut records: Vec<Vec<Record>> = zones.iter().map(|(_, z)| z.records().cloned().collect()).collect();
    // DNSKEY at each signed apex; DS for it in the parent.
    for i in 0..zones.len() {
        let Some(key) = &keys[i] else { continue };
        let apex = zones[i].1.apex().clone();
        records[i].push(Record {
            name: apex.clone(),
            rtype: rtype::DNSKEY,
            class: 1,
            ttl: 3600,
            rdata: key.rdata.clone().into(),
        });
        if let Some(p) = parent_of(zones, i) {
            let ns_ttl = zones[p].1.rrset(&apex, rtype::NS).first().map_or(3600, |r| r.ttl);
            let policy = policy(&apex);
            // For ds-mismatch the DS is for a key the zone never publishes.
            let other;
            let ds_key = if policy == Signing::DsMismatch {
                other = ZoneKey::generate(key.algorithm, 257, &rng)?;
                &other
            } else {
                key
            };
            let mut ds = ds_key.tag.to_be_bytes().to_vec();
            if policy == Signing::UnsupportedDigest {
                ds.extend_from_slice(&[ds_key.algorithm, 99]);
            } else {
                ds.extend_from_slice(&[ds_key.algorithm, 2]);
            }
            ds.extend_from_slice(&dnssec::verify::ds_sha256(&apex, &ds_key.rdata));
            records[p].push(Record { name: apex, rtype: rtype::DS, class: 1, ttl: ns_ttl, rdata: ds.into() });
        }
    }
    let mut anchor = None;
    for i in 0..zones.len() {
        let Some(key) = &keys[i] else {
            zones[i].1 = Zone::from_records(std::mem::take(&mut records[i]))?;
            continue;
        };
        let apex = zones[i].1.apex().clone();
        let signed = sign_zone(&apex, std::mem::take(&mut records[i]), key, policy(&apex), now, &rng)?;
        zones[i].1 = Zone::from_records(signed)?;
        if apex.is_root() {
            anchor = zones[i].1.rrset(&apex, rtype::DNSKEY).into_iter().next();
        }
    }
    Ok(anchor)
}

/// The NSEC3 chain (RFC 5155 §7.1) of a zone: NSEC3PARAM at the apex, and
/// one NSEC3 per authoritative name and empty non-terminal (opt-out leaves
/// out delegations without DS).
fn nsec3_chain(
    apex: &Name,
    records: &[Record],
    cuts: &[Name],
    iterations: u16,
    opt_out: bool,
    ttl: u32,
) -> Result<Vec<Record>, String> {
    let occluded = |n: &Name| cuts.iter().any(|c| n.is_subdomain_of(c) && n != c);
    let insecure_cut = |n: &Name| cuts.contains(n) && !records.iter().any(|r| &r.name == n && r.rtype == rtype::DS);
    let mut names: Vec<Name> = Vec::new();
    for r in records.iter().filter(|r| !occluded(&r.name)) {
        if opt_out && insecure_cut(&r.name) {
            continue;
        }
        let mut n = r.name.clone();
        loop {
            if !names.contains(&n) {
                names.push(n.clone());
            }
            if &n == apex {
                break;
            }
            match n.parent() {
                Some(p) => n = p,
                None => break,
            }
        }
    }
    let mut hashed: Vec<(Vec<u8>, Name)> =
        names.into_iter().map(|n| (dnssec::nsec3::hash(&n, &[], iterations), n)).collect();
    hashed.sort();
    let mut out = Vec::new();
    let flags = u8::from(opt_out);
    for (i, (h, name)) in hashed.iter().enumerate() {
        let next = &hashed[(i + 1) % hashed.len()].0;
        let mut types: Vec<u16> = records.iter().filter(|r| &r.name == name).map(|r| r.rtype).collect();
        if cuts.contains(name) {
            types.retain(|t| *t == rtype::NS || *t == rtype::DS);
        }
        if types.iter().any(|t| *t != rtype::NS || !cuts.contains(name)) && !types.is_empty() {
            types.push(rtype::RRSIG);
        }
        if name == apex {
            types.push(rtype::NSEC3PARAM);
        }
        let mut rdata = vec![1, flags];
        rdata.extend_from_slice(&iterations.to_be_bytes());
        rdata.push(0); // no salt (RFC 9276)
        rdata.push(next.len() as u8);
        rdata.extend_from_slice(next);
        rdata.extend(make_bitmap(&types));
        let owner = apex.prepend(dnssec::nsec3::base32hex(h).as_bytes()).map_err(|e| e.to_string())?;
        out.push(Record { name: owner, rtype: rtype::NSEC3, class: 1, ttl, rdata: rdata.into() });
    }
    let mut param = vec![1, 0];
    param.extend_from_slice(&iterations.to_be_bytes());
    param.push(0);
    out.push(Record { name: apex.clone(), rtype: rtype::NSEC3PARAM, class: 1, ttl: 0, rdata: param.into() });
    Ok(out)
}

/// The zone that delegates zone `i` (the deepest enclosing zone with NS at
/// its apex).
fn parent_of(zones: &[(String, Zone)], i: usize) -> Option<usize> {
    let apex = zones[i].1.apex();
    zones
        .iter()
        .enumerate()
        .filter(|(j, (_, z))| *j != i && apex.is_subdomain_of(z.apex()) && apex != z.apex())
        .filter(|(_, (_, z))| !z.rrset(apex, rtype::NS).is_empty())
        .max_by_key(|(_, (_, z))| z.apex().label_count())
        .map(|(j, _)| j)
}

fn sign_zone(
    apex: &Name,
    mut records: Vec<Record>,
    key: &ZoneKey,
    policy: Signing,
    now: u32,
    rng: &SystemRandom,
) -> Result<Vec<Record>, String> {
    let cuts: Vec<Name> =
        records.iter().filter(|r| r.rtype == rtype::NS && r.name != *apex).map(|r| r.name.clone()).collect();
    let occluded = |n: &Name| cuts.iter().any(|c| n.is_subdomain_of(c) && n != c);
    let soa = records.iter().find(|r| r.rtype == rtype::SOA).cloned().ok_or("no SOA")?;
    let nsec_ttl = soa.soa_negative_ttl().unwrap_or(300);
    // The NSEC chain over every authoritative owner name.
    let mut owners: Vec<Name> = records.iter().map(|r| r.name.clone()).filter(|n| !occluded(n)).collect();
    let nsec3 = match policy {
        Signing::Nsec3 => Some((0u16, false)),
        Signing::Nsec3OptOut => Some((0, true)),
        Signing::Nsec3Iterations => Some((200, false)),
        _ => None,
    };
    if policy == Signing::NoNsec || nsec3.is_some() {
        owners.clear();
    }
    if let Some((iterations, opt_out)) = nsec3 {
        records.extend(nsec3_chain(apex, &records, &cuts, iterations, opt_out, nsec_ttl)?);
    }
    owners.sort_by(compare_names);
    owners.dedup();
    for (i, owner) in owners.iter().enumerate() {
        let next = &owners[(i + 1) % owners.len()];
        let mut types: Vec<u16> = records.iter().filter(|r| &r.name == owner).map(|r| r.rtype).collect();
        types.extend([rtype::NSEC, rtype::RRSIG]);
        let mut rdata = next.as_wire().to_vec();
        rdata.extend(make_bitmap(&types));
        records.push(Record { name: owner.clone(), rtype: rtype::NSEC, class: 1, ttl: nsec_ttl, rdata: rdata.into() });
    }
    let (inception, expiration) = match policy {
        Signing::Expired => (now.wrapping_sub(30 * 86_400), now.wrapping_sub(86_400)),
        Signing::NotYetValid => (now.wrapping_add(30 * 86_400), now.wrapping_add(60 * 86_400)),
        _ => (now.wrapping_sub(3_600), now.wrapping_add(30 * 86_400)),
    };
    if policy == Signing::KeyTrap {
        for _ in 0..KEYTRAP_KEYS {
            let rdata = colliding_key(key.algorithm, key.tag, rng)?;
            records.push(Record { name: apex.clone(), rtype: rtype::DNSKEY, class: 1, ttl: 3600, rdata: rdata.into() });
        }
    }
    let new_key = if policy == Signing::Rollover {
        let k = ZoneKey::generate(key.algorithm, 257, rng)?;
        records.push(Record {
            name: apex.clone(),
            rtype: rtype::DNSKEY,
            class: 1,
            ttl: 3600,
            rdata: k.rdata.clone().into(),
        });
        Some(k)
    } else {
        None
    };
    // Group into RRsets and sign the authoritative ones.
    let mut sets: Vec<Vec<Record>> = Vec::new();
    for r in &records {
        match sets.iter_mut().find(|s| s[0].name == r.name && s[0].rtype == r.rtype) {
            Some(s) => s.push(r.clone()),
            None => sets.push(vec![r.clone()]),
        }
    }
    let www = apex.prepend(b"www").map_err(|e| e.to_string())?;
    if policy == Signing::NoSignatures {
        return Ok(records);
    }

    for set in sets {
        let (owner, t) = (&set[0].name, set[0].rtype);
        let at_cut = cuts.contains(owner);
        if occluded(owner) || (at_cut && t != rtype::DS && t != rtype::NSEC) {
            continue;
        }
        let labels = owner.label_count() - usize::from(owner.is_wildcard());
        let ttl = set[0].ttl;
        // Mid-rollover: the new key signs everything, the old one the keys.
        if let Some(new) = &new_key {
            let mut signers = vec![new];
            if t == rtype::DNSKEY {
                signers.push(key);
            }
            for k in signers {
                let mut rdata = t.to_be_bytes().to_vec();
                rdata.extend_from_slice(&[k.algorithm, labels as u8]);
                rdata.extend_from_slice(&ttl.to_be_bytes());
                rdata.extend_from_slice(&expiration.to_be_bytes());
                rdata.extend_from_slice(&inception.to_be_bytes());
                rdata.extend_from_slice(&k.tag.to_be_bytes());
                rdata.extend_from_slice(apex.as_wire());
                let signature = k.sign(&signing_input(&rdata, owner, ttl, &set), rng)?;
                rdata.extend_from_slice(&signature);
                records.push(Record { name: owner.clone(), rtype: rtype::RRSIG, class: 1, ttl, rdata: rdata.into() });
            }
            continue;
        }
        let mut rdata = t.to_be_bytes().to_vec();
        rdata.extend_from_slice(&[key.algorithm, labels as u8]);
        rdata.extend_from_slice(&ttl.to_be_bytes());
        rdata.extend_from_slice(&expiration.to_be_bytes());
        rdata.extend_from_slice(&inception.to_be_bytes());
        rdata.extend_from_slice(&key.tag.to_be_bytes());
        rdata.extend_from_slice(apex.as_wire());
        let mut signature = key.sign(&signing_input(&rdata, owner, ttl, &set), rng)?;
        if policy == Signing::BadSignature
            && *owner == www
            && t == rtype::A
            && let Some(b) = signature.last_mut()
        {
            *b ^= 0xff;
        }
        if policy == Signing::KeyTrap {
            // Junk signatures under the shared tag; only the DNSKEY set keeps
            // its real one (first, as a real zone would have it).
            let prefix = rdata.clone();
            if t == rtype::DNSKEY {
                rdata.extend_from_slice(&signature);
                records.push(Record { name: owner.clone(), rtype: rtype::RRSIG, class: 1, ttl, rdata: rdata.into() });
            }
            for _ in 0..KEYTRAP_SIGS {
                let mut junk = prefix.clone();
                let mut noise = vec![0u8; signature.len()];
                ring::rand::SecureRandom::fill(rng, &mut noise).map_err(|e| e.to_string())?;
                junk.extend_from_slice(&noise);
                records.push(Record { name: owner.clone(), rtype: rtype::RRSIG, class: 1, ttl, rdata: junk.into() });
            }
            continue;
        }
        rdata.extend_from_slice(&signature);
        records.push(Record { name: owner.clone(), rtype: rtype::RRSIG, class: 1, ttl, rdata: rdata.into() });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LabData;
    use dnssec::{AlgorithmPolicy, Dnskey, Ds, WorkBudget, ds_matches, verify_rrset};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn now() -> u32 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
    }

    /// A zone verifier: every signed zone chains to the root anchor through
    /// DS, and every authoritative RRset verifies, but in the zones broken
    /// on purpose, which fail exactly as dnssec.toml says.
    #[test]
    fn every_signed_rrset_verifies_from_the_root_anchor() {
        let lab = LabData::builtin().expect("lab");
        let anchor = lab.trust_anchor.clone().expect("the root is signed");
        let policy = AlgorithmPolicy::default();
        let budget = WorkBudget::new(u32::MAX);
        let zone_of = |apex: &Name| lab.zones.iter().map(|(_, z)| z).find(|z| z.apex() == apex).expect("zone");
        let mut verified = 0;
        let mut failures: HashMap<String, Vec<u16>> = HashMap::new();
        for (_, zone) in &lab.zones {
            let apex = zone.apex();
            let label = apex.labels().next().map(|l| String::from_utf8_lossy(l).into_owned()).unwrap_or_default();
            let keys_rrset = zone.rrset(apex, rtype::DNSKEY);
            if keys_rrset.is_empty() {
                // Insecure delegations, provable from the parent.
                if [n("unsigned.test"), n("ecs.test"), n("noecs.test")].contains(apex) {
                    let parent = zone_of(&n("test"));
                    let nsecs = dnssec::nsec::parse_nsecs(&parent.rrset(apex, rtype::NSEC));
                    dnssec::nsec::prove_no_ds(apex, &nsecs).expect("insecure delegation is provable");
                } else {
                    assert_eq!(apex, &n("child.optout.test"), "unexpected unsigned zone");
                    let parent = zone_of(&n("optout.test"));
                    let nsec3s: Vec<Record> = parent.records().filter(|r| r.rtype == rtype::NSEC3).cloned().collect();
                    let set = dnssec::nsec3::Nsec3Set::new(parent.apex(), &nsec3s);
                    assert_eq!(dnssec::nsec3::prove_no_ds(apex, &set), Ok(dnssec::nsec3::Proven::OptOut));
                }
                continue;
            }
            // The DNSKEY is pointed at by the parent's DS (or is the anchor).
            if apex.is_root() {
                assert_eq!(keys_rrset[0].rdata, anchor.rdata);
            } else {
                let parent = lab
                    .zones
                    .iter()
                    .map(|(_, z)| z)
                    .filter(|z| {
                        apex.is_subdomain_of(z.apex()) && z.apex() != apex && !z.rrset(apex, rtype::DS).is_empty()
                    })
                    .max_by_key(|z| z.apex().label_count())
                    .expect("a parent with DS");
                let ds = Ds::parse(&parent.rrset(apex, rtype::DS)[0].rdata).expect("DS");
                let matches = ds_matches(apex, &keys_rrset[0].rdata, &ds, &policy);
                let broken_ds = matches!(label.as_str(), "nokey" | "baddigest");
                assert_eq!(matches, !broken_ds, "DS of {apex}");
            }
            let keys: Vec<Dnskey> = keys_rrset.iter().map(|r| Dnskey::parse(&r.rdata).expect("key")).collect();
            let sigs: Vec<Record> = zone.records().filter(|r| r.rtype == rtype::RRSIG).cloned().collect();
            if label == "nosig" {
                assert!(sigs.is_empty());
            }
            if label == "nonsec" {
                assert!(zone.records().all(|r| r.rtype != rtype::NSEC));
            }
            let mut sets: Vec<Vec<Record>> = Vec::new();
            for r in zone.records().filter(|r| r.rtype != rtype::RRSIG) {
                match sets.iter_mut().find(|s| s[0].name == r.name && s[0].rtype == r.rtype) {
                    Some(s) => s.push(r.clone()),
                    None => sets.push(vec![r.clone()]),
                }
            }
            for set in sets {
                let covering: Vec<Record> = sigs
                    .iter()
                    .filter(|s| s.name == set[0].name && s.rdata[..2] == set[0].rtype.to_be_bytes())
                    .cloned()
                    .collect();
                if covering.is_empty() {
                    continue; // delegation NS and glue are not signed
                }
                match verify_rrset(&set, &covering, &keys, apex, now(), &policy, &budget) {
                    Ok(_) => verified += 1,
                    Err(e) => failures.entry(label.clone()).or_default().push(e.ede_code()),
                }
            }
        }
        assert!(verified > 5000, "verified {verified} RRsets");
        let mut zones: Vec<&String> = failures.keys().collect();
        zones.sort();
        assert_eq!(zones, ["bogus", "expired", "keytrap", "notyet", "nozonebit", "unsupported"], "{failures:?}");
        use proto::ede::code;
        assert_eq!(failures["bogus"], [code::DNSSEC_BOGUS], "only www.bogus.test A");
        assert!(failures["expired"].iter().all(|&c| c == code::SIGNATURE_EXPIRED));
        assert!(failures["notyet"].iter().all(|&c| c == code::SIGNATURE_NOT_YET_VALID));
        assert!(failures["nozonebit"].iter().all(|&c| c == code::NO_ZONE_KEY_BIT));
        // Algorithm 100 is nobody's: no key is even tried.
        assert!(failures["unsupported"].iter().all(|&c| c == code::DNSKEY_MISSING));
    }

    /// An NSEC signed at a wildcard owner verifies as an "expansion" at any
    /// name below it; NSEC is never synthesised, so the validator must only
    /// accept signatures made over the owner itself.
    #[test]
    fn a_wildcard_nsec_moved_to_another_owner_does_not_verify() {
        let lab = LabData::builtin().expect("lab");
        let (_, zone) = lab.zones.iter().find(|(_, z)| z.apex() == &n("z005.test")).expect("zone");
        let keys: Vec<Dnskey> =
            zone.rrset(zone.apex(), rtype::DNSKEY).iter().map(|r| Dnskey::parse(&r.rdata).expect("key")).collect();
        let wild = n("*.wild.z005.test");
        let moved = n("www.wild.z005.test");
        let nsec: Vec<Record> =
            zone.rrset(&wild, rtype::NSEC).into_iter().map(|r| Record { name: moved.clone(), ..r }).collect();
        let sigs: Vec<Record> = zone
            .rrset(&wild, rtype::RRSIG)
            .into_iter()
            .filter(|r| r.rdata[..2] == rtype::NSEC.to_be_bytes())
            .map(|r| Record { name: moved.clone(), ..r })
            .collect();
        let (policy, budget) = (AlgorithmPolicy::default(), WorkBudget::new(100));
        assert!(
            verify_rrset(&nsec, &sigs, &keys, zone.apex(), now(), &policy, &budget).is_ok(),
            "as an expansion it verifies"
        );
        assert!(dnssec::verify_rrset_unexpanded(&nsec, &sigs, &keys, zone.apex(), now(), &policy, &budget).is_err());
    }

    #[test]
    fn expiry_and_inception_are_checked() {
        let lab = LabData::builtin().expect("lab");
        let (_, zone) = lab.zones.iter().find(|(_, z)| z.apex() == &n("example.test")).expect("zone");
        let keys: Vec<Dnskey> =
            zone.rrset(zone.apex(), rtype::DNSKEY).iter().map(|r| Dnskey::parse(&r.rdata).expect("key")).collect();
        let www = zone.rrset(&n("www.example.test"), rtype::A);
        let sigs: Vec<Record> = zone.rrset(&n("www.example.test"), rtype::RRSIG);
        let policy = AlgorithmPolicy::default();
        let budget = WorkBudget::new(100);
        let late = verify_rrset(&www, &sigs, &keys, zone.apex(), now().wrapping_add(40 * 86_400), &policy, &budget);
        assert_eq!(late.map_err(|e| e.ede_code()), Err(proto::ede::code::SIGNATURE_EXPIRED));
        let early = verify_rrset(&www, &sigs, &keys, zone.apex(), now().wrapping_sub(86_400), &policy, &budget);
        assert_eq!(early.map_err(|e| e.ede_code()), Err(proto::ede::code::SIGNATURE_NOT_YET_VALID));
        let none = verify_rrset(&www, &[], &keys, zone.apex(), now(), &policy, &budget);
        assert_eq!(none.map_err(|e| e.ede_code()), Err(proto::ede::code::RRSIGS_MISSING));
        let other: Vec<Dnskey> = lab.zones[0]
            .1
            .rrset(lab.zones[0].1.apex(), rtype::DNSKEY)
            .iter()
            .map(|r| Dnskey::parse(&r.rdata).expect("key"))
            .collect();
        let wrong = verify_rrset(&www, &sigs, &other, zone.apex(), now(), &policy, &budget);
        assert_eq!(wrong.map_err(|e| e.ede_code()), Err(proto::ede::code::DNSKEY_MISSING));
        // KeyTrap: with no budget left nothing is verified.
        let empty = WorkBudget::new(0);
        let starved = verify_rrset(&www, &sigs, &keys, zone.apex(), now(), &policy, &empty);
        assert!(matches!(starved, Err(dnssec::Bogus::Budget { .. })));
    }
}

//! RRSIG verification and DS matching.

use std::sync::atomic::{AtomicU32, Ordering};

use domain::base::iana::SecurityAlgorithm;
use domain::crypto::common::PublicKey;
use proto::{Name, Record, rtype};

use crate::Bogus;
use crate::canonical::signed_data;
use crate::records::{Dnskey, Ds, Rrsig};

/// Which algorithms and keys count as supported (RFC 8624; a zone signed
/// only with unsupported algorithms or keys is insecure, RFC 4035 §5.2,
/// never bogus).
///
/// Defaults, and why: the SHA-1 algorithms (5, 7) and SHA-1 DS digests are
/// off. RFC 9905 (2025) deprecates SHA-1 in DNSSEC and leaves validating
/// it optional; Unbound and BIND still validate it where their crypto
/// library allows, while systems whose crypto policy forbids SHA-1
/// signatures (RHEL 9 and its kin) make such zones insecure. A public
/// resolver gains nothing from trusting a broken hash, so onedot takes the
/// second way: insecure with EDE 1, never bogus (`allow_sha1` turns them
/// on). RSA keys below 1024 bits are not used (RFC 3110 allows 512, but
/// OpenSSL-based validators and ring refuse them); such a zone is insecure
/// too, not bogus (`min_rsa_bits` raises the floor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgorithmPolicy {
    /// Accept RSASHA1 (5) and RSASHA1-NSEC3-SHA1 (7).
    pub allow_sha1: bool,
    /// Smallest RSA modulus, in bits, of a key we validate with.
    pub min_rsa_bits: u32,
}

/// The default RSA floor, in bits.
pub const DEFAULT_MIN_RSA_BITS: u32 = 1024;

impl Default for AlgorithmPolicy {
    fn default() -> Self {
        AlgorithmPolicy { allow_sha1: false, min_rsa_bits: DEFAULT_MIN_RSA_BITS }
    }
}

/// The modulus length in bits of an RSA public key in DNSKEY form (RFC
/// 3110 §2: exponent length in one octet, or zero and two octets, then the
/// exponent, then the modulus), or `None` when it is not one.
pub fn rsa_modulus_bits(public_key: &[u8]) -> Option<u32> {
    let (exp_len, rest) = match public_key.split_first()? {
        (0, rest) => {
            let (len, rest) = rest.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([*len.first()?, *len.get(1)?])), rest)
        }
        (n, rest) => (usize::from(*n), rest),
    };
    let modulus = rest.get(exp_len..)?;
    let first = modulus.iter().position(|b| *b != 0)?;
    let significant = modulus.get(first..)?;
    let lead = significant.first()?.leading_zeros();
    Some(significant.len() as u32 * 8 - lead)
}

impl AlgorithmPolicy {
    /// Why this policy will not validate with `key` although its algorithm
    /// is supported (an RSA modulus below the floor), or `None`.
    pub fn weak_key(&self, key: &Dnskey) -> Option<String> {
        if !matches!(key.algorithm, 5 | 7 | 8 | 10) {
            return None;
        }
        match rsa_modulus_bits(&key.public_key) {
            Some(bits) if bits >= self.min_rsa_bits => None,
            Some(bits) => Some(format!("a {bits}-bit RSA key (the floor is {})", self.min_rsa_bits)),
            None => Some("a malformed RSA key".to_string()),
        }
    }

    /// Whether DNSKEY algorithm `alg` is one we validate.
    pub fn supports(&self, alg: u8) -> bool {
        match alg {
            8 | 10 | 13 | 14 | 15 => true,
            5 | 7 => self.allow_sha1,
            _ => false,
        }
    }

    /// Whether DS digest type `t` is one we check (2 SHA-256, 4 SHA-384;
    /// 1 SHA-1 only with `allow_sha1`).
    pub fn supports_digest(&self, t: u8) -> bool {
        match t {
            2 | 4 => true,
            1 => self.allow_sha1,
            _ => false,
        }
    }
}

/// How many signature verifications a resolution may spend. Shared (by
/// reference) across all RRsets of one resolution so a zone crafted with
/// many colliding keys and signatures (KeyTrap) costs a bounded amount.
#[derive(Debug)]
pub struct WorkBudget {
    left: AtomicU32,
}

impl WorkBudget {
    /// A budget of `verifications` signature checks.
    pub fn new(verifications: u32) -> WorkBudget {
        WorkBudget { left: AtomicU32::new(verifications) }
    }

    fn spend(&self) -> bool {
        self.left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    /// Verifications left.
    pub fn left(&self) -> u32 {
        self.left.load(Ordering::Relaxed)
    }
}

/// Most signatures tried per RRset, and most keys per signature (RFC 9364
/// leaves this to implementations; these match what resolvers adopted after
/// KeyTrap).
pub const MAX_SIGS_PER_RRSET: usize = 8;
/// See [`MAX_SIGS_PER_RRSET`].
pub const MAX_KEYS_PER_SIG: usize = 4;

/// Is `now` within [inception, expiration] in serial arithmetic (RFC 1982)?
fn serial_le(a: u32, b: u32) -> bool {
    a == b || (b.wrapping_sub(a) as i32) > 0
}

fn describe(rrset: &[Record]) -> String {
    rrset.first().map_or_else(String::new, |r| format!("{} {}", r.name, rtype::name(r.rtype).unwrap_or("?")))
}

/// What a successful verification established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// How long the RRset may be cached: bounded by the RRSIG's original TTL
    /// and its expiration (RFC 4035 §5.3.3).
    pub ttl: u32,
    /// The Labels field of the signature that verified: fewer than the
    /// owner's labels means the RRset was expanded from a wildcard.
    pub labels: u8,
}

/// As [`verify_rrset`], but only with signatures made over the owner name
/// itself, never a wildcard expansion: for NSEC, NSEC3, DS, DNSKEY and SOA,
/// which can never be synthesised (a wildcard NSEC's signature must not
/// verify the same NSEC moved to another owner).
pub fn verify_rrset_unexpanded(
    rrset: &[Record],
    rrsigs: &[Record],
    keys: &[Dnskey],
    zone: &Name,
    now: u32,
    policy: &AlgorithmPolicy,
    budget: &WorkBudget,
) -> Result<Verified, Bogus> {
    let Some(first) = rrset.first() else { return Err(Bogus::RrsigsMissing { rrset: String::new() }) };
    let own = first.name.label_count() - usize::from(first.name.is_wildcard());
    let sigs: Vec<Record> =
        rrsigs.iter().filter(|r| Rrsig::parse(&r.rdata).is_ok_and(|s| s.labels as usize == own)).cloned().collect();
    verify_rrset(rrset, &sigs, keys, zone, now, policy, budget)
}

/// Verifies `rrset` with the signatures in `rrsigs` (RRSIG records covering
/// its type) against `keys` (the validated DNSKEYs of `zone`). Returns how
/// long the RRset may be cached and which signature (by its labels)
/// verified it.
pub fn verify_rrset(
    rrset: &[Record],
    rrsigs: &[Record],
    keys: &[Dnskey],
    zone: &Name,
    now: u32,
    policy: &AlgorithmPolicy,
    budget: &WorkBudget,
) -> Result<Verified, Bogus> {
    let Some(first) = rrset.first() else {
        return Err(Bogus::RrsigsMissing { rrset: String::new() });
    };
    let what = || describe(rrset);
    let sigs: Vec<(Rrsig, &[u8])> = rrsigs
        .iter()
        .filter(|r| r.rtype == rtype::RRSIG && r.name == first.name)
        .filter_map(|r| Rrsig::parse(&r.rdata).ok().map(|s| (s, &*r.rdata)))
        .filter(|(s, _)| s.type_covered == first.rtype && &s.signer == zone)
        .take(MAX_SIGS_PER_RRSET)
        .collect();
    if sigs.is_empty() {
        return Err(Bogus::RrsigsMissing { rrset: what() });
    }
    let mut last: Option<Bogus> = None;
    let mut tried = Vec::new();
    for (sig, rdata) in &sigs {
        if !policy.supports(sig.algorithm) {
            continue;
        }
        if !serial_le(sig.inception, now) {
            last = Some(Bogus::SignatureNotYetValid { rrset: what(), zone: zone.to_string(), tag: sig.key_tag });
            continue;
        }
        if !serial_le(now, sig.expiration) {
            last = Some(Bogus::SignatureExpired { rrset: what(), zone: zone.to_string(), tag: sig.key_tag });
            continue;
        }
        let candidates = keys
            .iter()
            .filter(|k| k.tag == sig.key_tag && k.algorithm == sig.algorithm && k.protocol == 3 && !k.is_revoked())
            .take(MAX_KEYS_PER_SIG);
        let Some(data) = signed_data(rdata, sig, rrset) else { continue };
        for key in candidates {
            if !key.is_zone_key() {
                last = Some(Bogus::NoZoneKeyBit { zone: zone.to_string(), tag: key.tag });
                continue;
            }
            let remaining = sig.expiration.wrapping_sub(now);
            let verified = Verified { ttl: sig.original_ttl.min(first.ttl).min(remaining), labels: sig.labels };
            let fingerprint = crate::memo::fingerprint(key, &data, &sig.signature);
            if crate::memo::verified(&fingerprint) {
                return Ok(verified);
            }
            if !budget.spend() {
                return Err(Bogus::Budget { rrset: what() });
            }
            tried.push(key.tag);
            if check(key, &data, &sig.signature) {
                crate::memo::remember(fingerprint);
                return Ok(verified);
            }
        }
    }
    if !tried.is_empty() {
        let mut tags: Vec<u16> = tried.clone();
        tags.sort_unstable();
        tags.dedup();
        let tags: Vec<String> = tags.iter().map(u16::to_string).collect();
        let checks = tried.len();
        return Err(Bogus::BadSignature { rrset: what(), tags: format!("{}; {checks} checks", tags.join(",")) });
    }
    Err(last.unwrap_or_else(|| Bogus::DnskeyMissing {
        zone: zone.to_string(),
        what: format!(
            "signature key tags {}",
            sigs.iter().map(|(s, _)| s.key_tag.to_string()).collect::<Vec<_>>().join(",")
        ),
    }))
}

/// Checks one signature with one key.
fn check(key: &Dnskey, data: &[u8], signature: &[u8]) -> bool {
    let Ok(dk) = domain::rdata::Dnskey::new(
        key.flags,
        key.protocol,
        SecurityAlgorithm::from_int(key.algorithm),
        key.public_key.to_vec(),
    ) else {
        return false;
    };
    match PublicKey::from_dnskey(&dk) {
        Ok(pk) => pk.verify(data, signature).is_ok(),
        Err(_) => false,
    }
}

/// Whether `ds` is the digest of DNSKEY rdata `key_rdata` owned by `owner`.
pub fn ds_matches(owner: &Name, key_rdata: &[u8], ds: &Ds, policy: &AlgorithmPolicy) -> bool {
    if !policy.supports_digest(ds.digest_type) || crate::key_tag(key_rdata) != ds.key_tag {
        return false;
    }
    if key_rdata.get(3) != Some(&ds.algorithm) {
        return false;
    }
    let alg = match ds.digest_type {
        1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        2 => &ring::digest::SHA256,
        4 => &ring::digest::SHA384,
        _ => return false,
    };
    let mut ctx = ring::digest::Context::new(alg);
    ctx.update(owner.as_wire());
    ctx.update(key_rdata);
    ctx.finish().as_ref() == &*ds.digest
}

/// The DS digest (type 2, SHA-256) of a DNSKEY, for signers.
pub fn ds_sha256(owner: &Name, key_rdata: &[u8]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(owner.as_wire());
    ctx.update(key_rdata);
    ctx.finish().as_ref().to_vec()
}

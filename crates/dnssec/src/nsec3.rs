//! NSEC3 denial-of-existence proofs (RFC 5155 §8, RFC 7129 §5), with the
//! iteration limit of RFC 9276.
//!
//! As with NSEC, the records handed in must already be verified.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use proto::{Name, Record, WireError, rtype};

use crate::Bogus;
use crate::records::bitmap_has;

/// Above this many extra iterations a zone is treated as insecure (RFC 9276
/// §3.2; EDE 27 Unsupported NSEC3 Iterations Value).
pub const MAX_ITERATIONS: u16 = 150;
/// Most NSEC3 records looked at per proof.
const MAX_NSEC3S: usize = 16;

/// An NSEC3 (RFC 5155 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nsec3 {
    /// Hash algorithm (1 = SHA-1).
    pub hash_algorithm: u8,
    /// Flags; bit 0 is opt-out.
    pub flags: u8,
    /// Extra hash iterations.
    pub iterations: u16,
    /// Salt.
    pub salt: Box<[u8]>,
    /// The next hashed owner, raw bytes.
    pub next_hash: Box<[u8]>,
    /// Type bitmap.
    pub bitmap: Box<[u8]>,
}

impl Nsec3 {
    /// Parses NSEC3 rdata.
    pub fn parse(rdata: &[u8]) -> Result<Nsec3, WireError> {
        let get = |i: usize| rdata.get(i).copied().ok_or(WireError::BadRdata);
        let (hash_algorithm, flags) = (get(0)?, get(1)?);
        let iterations = u16::from_be_bytes([get(2)?, get(3)?]);
        let salt_len = get(4)? as usize;
        let salt = rdata.get(5..5 + salt_len).ok_or(WireError::BadRdata)?;
        let hash_len = get(5 + salt_len)? as usize;
        let start = 6 + salt_len;
        let next_hash = rdata.get(start..start + hash_len).ok_or(WireError::BadRdata)?;
        if hash_len == 0 {
            return Err(WireError::BadRdata);
        }
        Ok(Nsec3 {
            hash_algorithm,
            flags,
            iterations,
            salt: salt.into(),
            next_hash: next_hash.into(),
            bitmap: rdata.get(start + hash_len..).ok_or(WireError::BadRdata)?.into(),
        })
    }

    /// Whether the opt-out flag is set.
    pub fn opt_out(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Whether the bitmap lists `t`.
    pub fn has_type(&self, t: u16) -> bool {
        bitmap_has(&self.bitmap, t)
    }
}

/// The NSEC3 hash of `name` (RFC 5155 §5): SHA-1 over the canonical name
/// and salt, then `iterations` more times over the digest and salt.
pub fn hash(name: &Name, salt: &[u8], iterations: u16) -> Vec<u8> {
    let alg = &ring::digest::SHA1_FOR_LEGACY_USE_ONLY;
    let mut ctx = ring::digest::Context::new(alg);
    ctx.update(name.as_wire());
    ctx.update(salt);
    let mut digest = ctx.finish();
    for _ in 0..iterations {
        let mut ctx = ring::digest::Context::new(alg);
        ctx.update(digest.as_ref());
        ctx.update(salt);
        digest = ctx.finish();
    }
    digest.as_ref().to_vec()
}

const B32HEX: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";

/// Base32hex without padding, lower case (RFC 4648 §7), as NSEC3 owners use.
pub fn base32hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 8 / 5 + 1);
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in data {
        buf = (buf << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(b32_digit(buf >> bits));
        }
    }
    if bits > 0 {
        out.push(b32_digit(buf << (5 - bits)));
    }
    out
}

/// The base32hex digit of the low five bits of `v`.
// Cannot fail: `v & 31 < 32 == B32HEX.len()`.
#[allow(clippy::indexing_slicing)]
fn b32_digit(v: u32) -> char {
    B32HEX[(v & 31) as usize] as char
}

/// Decodes base32hex (either case); `None` on a bad character.
pub fn base32hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    let (mut buf, mut bits, mut out) = (0u32, 0u32, Vec::with_capacity(text.len() * 5 / 8));
    for &c in text {
        let v = B32HEX.iter().position(|&x| x == c.to_ascii_lowercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    Some(out)
}

/// The verified NSEC3 records of a response, with their owner hashes, all of
/// one parameter set.
#[derive(Debug, Clone)]
pub struct Nsec3Set {
    zone: Name,
    entries: Vec<(Vec<u8>, Nsec3)>,
}

/// What an NSEC3 proof established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proven {
    /// The claim holds.
    Secure,
    /// An opt-out span covers the name: it may exist unsigned (insecure).
    OptOut,
    /// Too many iterations to check (RFC 9276): treat as insecure, EDE 27.
    TooManyIterations,
}

impl Nsec3Set {
    /// Collects the NSEC3 records of `records` for `zone`.
    pub fn new(zone: &Name, records: &[Record]) -> Nsec3Set {
        let entries = records
            .iter()
            .filter(|r| r.rtype == rtype::NSEC3 && r.name.parent().as_ref() == Some(zone))
            .filter_map(|r| {
                let label = r.name.labels().next()?;
                Some((base32hex_decode(label)?, Nsec3::parse(&r.rdata).ok()?))
            })
            .filter(|(_, n)| n.hash_algorithm == 1 && n.flags <= 1)
            .take(MAX_NSEC3S)
            .collect::<Vec<_>>();
        // One parameter set per proof (RFC 5155 §8.2): the first record's.
        let params = entries.first().map(|(_, n): &(Vec<u8>, Nsec3)| (n.salt.clone(), n.iterations));
        let entries = entries
            .into_iter()
            .filter(|(_, n)| params.as_ref().is_some_and(|(s, i)| *s == n.salt && *i == n.iterations))
            .collect();
        Nsec3Set { zone: zone.clone(), entries }
    }

    /// Whether there are no usable records.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn params(&self) -> Option<(&[u8], u16)> {
        self.entries.first().map(|(_, n)| (&*n.salt, n.iterations))
    }

    /// The hash of `name` with the set's parameters; `None` past
    /// [`MAX_ITERATIONS`], so no caller of [`Nsec3Set::matching`],
    /// [`Nsec3Set::covering`] or [`Nsec3Set::closest_encloser`] can be
    /// made to spend 65,536 SHA-1 rounds per label (the proofs check the
    /// limit first and answer insecure; found reading for the fuzz target).
    fn hash_of(&self, name: &Name) -> Option<Vec<u8>> {
        let (salt, iterations) = self.params()?;
        (iterations <= MAX_ITERATIONS).then(|| hash(name, salt, iterations))
    }

    /// The NSEC3 whose owner is the hash of `name`.
    pub fn matching(&self, name: &Name) -> Option<&Nsec3> {
        let h = self.hash_of(name)?;
        self.entries.iter().find(|(o, _)| *o == h).map(|(_, n)| n)
    }

    /// The NSEC3 whose span covers the hash of `name`.
    pub fn covering(&self, name: &Name) -> Option<&Nsec3> {
        let h = self.hash_of(name)?;
        self.entries
            .iter()
            .find(|(o, n)| {
                let next = &*n.next_hash;
                if o.as_slice() < next {
                    o.as_slice() < h.as_slice() && h.as_slice() < next
                } else {
                    h.as_slice() > o.as_slice() || h.as_slice() < next
                }
            })
            .map(|(_, n)| n)
    }

    fn too_many_iterations(&self) -> bool {
        self.params().is_some_and(|(_, i)| i > MAX_ITERATIONS)
    }

    /// The closest encloser proof (RFC 5155 §8.3): the closest encloser has a
    /// matching NSEC3 and the next closer name is covered. Returns the
    /// closest encloser and the covering NSEC3.
    pub fn closest_encloser(&self, qname: &Name) -> Option<(Name, &Nsec3)> {
        let mut child = qname.clone();
        let mut candidate = qname.parent();
        while let Some(ce) = candidate {
            if !ce.is_subdomain_of(&self.zone) {
                return None;
            }
            if let Some(m) = self.matching(&ce) {
                // A delegation point or DNAME cannot be the closest encloser
                // of names below it (RFC 5155 §8.3).
                if (m.has_type(rtype::NS) && !m.has_type(rtype::SOA)) || m.has_type(rtype::DNAME) {
                    return None;
                }
                return self.covering(&child).map(|c| (ce, c));
            }
            child = ce.clone();
            candidate = ce.parent();
        }
        None
    }
}

fn missing(name: &Name, why: &'static str) -> Bogus {
    Bogus::NsecMissing { name: name.to_string(), why }
}

/// NXDOMAIN (RFC 5155 §8.4): closest encloser proof, and the wildcard at the
/// closest encloser covered.
pub fn prove_nxdomain(qname: &Name, set: &Nsec3Set) -> Result<Proven, Bogus> {
    if set.too_many_iterations() {
        return Ok(Proven::TooManyIterations);
    }
    let (ce, next_closer) =
        set.closest_encloser(qname).ok_or_else(|| missing(qname, "no NSEC3 closest encloser proof"))?;
    let wildcard = ce.prepend(b"*").map_err(|_| missing(qname, "closest encloser too long"))?;
    if set.covering(&wildcard).is_none() {
        return Err(missing(qname, "no NSEC3 covers the wildcard at the closest encloser"));
    }
    Ok(if next_closer.opt_out() { Proven::OptOut } else { Proven::Secure })
}

/// NODATA (RFC 5155 §8.5-8.7): a matching NSEC3 without the type (nor
/// CNAME); for DS also an opt-out span covering the name; or a wildcard
/// NODATA.
pub fn prove_nodata(qname: &Name, qtype: u16, set: &Nsec3Set) -> Result<Proven, Bogus> {
    if set.too_many_iterations() {
        return Ok(Proven::TooManyIterations);
    }
    if let Some(m) = set.matching(qname) {
        if m.has_type(qtype) || m.has_type(rtype::CNAME) {
            return Err(missing(qname, "the matching NSEC3 lists the type"));
        }
        // The right side of a zone cut (RFC 6840 §4.4).
        if qtype != rtype::DS && m.has_type(rtype::NS) && !m.has_type(rtype::SOA) {
            return Err(missing(qname, "a delegation's NSEC3 cannot deny types of the child"));
        }
        if qtype == rtype::DS && m.has_type(rtype::SOA) {
            return Err(missing(qname, "a zone apex NSEC3 cannot deny DS"));
        }
        return Ok(Proven::Secure);
    }
    if let Some((ce, covering)) = set.closest_encloser(qname) {
        if qtype == rtype::DS && covering.opt_out() {
            return Ok(Proven::OptOut);
        }
        if let Ok(w) = ce.prepend(b"*")
            && let Some(wild) = set.matching(&w)
            && !wild.has_type(qtype)
            && !wild.has_type(rtype::CNAME)
        {
            // Under an opt-out span the name itself might be an unsigned
            // delegation, which the wildcard would not answer for (RFC 5155
            // §9.2): only insecure.
            return Ok(if covering.opt_out() { Proven::OptOut } else { Proven::Secure });
        }
    }
    Err(missing(qname, "no NSEC3 proves the type is absent"))
}

/// An insecure delegation (RFC 5155 §8.9): the NSEC3 matching the child
/// lists NS but neither DS nor SOA, or an opt-out span covers it.
pub fn prove_no_ds(child: &Name, set: &Nsec3Set) -> Result<Proven, Bogus> {
    if set.too_many_iterations() {
        return Ok(Proven::TooManyIterations);
    }
    if let Some(m) = set.matching(child) {
        return if m.has_type(rtype::NS) && !m.has_type(rtype::DS) && !m.has_type(rtype::SOA) {
            Ok(Proven::Secure)
        } else {
            Err(missing(child, "the NSEC3 at the delegation does not deny DS"))
        };
    }
    match set.closest_encloser(child) {
        Some((_, covering)) if covering.opt_out() => Ok(Proven::OptOut),
        _ => Err(missing(child, "no NSEC3 at or covering the delegation")),
    }
}

/// A wildcard expansion (RFC 5155 §8.8): the next closer name below the
/// wildcard's parent (`source`, the RRSIG's labels) is covered.
pub fn prove_wildcard_expansion(qname: &Name, source_labels: usize, set: &Nsec3Set) -> Result<Proven, Bogus> {
    if set.too_many_iterations() {
        return Ok(Proven::TooManyIterations);
    }
    let next_closer = qname.suffix(source_labels + 1);
    match set.covering(&next_closer) {
        Some(c) if c.opt_out() => Ok(Proven::OptOut),
        Some(_) => Ok(Proven::Secure),
        None => Err(missing(qname, "no NSEC3 covers the next closer name of the wildcard")),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc5155_appendix_a_hash() {
        // H(example) with salt aabbccdd and 12 iterations.
        let h = hash(&Name::from_ascii("example").expect("name"), &[0xaa, 0xbb, 0xcc, 0xdd], 12);
        assert_eq!(base32hex(&h), "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom");
        assert_eq!(base32hex_decode(b"0P9MHAVEQVM6T7VBL5LOP2U3T2RP3TOM"), Some(h));
    }

    /// The NSEC3 chain of RFC 5155 Appendix A's zone `example` (salt
    /// aabbccdd, 12 iterations, every record opt-out), built by hashing its
    /// names: each owner with the types it holds (empty non-terminals with
    /// none; the unsigned delegation c.example is left out, as opt-out
    /// allows).
    fn appendix_a_chain() -> Vec<Record> {
        use rtype::*;
        let zone = Name::from_ascii("example").expect("name");
        let names: &[(&str, &[u16])] = &[
            ("example", &[NS, SOA, MX, RRSIG, DNSKEY, NSEC3PARAM]),
            ("2t7b4g4vsa5smi47k61mv5bv1a22bojr.example", &[A, RRSIG]),
            ("a.example", &[NS, DS, RRSIG]),
            ("ai.example", &[A, HINFO, AAAA, RRSIG]),
            ("ns1.example", &[A, RRSIG]),
            ("ns2.example", &[A, RRSIG]),
            ("w.example", &[]),
            ("*.w.example", &[MX, RRSIG]),
            ("x.w.example", &[MX, RRSIG]),
            ("y.w.example", &[]),
            ("x.y.w.example", &[MX, RRSIG]),
            ("xx.example", &[A, HINFO, AAAA, RRSIG]),
        ];
        let salt = [0xaa, 0xbb, 0xcc, 0xdd];
        let mut hashed: Vec<(Vec<u8>, &[u16])> =
            names.iter().map(|(n, types)| (hash(&Name::from_ascii(n).expect("name"), &salt, 12), *types)).collect();
        hashed.sort();
        (0..hashed.len())
            .map(|i| {
                let (h, types) = &hashed[i];
                let next = &hashed[(i + 1) % hashed.len()].0;
                let mut rdata = vec![1, 1, 0, 12, 4];
                rdata.extend_from_slice(&salt);
                rdata.push(next.len() as u8);
                rdata.extend_from_slice(next);
                rdata.extend(crate::records::make_bitmap(types));
                let owner = zone.prepend(base32hex(h).as_bytes()).expect("owner");
                Record { name: owner, rtype: rtype::NSEC3, class: 1, ttl: 3600, rdata: rdata.into() }
            })
            .collect()
    }

    /// The proofs of RFC 5155 Appendix B over that chain, and forgeries of
    /// them: each proof holds with the records a server would send, and
    /// fails when one of them is missing or says otherwise.
    #[test]
    fn rfc5155_appendix_b_proofs_and_their_forgeries() {
        let n = |s: &str| Name::from_ascii(s).expect("name");
        let zone = n("example");
        let chain = appendix_a_chain();
        let set = Nsec3Set::new(&zone, &chain);
        // Hashes the RFC publishes for names of the zone.
        let h = |s: &str| base32hex(&hash(&n(s), &[0xaa, 0xbb, 0xcc, 0xdd], 12));
        assert_eq!(h("example"), "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom");
        assert_eq!(h("a.example"), "35mthgpgcu1qg68fab165klnsnk3dpvl");
        assert_eq!(h("ns1.example"), "2t7b4g4vsa5smi47k61mv5bv1a22bojr");
        assert_eq!(h("x.w.example"), "b4um86eghhds6nea196smvmlo4ors995");

        // B.1 Name error: a.c.x.w.example (opt-out spans: not provably
        // secure, but proven).
        assert_eq!(prove_nxdomain(&n("a.c.x.w.example"), &set), Ok(Proven::OptOut));
        // B.2 No data: ns1.example MX; B.2.1 at an empty non-terminal.
        assert_eq!(prove_nodata(&n("ns1.example"), rtype::MX, &set), Ok(Proven::Secure));
        assert_eq!(prove_nodata(&n("y.w.example"), rtype::A, &set), Ok(Proven::Secure));
        // B.3 Referral to an opt-out unsigned zone: no DS for c.example.
        assert_eq!(prove_no_ds(&n("c.example"), &set), Ok(Proven::OptOut));
        // B.4 Wildcard expansion: a.z.w.example from *.w.example.
        assert!(prove_wildcard_expansion(&n("a.z.w.example"), 2, &set).is_ok());
        // B.5 Wildcard no data: a.z.w.example AAAA (*.w.example has MX).
        assert!(prove_nodata(&n("a.z.w.example"), rtype::AAAA, &set).is_ok());
        // B.6 DS child zone no data: the child's apex NSEC3 answering a DS
        // query. The RFC shows what the child's server sends; a validator
        // does not take it, as the DS lives in the parent and the apex
        // record (SOA set) speaks for the child side only (RFC 6840 §4.4).
        assert!(prove_nodata(&zone, rtype::DS, &set).is_err());

        // Forgeries.
        let without = |owner_of: &str| {
            let drop = h(owner_of);
            let kept: Vec<Record> = chain.iter().filter(|r| !r.name.to_string().starts_with(&drop)).cloned().collect();
            Nsec3Set::new(&zone, &kept)
        };
        // An NXDOMAIN for a name that exists (ai.example matches).
        assert!(prove_nxdomain(&n("ai.example"), &set).is_err());
        // A NODATA for a type the name has.
        assert!(prove_nodata(&n("ns1.example"), rtype::A, &set).is_err());
        // The closest encloser's NSEC3 left out.
        assert!(prove_nxdomain(&n("a.c.x.w.example"), &without("x.w.example")).is_err());
        // The matching NSEC3 left out of a NODATA.
        assert!(prove_nodata(&n("ns1.example"), rtype::MX, &without("ns1.example")).is_err());
        // A DS denial for a delegation that has one (a.example lists DS).
        assert!(prove_no_ds(&n("a.example"), &set).is_err());
    }

    #[test]
    fn a_set_past_the_iteration_limit_hashes_nothing() {
        let zone = Name::from_ascii("example.").expect("name");
        let mut rdata = vec![1, 0, 0xff, 0xff, 0, 20];
        rdata.extend_from_slice(&[0xab; 20]);
        rdata.extend_from_slice(&[0, 1, 0x40]);
        let owner = Name::from_ascii(&format!("{}.example.", base32hex(&[0xaa; 20]))).expect("owner");
        let rec = Record { name: owner, rtype: rtype::NSEC3, class: 1, ttl: 60, rdata: rdata.into() };
        let set = Nsec3Set::new(&zone, &[rec]);
        assert!(!set.is_empty(), "the record parses");
        let q = Name::from_ascii("a.b.c.example.").expect("name");
        let t = std::time::Instant::now();
        assert!(set.matching(&q).is_none() && set.covering(&q).is_none() && set.closest_encloser(&q).is_none());
        assert!(t.elapsed() < std::time::Duration::from_millis(50), "no hashing at 65,535 iterations");
    }
}

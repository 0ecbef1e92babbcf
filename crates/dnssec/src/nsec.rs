//! NSEC denial-of-existence proofs (RFC 4035 §5.4, RFC 7129).
//!
//! The NSEC records handed to these functions must already have been
//! verified; these functions only check what they prove.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;

use proto::{Name, Record, rtype};

use crate::Bogus;
use crate::canonical::compare_names;
use crate::records::Nsec;

/// Most NSEC records looked at per proof.
const MAX_NSECS: usize = 16;

/// Parsed NSEC records of a response: (owner, rdata).
pub fn parse_nsecs(records: &[Record]) -> Vec<(Name, Nsec)> {
    records
        .iter()
        .filter(|r| r.rtype == rtype::NSEC)
        .filter_map(|r| Nsec::parse(&r.rdata).ok().map(|n| (r.name.clone(), n)))
        .take(MAX_NSECS)
        .collect()
}

/// Whether the NSEC owner → next covers `name` (owner < name < next), the
/// last NSEC of a zone wrapping around to the apex.
pub fn covers(owner: &Name, next: &Name, name: &Name) -> bool {
    let after_owner = compare_names(owner, name) == Ordering::Less;
    let before_next = compare_names(name, next) == Ordering::Less;
    if compare_names(owner, next) == Ordering::Less {
        after_owner && before_next
    } else {
        // Last NSEC in the chain: next is the apex.
        after_owner && name.is_subdomain_of(next)
    }
}

/// Whether the NSEC at `owner` may deny names below it. One at a
/// delegation point (NS without SOA) or a DNAME speaks for the parent side
/// only: names below it live elsewhere (RFC 4035 §5.4, RFC 6672 §5.3.4).
pub fn can_deny(owner: &Name, nsec: &Nsec, name: &Name) -> bool {
    let below = name.is_subdomain_of(owner) && name != owner;
    !(below && ((nsec.has_type(rtype::NS) && !nsec.has_type(rtype::SOA)) || nsec.has_type(rtype::DNAME)))
}

/// Whether the NSEC at `owner` covers `name` and may deny it. A span whose
/// next name lies below `name` shows `name` is an empty non-terminal: it
/// exists.
fn denies(owner: &Name, nsec: &Nsec, name: &Name) -> bool {
    covers(owner, &nsec.next, name) && can_deny(owner, nsec, name) && !nsec.next.is_subdomain_of(name)
}

/// The longest common ancestor of two names.
fn common_ancestor(a: &Name, b: &Name) -> Name {
    let mut n = a.label_count().min(b.label_count());
    loop {
        let (sa, sb) = (a.suffix(n), b.suffix(n));
        if sa == sb || n == 0 {
            return sa;
        }
        n -= 1;
    }
}

fn missing(name: &Name, why: &'static str) -> Bogus {
    Bogus::NsecMissing { name: name.to_string(), why }
}

/// Proves that `name` does not exist: an NSEC covers it, and an NSEC covers
/// (or shows the absence of) the wildcard at its closest encloser.
pub fn prove_nxdomain(name: &Name, nsecs: &[(Name, Nsec)]) -> Result<(), Bogus> {
    let (owner, nsec) =
        nsecs.iter().find(|(o, n)| denies(o, n, name)).ok_or_else(|| missing(name, "no NSEC covers the name"))?;
    let ce = {
        let a = common_ancestor(name, owner);
        let b = common_ancestor(name, &nsec.next);
        if a.label_count() >= b.label_count() { a } else { b }
    };
    let wildcard = ce.prepend(b"*").map_err(|_| missing(name, "closest encloser too long"))?;
    if nsecs.iter().any(|(o, n)| denies(o, n, &wildcard)) {
        return Ok(());
    }
    Err(missing(name, "no NSEC denies the wildcard at the closest encloser"))
}

/// Proves that `name` has no `qtype` data: an NSEC at `name` without the
/// type (nor CNAME), or a wildcard NODATA (the name is covered and the
/// wildcard at its closest encloser lacks the type).
pub fn prove_nodata(name: &Name, qtype: u16, nsecs: &[(Name, Nsec)]) -> Result<(), Bogus> {
    if let Some((_, n)) = nsecs.iter().find(|(o, _)| o == name) {
        if n.has_type(qtype) || n.has_type(rtype::CNAME) {
            return Err(missing(name, "the NSEC at the name lists the type"));
        }
        // The right side of a zone cut (RFC 6840 §4.4): the parent's NSEC at
        // a delegation speaks for DS only; the child's apex NSEC never for DS.
        if qtype != rtype::DS && n.has_type(rtype::NS) && !n.has_type(rtype::SOA) {
            return Err(missing(name, "a delegation's NSEC cannot deny types of the child"));
        }
        if qtype == rtype::DS && n.has_type(rtype::SOA) {
            return Err(missing(name, "a zone apex NSEC cannot deny DS"));
        }
        return Ok(());
    }
    // Empty non-terminal: an NSEC whose next name is below `name`.
    if nsecs.iter().any(|(o, n)| covers(o, &n.next, name) && can_deny(o, n, name) && n.next.is_subdomain_of(name)) {
        return Ok(());
    }
    // Wildcard NODATA.
    if let Some((owner, nsec)) = nsecs.iter().find(|(o, n)| denies(o, n, name)) {
        let a = common_ancestor(name, owner);
        let b = common_ancestor(name, &nsec.next);
        let ce = if a.label_count() >= b.label_count() { a } else { b };
        if let Ok(wild) = ce.prepend(b"*")
            && let Some((_, w)) = nsecs.iter().find(|(o, _)| *o == wild)
            && !w.has_type(qtype)
            && !w.has_type(rtype::CNAME)
        {
            return Ok(());
        }
    }
    Err(missing(name, "no NSEC proves the type is absent"))
}

/// Proves an insecure delegation: the NSEC at the delegation point lists NS
/// but neither DS nor SOA (RFC 4035 §5.2).
pub fn prove_no_ds(name: &Name, nsecs: &[(Name, Nsec)]) -> Result<(), Bogus> {
    match nsecs.iter().find(|(o, _)| o == name) {
        Some((_, n)) if n.has_type(rtype::NS) && !n.has_type(rtype::DS) && !n.has_type(rtype::SOA) => Ok(()),
        Some(_) => Err(missing(name, "the NSEC at the delegation does not deny DS")),
        None => Err(missing(name, "no NSEC at the delegation point")),
    }
}

/// Proves that a wildcard expansion was legitimate (RFC 4035 §5.3.4): the
/// wildcard's parent has `labels` labels (the RRSIG's Labels field), so the
/// next closer name below it must not exist.
pub fn prove_wildcard_expansion(qname: &Name, labels: usize, nsecs: &[(Name, Nsec)]) -> Result<(), Bogus> {
    let next_closer = qname.suffix(labels + 1);
    if nsecs.iter().any(|(o, n)| denies(o, n, &next_closer)) {
        Ok(())
    } else {
        Err(missing(qname, "no NSEC proves the wildcard's source name is absent"))
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::records::make_bitmap;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    fn nsec(owner: &str, next: &str, types: &[u16]) -> (Name, Nsec) {
        (n(owner), Nsec { next: n(next), bitmap: make_bitmap(types).into() })
    }

    /// The zone: example. a.example. b.example. (NS, delegation) *.w.example. z.example.
    fn chain() -> Vec<(Name, Nsec)> {
        vec![
            nsec("example", "a.example", &[rtype::SOA, rtype::NS, rtype::NSEC, rtype::RRSIG]),
            nsec("a.example", "b.example", &[rtype::A, rtype::NSEC, rtype::RRSIG]),
            nsec("b.example", "*.w.example", &[rtype::NS, rtype::NSEC, rtype::RRSIG]),
            nsec("*.w.example", "x.y.example", &[rtype::TXT, rtype::NSEC, rtype::RRSIG]),
            nsec("x.y.example", "z.example", &[rtype::A, rtype::NSEC, rtype::RRSIG]),
            nsec("z.example", "example", &[rtype::A, rtype::NSEC, rtype::RRSIG]),
        ]
    }

    #[test]
    fn nxdomain_needs_name_and_wildcard_denial() {
        let c = chain();
        assert!(prove_nxdomain(&n("aa.example"), &c).is_ok());
        assert!(prove_nxdomain(&n("zz.example"), &c).is_ok(), "wrap-around NSEC");
        // Under w.example the wildcard exists: not NXDOMAIN.
        assert!(prove_nxdomain(&n("q.w.example"), &c).is_err());
        // Only the name's NSEC, not the wildcard's: not a proof.
        let partial = vec![c[1].clone()];
        assert!(prove_nxdomain(&n("aa.example"), &partial).is_err());
    }

    #[test]
    fn nodata_ent_wildcard_and_no_ds() {
        let c = chain();
        assert!(prove_nodata(&n("a.example"), rtype::AAAA, &c).is_ok());
        assert!(prove_nodata(&n("a.example"), rtype::A, &c).is_err());
        assert!(prove_nodata(&n("y.example"), rtype::A, &c).is_ok(), "empty non-terminal");
        assert!(prove_nodata(&n("q.w.example"), rtype::A, &c).is_ok(), "wildcard NODATA");
        assert!(prove_nodata(&n("q.w.example"), rtype::TXT, &c).is_err());
        assert!(prove_no_ds(&n("b.example"), &c).is_ok());
        assert!(prove_no_ds(&n("a.example"), &c).is_err(), "not a delegation");
        assert!(prove_no_ds(&n("example"), &c).is_err(), "an apex");
        assert!(prove_wildcard_expansion(&n("q.w.example"), 2, &c).is_ok());
        assert!(prove_wildcard_expansion(&n("a.example"), 1, &c).is_err());
        // *.example with y.example existing: x.y.example is not its expansion
        // even though an NSEC covers x.y.example itself.
        assert!(prove_wildcard_expansion(&n("x.y.example"), 1, &c).is_err());
    }

    #[test]
    fn delegation_nsec_does_not_deny_names_below_the_cut() {
        let c = chain();
        // b.example is a delegation (NS, no SOA): the span b -> *.w covers
        // x.b.example in canonical order, but proves nothing about it.
        assert!(prove_nxdomain(&n("x.b.example"), &c).is_err());
        assert!(prove_nodata(&n("x.b.example"), rtype::A, &c).is_err());
        assert!(prove_wildcard_expansion(&n("x.b.example"), 1, &c).is_err());
        // A delegation's NSEC cannot deny the child's types; an apex NSEC
        // cannot deny DS.
        assert!(prove_nodata(&n("b.example"), rtype::MX, &c).is_err());
        assert!(prove_nodata(&n("b.example"), rtype::DS, &c).is_ok());
        assert!(prove_nodata(&n("example"), rtype::DS, &c).is_err());
        // Beside the cut it still denies.
        assert!(prove_nxdomain(&n("ba.example"), &c).is_ok());
    }
}

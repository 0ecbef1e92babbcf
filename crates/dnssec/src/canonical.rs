//! Canonical order and form (RFC 4034 §6) and the data an RRSIG signs.

// Decoders of attacker-controlled input: no unchecked indexing or unwraps.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;

use proto::{Name, Record};

use crate::records::Rrsig;

/// Compares two names in canonical DNS order (RFC 4034 §6.1): label by
/// label from the right, each label as lower-case octets.
pub fn compare_names(a: &Name, b: &Name) -> Ordering {
    let la: Vec<&[u8]> = a.labels().collect();
    let lb: Vec<&[u8]> = b.labels().collect();
    for (x, y) in la.iter().rev().zip(lb.iter().rev()) {
        let ord = x.iter().map(u8::to_ascii_lowercase).cmp(y.iter().map(u8::to_ascii_lowercase));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    la.len().cmp(&lb.len())
}

/// The owner name an RRSIG was made over: the record's owner, or for a
/// wildcard expansion `*.` plus the rightmost `labels` labels.
pub fn signed_owner(owner: &Name, rrsig: &Rrsig) -> Option<Name> {
    let n = owner.label_count();
    let labels = rrsig.labels as usize;
    match labels.cmp(&n) {
        Ordering::Equal => Some(owner.clone()),
        Ordering::Less => owner.suffix(labels).prepend(b"*").ok(),
        Ordering::Greater => None,
    }
}

/// The signed data of RFC 4034 §3.1.8.1 for `rrsig` over `rrset`, with the
/// RRSIG rdata whose signature is stripped. Returns `None` when the RRSIG
/// cannot cover this RRset (too many labels).
pub fn signed_data(rrsig_rdata: &[u8], rrsig: &Rrsig, rrset: &[Record]) -> Option<Vec<u8>> {
    let first = rrset.first()?;
    let owner = signed_owner(&first.name, rrsig)?;
    let prefix = rrsig_rdata.get(..rrsig.signed_prefix_len)?;
    Some(signing_input(prefix, &owner, rrsig.original_ttl, rrset))
}

/// The bytes a signature covers: the RRSIG rdata up to the signer's name
/// (`prefix`), then every record of the RRset in canonical form and order,
/// with `owner` (the wildcard owner for expansions) and `original_ttl`.
pub fn signing_input(prefix: &[u8], owner: &Name, original_ttl: u32, rrset: &[Record]) -> Vec<u8> {
    let Some(first) = rrset.first() else { return prefix.to_vec() };
    let mut rdatas: Vec<&[u8]> = rrset.iter().map(|r| &*r.rdata).collect();
    rdatas.sort_unstable();
    rdatas.dedup();
    let mut out = Vec::with_capacity(prefix.len() + rdatas.iter().map(|r| r.len() + 64).sum::<usize>());
    out.extend_from_slice(prefix);
    for rdata in rdatas {
        out.extend_from_slice(owner.as_wire());
        out.extend_from_slice(&first.rtype.to_be_bytes());
        out.extend_from_slice(&first.class.to_be_bytes());
        out.extend_from_slice(&original_ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::from_ascii(s).expect("name")
    }

    #[test]
    fn canonical_order_of_rfc4034_example() {
        // RFC 4034 §6.1, in order.
        let ordered = [
            "example",
            "a.example",
            "yljkjljk.a.example",
            "Z.a.example",
            "zABC.a.EXAMPLE",
            "z.example",
            "\\001.z.example",
            "*.z.example",
            "\\200.z.example",
        ];
        let names: Vec<Name> = ordered.iter().map(|s| n(s)).collect();
        for w in names.windows(2) {
            assert_eq!(compare_names(&w[0], &w[1]), Ordering::Less, "{} < {}", w[0], w[1]);
        }
    }
}

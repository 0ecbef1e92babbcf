//! DNSSEC rdata parsers on arbitrary bytes: `dnssec::Dnskey::parse`,
//! `dnssec::Ds::parse`, `dnssec::Rrsig::parse`, `dnssec::Nsec::parse`,
//! `dnssec::nsec3::Nsec3::parse`, plus `dnssec::key_tag`,
//! `dnssec::records::{bitmap_has, make_bitmap}` and
//! `dnssec::nsec3::{base32hex, base32hex_decode}`.

#![no_main]

use dnssec::nsec3::{Nsec3, base32hex, base32hex_decode};
use dnssec::records::{bitmap_has, make_bitmap};
use dnssec::{Dnskey, Ds, Nsec, Rrsig, key_tag};
use libfuzzer_sys::fuzz_target;
use proto::name::validate_wire;

fuzz_target!(|rdata: &[u8]| {
    if let Ok(k) = Dnskey::parse(rdata) {
        assert_eq!(k.tag, key_tag(rdata));
        assert_eq!(4 + k.public_key.len(), rdata.len());
        let _ = (k.is_zone_key(), k.is_revoked());
    } else {
        assert!(rdata.len() < 5);
    }

    if let Ok(ds) = Ds::parse(rdata) {
        assert_eq!(4 + ds.digest.len(), rdata.len());
    }

    if let Ok(sig) = Rrsig::parse(rdata) {
        let signer = sig.signer.as_wire();
        assert_eq!(validate_wire(signer), Ok(signer.len()));
        assert!(!sig.signature.is_empty());
        assert_eq!(18 + signer.len() + sig.signature.len(), rdata.len());
    }

    if let Ok(n) = Nsec::parse(rdata) {
        assert_eq!(n.next.as_wire().len() + n.bitmap.len(), rdata.len());
        for t in [1u16, 2, 5, 6, 39, 43, 46, 47, 48, 50, 65535] {
            let _ = n.has_type(t);
        }
    }

    if let Ok(n) = Nsec3::parse(rdata) {
        assert!(!n.next_hash.is_empty());
        assert_eq!(6 + n.salt.len() + n.next_hash.len() + n.bitmap.len(), rdata.len());
        let _ = (n.opt_out(), n.has_type(2), n.has_type(6));
    }

    // Type bitmaps: arbitrary bytes never panic; built bitmaps list exactly
    // the types they were built from.
    let types: Vec<u16> = rdata.chunks_exact(2).take(64).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    for &t in &types {
        let _ = bitmap_has(rdata, t);
    }
    let bm = make_bitmap(&types);
    for &t in &types {
        assert!(bitmap_has(&bm, t), "make_bitmap lost type {t}");
    }
    for probe in [0u16, 1, 255, 256, 65535, types.first().map_or(7, |t| t ^ 1)] {
        assert_eq!(bitmap_has(&bm, probe), types.contains(&probe), "type {probe}");
    }

    // NSEC3 owner labels.
    let text = base32hex(rdata);
    assert_eq!(base32hex_decode(text.as_bytes()).as_deref(), Some(rdata));
    assert_eq!(base32hex_decode(text.to_ascii_uppercase().as_bytes()).as_deref(), Some(rdata));
    let _ = base32hex_decode(rdata);
});

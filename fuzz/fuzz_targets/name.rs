//! Domain names: `proto::name::validate_wire`, `proto::Name::from_wire`,
//! the decompressing reader `proto::message::read_name` (what
//! `Message::parse` and `MessageWriter`'s compression use),
//! `proto::wire::skip_name` (what `QueryView::parse` uses), presentation
//! format (`Name::from_ascii`, `Display`) and the `Name` helpers.
//!
//! Input: two octets of offset (big-endian), then the buffer.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::Name;
use proto::message::read_name;
use proto::name::{MAX_NAME_LEN, lower_into, validate_wire, write_wire_text};
use proto::wire::skip_name;

fuzz_target!(|data: &[u8]| {
    let Some((head, buf)) = data.split_first_chunk::<2>() else { return };
    let chosen = usize::from(u16::from_be_bytes(*head));

    // Uncompressed wire names.
    match validate_wire(buf) {
        Ok(len) => {
            assert!(len <= buf.len() && len <= MAX_NAME_LEN);
            let name = Name::from_wire(&buf[..len]).expect("validate_wire accepted it");
            exercise(&name);
            assert_eq!(Name::from_wire(buf).is_ok(), len == buf.len());
        }
        Err(e) => assert_eq!(Name::from_wire(buf).err(), Some(e)),
    }

    // Compressed names at the chosen offset and at every early offset.
    let mut out = [0u8; MAX_NAME_LEN];
    for pos in std::iter::once(chosen).chain(0..buf.len().min(64)) {
        let skipped = skip_name(buf, pos);
        if let Ok((len, next)) = read_name(buf, pos, &mut out) {
            assert!(len <= MAX_NAME_LEN);
            assert!(next > pos && next <= buf.len(), "read_name moved to {next} from {pos}");
            assert_eq!(validate_wire(&out[..len]), Ok(len));
            let name = Name::from_wire(&out[..len]).expect("read_name output is a wire name");
            // The hot path's skipper must agree with the full reader on
            // where the name ends.
            assert_eq!(skipped, Some(next), "skip_name and read_name disagree at {pos}");
            exercise(&name);
        }
    }

    // Presentation format from the same bytes.
    let text = String::from_utf8_lossy(buf);
    if let Ok(name) = Name::from_ascii(&text) {
        exercise(&name);
    }

    // Helpers on arbitrary (possibly broken) wire bytes.
    let mut lower = [0u8; MAX_NAME_LEN];
    assert_eq!(lower_into(buf, &mut lower).len(), buf.len().min(MAX_NAME_LEN));
    let mut s = String::new();
    let _ = write_wire_text(buf, &mut s);
});

/// Invariants of a valid `Name`.
fn exercise(name: &Name) {
    let wire = name.as_wire();
    assert_eq!(validate_wire(wire), Ok(wire.len()));
    assert!(!wire.iter().any(u8::is_ascii_uppercase), "names are lower-cased");
    let labels: Vec<&[u8]> = name.labels().collect();
    assert_eq!(labels.len(), name.label_count());
    assert_eq!(labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1, wire.len());
    assert_eq!(name.is_root(), labels.is_empty());

    // Display then parse is the identity.
    let text = name.to_string();
    assert_eq!(Name::from_ascii(&text).as_ref(), Ok(name), "text {text:?}");
    assert_eq!(text.parse::<Name>().as_ref(), Ok(name));

    // Ancestors.
    let mut steps = 0;
    let mut cur = name.clone();
    while let Some(p) = cur.parent() {
        assert!(name.is_subdomain_of(&p));
        assert!(!p.is_subdomain_of(&cur));
        cur = p;
        steps += 1;
        assert!(steps <= 128, "parent() does not reach the root");
    }
    assert!(cur.is_root());
    for k in 0..=labels.len() + 1 {
        let s = name.suffix(k);
        assert_eq!(s.label_count(), k.min(labels.len()));
        assert!(name.is_subdomain_of(&s));
        if let Ok(r) = name.replace_suffix(&s, &Name::root()) {
            assert_eq!(r.label_count(), labels.len() - k.min(labels.len()));
        }
    }
    if let Ok(w) = name.prepend(b"*") {
        assert!(w.is_wildcard());
        assert_eq!(w.parent().as_ref(), Some(name));
    }
}

//! `proto::zonefile::parse_records(text, origin)` (master files on
//! `domain`'s scanner: local data, trust anchors, root hints) on arbitrary
//! text (lossy UTF-8). The origin is picked by the input's length modulo 3
//! (no octet is consumed, so plain zone files are seeds as they are).
//! Records that come out are also written into a message with
//! `MessageWriter` (compression over zone-file rdata) and parsed again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::build::{MessageWriter, Section};
use proto::name::validate_wire;
use proto::zonefile::parse_records;
use proto::{Message, Name, flags};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let origin = match data.len() % 3 {
        0 => None,
        1 => Some(Name::root()),
        _ => Some(Name::from_ascii("example.test").expect("static name")),
    };
    let Ok(records) = parse_records(&text, origin.as_ref()) else { return };
    for r in &records {
        assert_eq!(validate_wire(r.name.as_wire()), Ok(r.name.as_wire().len()));
        let _ = (r.address(), r.target_name(), r.soa_negative_ttl());
    }
    // Not asserted to round-trip: zone-file rdata keeps the case of names
    // inside it, while Message::parse lower-cases them, and types such as
    // OPT may be written in a zone file but not parsed in an answer.
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, 0, flags::QR);
    for r in records.iter().take(512).filter(|r| r.rdata.len() <= usize::from(u16::MAX)) {
        w.record(Section::Answer, r);
    }
    w.finish();
    let _ = Message::parse(&buf);
});

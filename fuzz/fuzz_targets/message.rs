//! `proto::Message::parse` and `proto::QueryView::parse` on arbitrary bytes,
//! and a write-back round trip: every message `Message::parse` accepts is
//! written again with `proto::build::MessageWriter` (with and without name
//! compression) and must parse back to an equal `Message`.
//!
//! There is no "serialise a whole `Message`" function in proto, so the
//! round trip is assembled here from the writer's public pieces:
//! `MessageWriter::question`, `MessageWriter::record` per section, and the
//! OPT record through `MessageWriter::raw_record` (owner `.`, class = UDP
//! size, TTL = ext-rcode/version/DO), because `MessageWriter::opt` cannot
//! carry the EDNS version nor raw options and `opt_with` cannot carry the
//! extended RCODE.

#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::build::{MessageWriter, Section};
use proto::message::{Edns, Message};
use proto::name::validate_wire;
use proto::wire::{EDNS_DO, read_u32};
use proto::{Name, QueryView, flags, rtype};

fuzz_target!(|data: &[u8]| {
    let query = QueryView::parse(data);
    if let Ok(q) = &query {
        assert!(q.question_end <= data.len());
        assert_eq!(validate_wire(q.qname), Ok(q.qname.len()), "QueryView qname is not a whole wire name");
        let _ = (q.recursion_desired(), q.checking_disabled(), q.udp_limit(1232), q.udp_limit(0));
        if let Some(e) = q.edns {
            assert!(e.udp_size >= 512);
            assert_eq!(e.version, 0, "EDNS versions other than 0 are BADVERS");
        }
    }

    let Ok(msg) = Message::parse(data) else { return };
    let _ = (msg.rcode(), msg.ede(), msg.has_flag(flags::AA));
    for r in msg.answer.iter().chain(&msg.authority).chain(&msg.additional) {
        let _ = (r.target_name(), r.address(), r.soa_negative_ttl());
        assert_eq!(r.ttl & 0x8000_0000, 0, "TTLs with the top bit set read as 0 (RFC 2181 §8)");
        assert_ne!(r.rtype, rtype::OPT, "OPT belongs in Message::edns");
        assert_eq!(validate_wire(r.name.as_wire()), Ok(r.name.as_wire().len()));
    }

    // Both parsers accepted the packet: they must agree on the question and
    // on the OPT record. (QueryView refuses compressed question names, so
    // the name is the same octets.)
    if let Ok(q) = &query {
        let mq = msg.question.as_ref().expect("QueryView accepted a query without a question");
        assert_eq!(Name::from_wire(q.qname).as_ref(), Ok(&mq.name));
        assert_eq!((q.qtype, q.qclass), (mq.qtype, mq.qclass));
        assert_eq!(q.edns.is_some(), msg.edns.is_some(), "OPT seen by one parser only");
        if let (Some(v), Some(e)) = (q.edns, &msg.edns) {
            assert_eq!(v.dnssec_ok, e.dnssec_ok);
            assert_eq!(v.udp_size, e.udp_size.max(512));
            assert_eq!(v.version, e.version);
        }
    }

    round_trip(&msg, true);
    round_trip(&msg, false);
});

/// Writes `msg` with the crate's writer and checks that it parses back equal.
fn round_trip(msg: &Message, compress: bool) {
    let mut out = Vec::new();
    let mut w = MessageWriter::new(&mut out, msg.id, msg.flags).track_ttls();
    if !compress {
        w = w.without_compression();
    }
    if let Some(q) = &msg.question {
        w.question(q.name.as_wire(), q.qtype, q.qclass);
    }
    for r in &msg.answer {
        w.record(Section::Answer, r);
    }
    for r in &msg.authority {
        w.record(Section::Authority, r);
    }
    for r in &msg.additional {
        w.record(Section::Additional, r);
    }
    // Taken before the OPT record is written: OPT's TTL field holds flags.
    let ttl_offsets = w.ttl_offsets();
    if let Some(e) = &msg.edns {
        let (ttl, rdata) = opt_parts(e);
        w.raw_record(Section::Additional, &[0], rtype::OPT, e.udp_size, ttl, &rdata);
    }
    let len = w.finish();
    assert_eq!(len, out.len());

    let again = Message::parse(&out);
    assert_eq!(again.as_ref(), Ok(msg), "parse(write(m)) != m (compress={compress}); wire {out:02x?}");

    // The TTL offsets point at the TTLs, in record order (only meaningful
    // while offsets fit the writer's u16).
    if out.len() <= usize::from(u16::MAX) {
        let ttls: Vec<u32> = msg.answer.iter().chain(&msg.authority).chain(&msg.additional).map(|r| r.ttl).collect();
        assert_eq!(ttl_offsets.len(), ttls.len());
        for (off, ttl) in ttl_offsets.iter().zip(ttls) {
            assert_eq!(read_u32(&out, usize::from(*off)), Some(ttl));
        }
    }
}

/// The OPT record's TTL field and rdata for `e` (RFC 6891 §6.1.3).
fn opt_parts(e: &Edns) -> (u32, Vec<u8>) {
    let ttl = (u32::from(e.ext_rcode) << 24) | (u32::from(e.version) << 16) | if e.dnssec_ok { EDNS_DO } else { 0 };
    let mut rdata = Vec::new();
    for (code, data) in &e.options {
        rdata.extend_from_slice(&code.to_be_bytes());
        rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
        rdata.extend_from_slice(data);
    }
    (ttl, rdata)
}

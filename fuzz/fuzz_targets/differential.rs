//! Differential: `proto::Message::parse` against `domain` 0.12
//! (`domain::base::Message::from_octets`, `Message::sections`, each record
//! as `ParsedRecord` with its rdata as `UnknownRecordData`). For every
//! input both accept, the header ID, the question and, per section, the
//! record count, owner names (compared as wire, case-insensitively), types,
//! classes and TTLs must agree, and so must the rdata of types proto keeps
//! opaque.
//!
//! "domain accepts" means: `from_octets` succeeds and every question and
//! every record of the three sections parses (domain parses record data
//! lazily, so this is only header, owner and rdata length).
//!
//! Legitimate differences, not compared:
//! 1. OPT. proto takes the OPT record out of the additional section into
//!    `Message::edns` (and refuses OPT elsewhere, two OPTs, or an OPT whose
//!    owner is not the root); domain leaves it in the additional section as
//!    an ordinary record. So OPT is removed from domain's additional list,
//!    and compared instead with `edns`: exactly one OPT, UDP size = class,
//!    extended RCODE, version and DO from its TTL field, options = rdata.
//! 2. TTLs with the top bit set. proto reads them as 0 (RFC 2181 §8);
//!    domain's `Ttl` keeps the raw value. The expected TTL is mapped the
//!    same way before comparing.
//! 3. Case. proto lower-cases every name (`Name` is lower-case by
//!    construction); domain keeps the octets. Names are compared with
//!    ASCII case folded.
//! 4. Record data of the types whose rdata holds compressible names (NS,
//!    CNAME, PTR, DNAME, SOA, RP, MX, AFSDB, KX, SRV): proto stores it
//!    decompressed and lower-cased, domain's `UnknownRecordData` is the raw
//!    (possibly compressed) octets, so only opaque types compare rdata.
//! 5. Things only one side checks make it *reject* (proto: more than one
//!    question, A/AAAA lengths, names in rdata, SOA's fixed part, more
//!    than 64 pointers per name, counts larger than the message can hold;
//!    domain: up to 255 pointers): such inputs are not "both accept".
//! 6. Octets after the last record: both ignore them.

#![no_main]

use domain::base::Message as DMessage;
use domain::base::ToName;
use domain::base::rdata::UnknownRecordData;
use libfuzzer_sys::fuzz_target;
use proto::message::Message;
use proto::{Record, rtype};

/// One record as domain sees it.
#[derive(Debug)]
struct DRecord {
    owner: Vec<u8>,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: Vec<u8>,
}

struct DView {
    id: u16,
    question: Vec<(Vec<u8>, u16, u16)>,
    sections: [Vec<DRecord>; 3],
}

fn domain_view(data: &[u8]) -> Option<DView> {
    let msg = DMessage::from_octets(data.to_vec()).ok()?;
    let id = msg.header().id();
    let (question, answer, authority, additional) = msg.sections().ok()?;
    let mut q = Vec::new();
    for item in question {
        let item = item.ok()?;
        q.push((item.qname().to_vec().as_slice().to_vec(), item.qtype().to_int(), item.qclass().to_int()));
    }
    let mut sections: [Vec<DRecord>; 3] = Default::default();
    for (i, section) in [answer, authority, additional].into_iter().enumerate() {
        for rec in section {
            let rec = rec.ok()?;
            let data = rec.to_record::<UnknownRecordData<&[u8]>>().ok()??;
            let rdata: &[u8] = data.data().data();
            sections[i].push(DRecord {
                owner: rec.owner().to_vec().as_slice().to_vec(),
                rtype: rec.rtype().to_int(),
                class: rec.class().to_int(),
                ttl: rec.ttl().as_secs(),
                rdata: rdata.to_vec(),
            });
        }
    }
    Some(DView { id, question: q, sections })
}

/// Types whose rdata proto rewrites (decompressed, lower-cased); mirrors
/// the private `layout()` in crates/proto/src/message.rs.
fn rdata_has_names(t: u16) -> bool {
    matches!(
        t,
        rtype::NS
            | rtype::CNAME
            | rtype::PTR
            | rtype::DNAME
            | rtype::SOA
            | rtype::RP
            | rtype::MX
            | rtype::AFSDB
            | rtype::KX
            | rtype::SRV
    )
}

fn compare_section(what: &str, ours: &[Record], theirs: &[&DRecord]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: record counts differ");
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        assert!(o.name.as_wire().eq_ignore_ascii_case(&t.owner), "{what}[{i}]: owner {:?} vs {:02x?}", o.name, t.owner);
        assert_eq!(o.rtype, t.rtype, "{what}[{i}]: type");
        assert_eq!(o.class, t.class, "{what}[{i}]: class");
        let expected_ttl = if t.ttl & 0x8000_0000 != 0 { 0 } else { t.ttl };
        assert_eq!(o.ttl, expected_ttl, "{what}[{i}]: TTL");
        if !rdata_has_names(o.rtype) {
            assert_eq!(&o.rdata[..], &t.rdata[..], "{what}[{i}]: rdata of type {}", o.rtype);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(ours) = Message::parse(data) else { return };
    let Some(theirs) = domain_view(data) else { return };

    assert_eq!(ours.id, theirs.id);

    // Question (proto refuses more than one).
    match &ours.question {
        None => assert!(theirs.question.is_empty(), "question count"),
        Some(q) => {
            assert_eq!(theirs.question.len(), 1, "question count");
            let (name, qtype, qclass) = &theirs.question[0];
            assert!(q.name.as_wire().eq_ignore_ascii_case(name), "question name");
            assert_eq!((q.qtype, q.qclass), (*qtype, *qclass), "question type/class");
        }
    }

    let [an, ns, ar] = &theirs.sections;
    compare_section("answer", &ours.answer, &an.iter().collect::<Vec<_>>());
    compare_section("authority", &ours.authority, &ns.iter().collect::<Vec<_>>());

    // Difference 1: OPT.
    let (opts, rest): (Vec<&DRecord>, Vec<&DRecord>) = ar.iter().partition(|r| r.rtype == rtype::OPT);
    compare_section("additional", &ours.additional, &rest);
    assert!(an.iter().chain(ns).all(|r| r.rtype != rtype::OPT), "proto accepted OPT outside additional");
    match (&ours.edns, opts.as_slice()) {
        (None, []) => {}
        (Some(e), [opt]) => {
            assert_eq!(opt.owner, [0u8], "OPT owner");
            assert_eq!(e.udp_size, opt.class, "EDNS UDP size");
            assert_eq!(e.ext_rcode, (opt.ttl >> 24) as u8, "extended RCODE");
            assert_eq!(e.version, (opt.ttl >> 16) as u8, "EDNS version");
            assert_eq!(e.dnssec_ok, opt.ttl & 0x8000 != 0, "DO bit");
            let mut options = Vec::new();
            for (code, d) in &e.options {
                options.extend_from_slice(&code.to_be_bytes());
                options.extend_from_slice(&(d.len() as u16).to_be_bytes());
                options.extend_from_slice(d);
            }
            assert_eq!(options, opt.rdata, "EDNS options");
        }
        (e, o) => panic!("EDNS disagrees: proto {e:?}, domain has {} OPT records", o.len()),
    }
});

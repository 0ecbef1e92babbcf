//! Property tests: every decoder of network input survives arbitrary and
//! mutated bytes without panicking, and its work is bounded.

use proptest::prelude::*;
use proto::build::{Section, build_query};
use proto::{Message, MessageWriter, Name, QueryView, Record, flags, rtype};

/// A realistic response with compression in owner names and rdata.
fn sample_response() -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::new(&mut buf, 7, flags::QR | flags::AA);
    let www = Name::from_ascii("www.example.test").expect("name");
    w.question(www.as_wire(), rtype::A, 1);
    let cname = Name::from_ascii("web.example.test").expect("name");
    w.record(
        Section::Answer,
        &Record { name: www.clone(), rtype: rtype::CNAME, class: 1, ttl: 60, rdata: cname.as_wire().into() },
    );
    w.record(
        Section::Answer,
        &Record { name: cname, rtype: rtype::A, class: 1, ttl: 60, rdata: Box::new([192, 0, 2, 1]) },
    );
    let apex = Name::from_ascii("example.test").expect("name");
    let ns = Name::from_ascii("ns1.example.test").expect("name");
    w.record(
        Section::Authority,
        &Record { name: apex, rtype: rtype::NS, class: 1, ttl: 60, rdata: ns.as_wire().into() },
    );
    w.record(
        Section::Additional,
        &Record { name: ns, rtype: rtype::A, class: 1, ttl: 60, rdata: Box::new([127, 53, 2, 1]) },
    );
    w.opt(1232, true, 0, &[proto::Ede::new(22, "x")]);
    w.finish();
    buf
}

fn sample_query() -> Vec<u8> {
    let mut q = Vec::new();
    let www = Name::from_ascii("www.example.test").expect("name");
    build_query(&mut q, 1, www.as_wire(), rtype::A, true, Some(1232), true);
    q
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Message::parse(&bytes);
        let _ = QueryView::parse(&bytes);
    }

    #[test]
    fn mutated_responses_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut m = sample_response();
        for (at, v) in flips {
            let i = at % m.len();
            m[i] = v;
        }
        m.truncate(cut % (m.len() + 1));
        if let Ok(msg) = Message::parse(&m) {
            // What parses can be written again and parsed the same way.
            let mut out = Vec::new();
            let mut w = MessageWriter::new(&mut out, msg.id, msg.flags);
            if let Some(q) = &msg.question { w.question(q.name.as_wire(), q.qtype, q.qclass); }
            for r in &msg.answer { w.record(Section::Answer, r); }
            w.finish();
            let again = Message::parse(&out).expect("re-encoded message parses");
            prop_assert_eq!(again.answer, msg.answer);
        }
    }

    #[test]
    fn mutated_queries_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut q = sample_query();
        for (at, v) in flips {
            let i = at % q.len();
            q[i] = v;
        }
        q.truncate(cut % (q.len() + 1));
        if let Ok(v) = QueryView::parse(&q) {
            prop_assert!(v.question_end <= q.len());
            prop_assert!(v.qname.len() <= 255);
        }
    }

    #[test]
    fn names_round_trip(labels in proptest::collection::vec("[a-zA-Z0-9-]{1,20}", 0..8)) {
        let text = labels.join(".");
        let name = Name::from_ascii(&text).expect("valid");
        let again = Name::from_ascii(&name.to_string()).expect("valid");
        prop_assert_eq!(&name, &again);
        prop_assert_eq!(name.label_count(), labels.len());
    }
}

/// The worst case for decompression: every name a long chain of pointers.
/// The pointer budget bounds the work however the message is crafted.
#[test]
fn pointer_chains_are_bounded() {
    // Record 1 (opaque type 65280) carries, in its rdata, a chain of 2000
    // single-label hops each pointing at the previous one; record 2's owner
    // points at the last hop.
    let mut m = vec![0u8, 1, 0x81, 0x80, 0, 0, 0, 2, 0, 0, 0, 0];
    m.extend_from_slice(&[0, 0xff, 0x00, 0, 1, 0, 0, 0, 60]);
    let rdlen_at = m.len();
    m.extend_from_slice(&[0, 0]);
    let chain_start = m.len();
    m.extend_from_slice(&[1, b'a', 0]);
    let mut prev = chain_start as u16;
    for _ in 0..2000 {
        let here = m.len() as u16;
        if here > 0x3ff0 {
            break;
        }
        m.extend_from_slice(&[1, b'a']);
        m.extend_from_slice(&(0xc000 | prev).to_be_bytes());
        prev = here;
    }
    let rdlen = (m.len() - chain_start) as u16;
    m[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    m.extend_from_slice(&(0xc000 | prev).to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
    let started = std::time::Instant::now();
    let r = Message::parse(&m);
    assert!(
        matches!(r, Err(proto::WireError::PointerBudget | proto::WireError::NameTooLong)),
        "a 2000-hop name is rejected: {r:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(100));
}

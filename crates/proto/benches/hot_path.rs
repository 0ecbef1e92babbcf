//! Micro-benchmarks of the wire hot path: query parsing and response writing.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use proto::build::Section;
use proto::{MessageWriter, Name, QueryView, Record, flags, rtype};
use std::hint::black_box;

fn query() -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    q
}

fn bench(c: &mut Criterion) {
    let q = query();
    c.bench_function("query_parse", |b| b.iter(|| QueryView::parse(black_box(&q))));

    let rec = Record {
        name: Name::from_ascii("www.example.test").expect("name"),
        rtype: rtype::A,
        class: 1,
        ttl: 300,
        rdata: Box::new([192, 0, 2, 10]),
    };
    let mut buf = Vec::with_capacity(512);
    c.bench_function("response_write", |b| {
        b.iter(|| {
            buf.clear();
            let mut w = MessageWriter::new(&mut buf, 0x1234, flags::QR | flags::RA);
            w.question(rec.name.as_wire(), rtype::A, 1);
            w.record(Section::Answer, black_box(&rec));
            w.opt(1232, false, 0, &[]);
            w.finish()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Micro-benchmark of the cache-hit hot path: key lookup plus writing the
//! patched response into a reused buffer.

#![allow(missing_docs)]

use cache::{AnswerCache, CachedAnswer, TtlPolicy, WriteOptions};
use criterion::{Criterion, criterion_group, criterion_main};
use proto::build::Section;
use proto::{MessageWriter, Name, QueryView, Record, flags, rtype};
use std::hint::black_box;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let cache = AnswerCache::new(64 << 20, TtlPolicy::default());
    for i in 0..10_000 {
        let name = Name::from_ascii(&format!("n{i}.example.test")).expect("name");
        let mut buf = Vec::new();
        let mut w = MessageWriter::new(&mut buf, 0, flags::QR | flags::RA).track_ttls();
        w.question(name.as_wire(), rtype::A, 1);
        let rec = Record { name: name.clone(), rtype: rtype::A, class: 1, ttl: 300, rdata: Box::new([192, 0, 2, 1]) };
        w.record(Section::Answer, &rec);
        let offs = w.ttl_offsets();
        w.finish();
        cache.insert(
            name.as_wire(),
            rtype::A,
            1,
            0,
            Arc::new(CachedAnswer::new(buf.into(), offs.into(), 0, 300, None)),
        );
    }
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x04n777\x07example\x04test\x00\x00\x01\x00\x01");
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let mut out = Vec::with_capacity(1232);
    let opts = WriteOptions { now: 10, limit: 1232, stale: false, udp_size: 1232, pad_block: None };
    c.bench_function("cache_hit_parse_lookup_write", |b| {
        b.iter(|| {
            let view = QueryView::parse(black_box(&q)).expect("query");
            let hit = cache.get(&view, 0).expect("hit");
            hit.write(&view, &opts, &mut out)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

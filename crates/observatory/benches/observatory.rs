//! The observatory's cost on the query path: one `record` (a cached
//! per-network lookup plus an atomic add), a cache miss (the database
//! lookup itself), and no allocation either way.

#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use observatory::{GeoDb, Observatory, mmdb::lab_database};

fn lab_geo() -> GeoDb {
    let db = lab_database(&["DE", "FR", "BR", "IN", "NG", "US", "JP", "ID"], 200);
    GeoDb::from_bytes(Some(db.clone()), Some(db)).expect("lab database")
}

fn bench(c: &mut Criterion) {
    let obs = Observatory::new(lab_geo(), 1 << 16, 1_000_000);
    // 4,000 client networks, seen before: the steady state of a busy node.
    let addrs: Vec<IpAddr> =
        (0..4000u32).map(|i| IpAddr::V4(Ipv4Addr::new(127, 1 + (i % 8) as u8, (i / 8 % 200) as u8, 7))).collect();
    for a in &addrs {
        obs.record(*a, 0, 0, None);
    }
    let mut i = 0usize;
    c.bench_function("observatory_record_cached", |b| {
        b.iter(|| {
            i = (i + 1) % addrs.len();
            obs.record(black_box(addrs[i]), 0, 0, None);
        })
    });
    let geo = lab_geo();
    c.bench_function("observatory_geo_lookup_uncached", |b| {
        b.iter(|| {
            i = (i + 1) % addrs.len();
            black_box(geo.lookup(black_box(addrs[i])))
        })
    });
    let allocs = allocation_counter::measure(|| {
        for a in &addrs {
            obs.record(*a, 1, 2, Some(22));
        }
    });
    assert_eq!(allocs.count_total, 0, "recording must not allocate");
}

criterion_group!(benches, bench);
criterion_main!(benches);

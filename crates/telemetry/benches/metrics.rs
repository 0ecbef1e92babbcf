//! Micro-benchmark of counting one answered query: the per-query cost the
//! hot path pays for metrics.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use telemetry::Metrics;

fn bench(c: &mut Criterion) {
    let m = Metrics::new(vec!["unfiltered".into(), "security".into(), "family".into()]);
    c.bench_function("metrics_count_query", |b| {
        b.iter(|| m.query(black_box(0), black_box(2), black_box(28), black_box(0), black_box(true)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

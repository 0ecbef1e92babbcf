//! Micro-benchmark of counting one answered query: the per-query cost the
//! hot path pays for metrics, against the same count through
//! prometheus-client's labelled `Family` (the crate DESIGN.md names), which
//! hashes the label set and takes a lock on every increment.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::hint::black_box;
use telemetry::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    door: &'static str,
    profile: &'static str,
    qtype: &'static str,
    rcode: &'static str,
}

fn bench(c: &mut Criterion) {
    let m = Metrics::new(vec!["unfiltered".into(), "security".into(), "family".into()]);
    c.bench_function("metrics_count_query", |b| {
        b.iter(|| m.query(black_box(0), black_box(2), black_box(28), black_box(0), black_box(true)))
    });
    let family: Family<Labels, Counter> = Family::default();
    let labels = Labels { door: "udp", profile: "family", qtype: "AAAA", rcode: "NOERROR" };
    c.bench_function("prometheus_client_family_inc", |b| b.iter(|| family.get_or_create(black_box(&labels)).inc()));
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Micro-benchmark of the policy decision for one name: a miss against a
//! profile of 200,000 listed names (every suffix hashed and probed), and a
//! hit on a subdomain of a listed name.

#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use policy::{Format, Policy, ProfileSpec, SourceSpec, Verdict};
use std::hint::black_box;

fn wire(s: &str) -> Vec<u8> {
    proto::Name::from_ascii(s).expect("name").as_wire().to_vec()
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("onedot-policy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("list.txt");
    let mut text = String::new();
    for i in 0..2_000_000 {
        text.push_str(&format!("host{i}.blocked{}.example\n", i % 1000));
    }
    std::fs::write(&path, text).expect("write");
    let source = SourceSpec::new("bench", path.clone(), Format::Domains, "malware");
    let mut spec = ProfileSpec::named("family");
    spec.sources = vec!["bench".into()];
    let policy = Policy::new(vec![spec], vec![source]).expect("policy");
    policy.load_all(0).expect("loads");
    let profile = policy.profile(0);
    let miss = wire("www.not-listed.example.test");
    let hit = wire("a.b.host4242.blocked242.example");
    c.bench_function("policy_check_miss", |b| {
        b.iter(|| assert!(matches!(profile.check_name(black_box(&miss)), Verdict::Pass)))
    });
    c.bench_function("policy_check_hit", |b| {
        b.iter(|| assert!(matches!(profile.check_name(black_box(&hit)), Verdict::Block(_))))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);

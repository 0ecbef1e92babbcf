//! Micro-benchmark of admission on the cache-hit path: what a UDP query
//! pays for rate limiting and cookies in front of a handler that answers
//! at once (a canned reply, so only admission's own cost moves).

#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use doors::{Admission, AdmissionConfig, BoxFuture, Client, Door, Fast, Handler};
use std::hint::black_box;

/// Copies the query back with QR set.
struct Canned;

impl Handler for Canned {
    fn try_fast(&self, query: &[u8], _: Client, out: &mut Vec<u8>) -> Fast {
        out.clear();
        out.extend_from_slice(query);
        out[2] |= 0x80;
        Fast::Answered(out.len())
    }

    fn answer<'a>(&'a self, _: &'a [u8], _: Client, _: &'a mut Vec<u8>) -> BoxFuture<'a, Option<usize>> {
        Box::pin(async { None })
    }
}

fn query(cookie: Option<&[u8]>) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
    match cookie {
        None => q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]),
        Some(c) => {
            q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
            q.extend_from_slice(&((4 + c.len()) as u16).to_be_bytes());
            q.extend_from_slice(&10u16.to_be_bytes());
            q.extend_from_slice(&(c.len() as u16).to_be_bytes());
            q.extend_from_slice(c);
        }
    }
    q
}

fn bench(c: &mut Criterion) {
    let client = Client { door: Door::Udp, addr: "192.0.2.1".parse().expect("address") };
    let mut out = Vec::with_capacity(1232);
    let plain = query(None);
    c.bench_function("udp_hit_no_admission", |b| b.iter(|| Canned.try_fast(black_box(&plain), client, &mut out)));
    // The default limits, with queries from 16384 client networks in turn
    // (each far below its rate, as a busy resolver's clients are), so the
    // table is walked as in production and nothing is limited.
    let admitted = Admission::new(AdmissionConfig::default(), doors::InFlight::default()).wrap(Arc::new(Canned));
    let clients: Vec<Client> = (0..16384u32)
        .map(|i| Client { door: Door::Udp, addr: std::net::IpAddr::V4((0x0a00_0001 + (i << 8)).into()) })
        .collect();
    let mut next = clients.iter().cycle();
    c.bench_function("udp_hit_rate_limited", |b| {
        b.iter(|| admitted.try_fast(black_box(&plain), *next.next().unwrap_or(&client), &mut out))
    });
    // Eight busy networks (a load generator's): the table lines stay in
    // the CPU cache.
    let mut config = AdmissionConfig::default();
    if let Some(r) = config.rate_limit.as_mut() {
        (r.responses_per_second, r.burst_seconds) = (4_000_000, 1);
    }
    let busy = Admission::new(config, doors::InFlight::default()).wrap(Arc::new(Canned));
    let mut few = clients[..8].iter().cycle();
    c.bench_function("udp_hit_rate_limited_8_networks", |b| {
        b.iter(|| busy.try_fast(black_box(&plain), *few.next().unwrap_or(&client), &mut out))
    });
    let with_client_cookie = query(Some(&[1, 2, 3, 4, 5, 6, 7, 8]));
    c.bench_function("udp_hit_client_cookie", |b| {
        b.iter(|| admitted.try_fast(black_box(&with_client_cookie), *next.next().unwrap_or(&client), &mut out))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

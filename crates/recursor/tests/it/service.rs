use std::sync::Arc;

use proto::{Message, Name, QueryView, build::build_query, flags, rtype};
use recursor::{FastPath, Service, ServiceConfig, SystemClock, TransportKind};

use crate::setup;

fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = Vec::new();
    let name = Name::from_ascii(name).expect("name");
    build_query(&mut q, 0x4242, name.as_wire(), qtype, true, edns.then_some(1232), false);
    q
}

async fn service() -> (lab::Lab, Service) {
    let (lab, r) = setup().await;
    let cfg = ServiceConfig { local: recursor::LocalData::new(Vec::new(), false), ..ServiceConfig::default() };
    (lab, Service::new(r, cfg, Arc::new(SystemClock)))
}

/// The service on the lab with time under the test's control.
async fn service_at(clock: Arc<recursor::ManualClock>) -> (lab::Lab, Service) {
    let (lab, r) = crate::setup_full(|_| {}, clock.clone()).await;
    let cfg = ServiceConfig { local: recursor::LocalData::new(Vec::new(), false), ..ServiceConfig::default() };
    (lab, Service::new(r, cfg, clock))
}

#[tokio::test]
async fn miss_then_fast_hit() {
    let (_lab, s) = service().await;
    let q = query("www.example.test", rtype::A, true);
    let mut out = Vec::with_capacity(1232);
    assert_eq!(s.try_fast(&q, TransportKind::Datagram, &mut out), FastPath::Miss);
    s.answer(&q, TransportKind::Datagram, &mut out).await.expect("response");
    let m = Message::parse(&out).expect("valid");
    assert_eq!(m.id, 0x4242);
    assert!(m.has_flag(flags::RA) && m.has_flag(flags::RD) && !m.has_flag(flags::AA));
    assert_eq!(m.answer[0].address().map(|a| a.to_string()), Some("192.0.2.10".into()));
    let FastPath::Answered(len) = s.try_fast(&q, TransportKind::Datagram, &mut out) else { panic!("hit") };
    assert_eq!(Message::parse(&out[..len]).expect("valid").answer.len(), 1);
}

#[tokio::test]
async fn truncates_over_udp_and_not_over_tcp() {
    let (_lab, s) = service().await;
    let q = query("txt.big.test", rtype::TXT, true);
    let mut out = Vec::new();
    s.answer(&q, TransportKind::Datagram, &mut out).await.expect("response");
    let m = Message::parse(&out).expect("valid");
    assert!(m.has_flag(flags::TC));
    assert!(out.len() <= 1232);
    s.answer(&q, TransportKind::Stream, &mut out).await.expect("response");
    assert_eq!(Message::parse(&out).expect("valid").answer.len(), 40);
    // Without EDNS the limit is 512.
    let q = query("many.big.test", rtype::A, false);
    s.answer(&q, TransportKind::Datagram, &mut out).await.expect("response");
    assert!(out.len() <= 512 && Message::parse(&out).expect("valid").has_flag(flags::TC));
}

#[tokio::test]
async fn servfail_carries_ede() {
    let (_lab, s) = service().await;
    let q = query("www.dead.test", rtype::A, true);
    let mut out = Vec::new();
    s.answer(&q, TransportKind::Datagram, &mut out).await.expect("response");
    let m = Message::parse(&out).expect("valid");
    assert_eq!(m.rcode(), 2);
    assert_eq!(m.ede()[0].0, proto::ede::code::NETWORK_ERROR);
    assert!(m.ede()[0].1.contains("dead.test"), "EXTRA-TEXT names the zone");
}

#[tokio::test]
async fn malformed_queries_get_formerr_or_nothing() {
    let (_lab, s) = service().await;
    let mut out = Vec::new();
    assert_eq!(s.answer(&[1, 2, 3], TransportKind::Datagram, &mut out).await, None);
    let mut q = query("www.example.test", rtype::A, false);
    q[5] = 2; // two questions
    s.answer(&q, TransportKind::Datagram, &mut out).await.expect("formerr");
    assert_eq!(Message::parse(&out).expect("valid").rcode(), 1);
    let mut q = query("www.example.test", rtype::A, true);
    let len = q.len();
    q[len - 5] = 1; // EDNS version 1
    s.answer(&q, TransportKind::Datagram, &mut out).await.expect("badvers");
    assert_eq!(Message::parse(&out).expect("valid").rcode(), 16);
    let q = query("example.test", rtype::AXFR, false);
    s.answer(&q, TransportKind::Stream, &mut out).await.expect("refused");
    assert_eq!(Message::parse(&out).expect("valid").rcode(), 5);
    let _ = QueryView::parse(&q);
}

async fn answer(s: &Service, name: &str, qtype: u16) -> proto::Message {
    let q = query(name, qtype, true);
    let mut out = Vec::new();
    s.answer(&q, TransportKind::Datagram, &mut out).await.expect("response");
    proto::Message::parse(&out).expect("valid")
}

#[tokio::test]
async fn ttls_count_down_and_stale_answers_carry_ede_3() {
    let clock = Arc::new(recursor::ManualClock::new(1_000_000));
    let (lab, s) = service_at(clock.clone()).await;
    let m = answer(&s, "www.example.test", rtype::A).await;
    assert_eq!(m.answer[0].ttl, 3600);
    clock.advance(100);
    let m = answer(&s, "www.example.test", rtype::A).await;
    assert_eq!(m.answer[0].ttl, 3500, "TTLs count down as they are served");
    // Past expiry with every authority gone: the stale answer, TTL 30, EDE 3.
    clock.advance(3600);
    drop(lab);
    let m = answer(&s, "www.example.test", rtype::A).await;
    assert_eq!(m.rcode(), 0);
    assert_eq!(m.answer[0].ttl, cache::STALE_TTL);
    assert_eq!(m.ede()[0].0, proto::ede::code::STALE_ANSWER);
    // Past the stale window nothing is served: SERVFAIL with a reason.
    clock.advance(2 * 86_400);
    let m = answer(&s, "www.example.test", rtype::A).await;
    assert_eq!(m.rcode(), 2);
    assert!(!m.ede().is_empty());
}

/// A hit in the last tenth of an answer's TTL is answered from the cache
/// and has the answer resolved again in the background (Unbound's
/// `prefetch`), once: the next hits find it fresh, with its whole TTL.
#[tokio::test]
async fn answers_hit_near_their_expiry_are_refreshed_once_in_the_background() {
    let clock = Arc::new(recursor::ManualClock::new(1_000_000));
    let (_lab, s) = service_at(clock.clone()).await;
    let s = Arc::new(s);
    tokio::spawn(s.clone().run_prefetch());
    assert_eq!(answer(&s, "www.example.test", rtype::A).await.answer[0].ttl, 3600);
    let q = query("www.example.test", rtype::A, true);
    let mut out = Vec::new();
    let fast = |out: &mut Vec<u8>| match s.try_fast(&q, TransportKind::Datagram, out) {
        FastPath::Answered(len) => Message::parse(&out[..len]).expect("valid").answer[0].ttl,
        _ => panic!("not answered from the cache"),
    };
    // Before the last tenth: no refresh.
    clock.advance(3000);
    assert_eq!(fast(&mut out), 600);
    tokio::task::yield_now().await;
    assert_eq!(s.prefetch_stats(), (0, 0));
    // In it: served as it is, and refreshed behind.
    clock.advance(300);
    assert_eq!(fast(&mut out), 300);
    assert_eq!(fast(&mut out), 300, "a second hit before the refresh ends");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.prefetch_stats().1 == 0 {
        assert!(std::time::Instant::now() < deadline, "no refresh");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(s.prefetch_stats(), (1, 1), "one refresh for both hits");
    assert_eq!(fast(&mut out), 3600, "the refreshed answer, whole TTL");
}

#[tokio::test]
async fn negative_answers_are_cached_for_the_soa_minimum() {
    let clock = Arc::new(recursor::ManualClock::new(1_000_000));
    let (lab, s) = service_at(clock.clone()).await;
    let m = answer(&s, "nope.example.test", rtype::A).await;
    assert_eq!(m.rcode(), 3);
    assert_eq!(m.authority[0].ttl, 300, "SOA minimum");
    drop(lab);
    clock.advance(200);
    let m = answer(&s, "nope.example.test", rtype::A).await;
    assert_eq!((m.rcode(), m.authority[0].ttl), (3, 100), "served from the negative cache");
}

/// A resolution failure is cached (RFC 9520): the same question is then
/// answered on the fast path with the same SERVFAIL and EDE, for 5 s the
/// first time and twice as long each time the failure persists; an
/// expired failure is never served stale.
#[tokio::test]
async fn resolution_failures_are_cached_with_backoff() {
    let clock = Arc::new(recursor::ManualClock::new(1_000_000));
    let (_lab, s) = service_at(clock.clone()).await;
    let q = query("www.dead.test", rtype::A, true);
    let mut out = Vec::new();
    let fast = |out: &mut Vec<u8>| match s.try_fast(&q, TransportKind::Datagram, out) {
        FastPath::Answered(len) => Some(Message::parse(&out[..len]).expect("valid")),
        _ => None,
    };
    for ttl in [5, 10, 20] {
        s.answer(&q, TransportKind::Datagram, &mut out).await.expect("response");
        let first = Message::parse(&out).expect("valid");
        assert_eq!(first.rcode(), 2);
        assert_eq!(first.ede()[0].0, proto::ede::code::NETWORK_ERROR);
        let cached = fast(&mut out).expect("the failure is answered from the cache");
        assert_eq!((cached.id, cached.rcode(), cached.ede()), (0x4242, 2, first.ede()));
        assert!(cached.has_flag(flags::RD) && cached.has_flag(flags::RA) && !cached.has_flag(flags::AA));
        clock.advance(ttl - 1);
        assert!(fast(&mut out).is_some(), "still cached {} s after", ttl - 1);
        clock.advance(1);
        assert!(fast(&mut out).is_none(), "gone after {ttl} s, and not served stale");
    }
    // A question that fails only once gets the base time again: a positive
    // answer under the same name is unaffected by the failures.
    assert_eq!(answer(&s, "www.example.test", rtype::A).await.rcode(), 0);
}

/// The cache-hit path (parse, lookup, write into a reused buffer) makes no
/// heap allocation at all.
#[tokio::test]
async fn cache_hit_path_allocates_nothing() {
    let (_lab, s) = service().await;
    let q = query("www.example.test", rtype::A, true);
    let mut out = Vec::with_capacity(65535);
    s.answer(&q, TransportKind::Datagram, &mut out).await.expect("warm the cache");
    let mut result = FastPath::Miss;
    let info = allocation_counter::measure(|| {
        for _ in 0..100 {
            result = s.try_fast(&q, TransportKind::Datagram, &mut out);
        }
    });
    assert!(matches!(result, FastPath::Answered(_)));
    assert_eq!(info.count_total, 0, "allocations on the hit path: {info:?}");
    // The counter is live: the slow path does allocate.
    let live = allocation_counter::measure(|| drop(std::hint::black_box(q.to_vec())));
    assert!(live.count_total > 0);
}

/// RFC 8467: on an encrypted transport a padded query gets a response padded
/// to a multiple of 468 octets; unpadded queries and plain TCP do not.
#[tokio::test]
async fn responses_are_padded_on_encrypted_transports_when_asked() {
    let (_lab, s) = service().await;
    let mut padded = query("www.example.test", rtype::A, true);
    // Replace the empty OPT rdata with one empty Padding option.
    let n = padded.len();
    padded[n - 2..].copy_from_slice(&4u16.to_be_bytes());
    padded.extend_from_slice(&[0, 12, 0, 0]);
    let plain = query("www.example.test", rtype::A, true);
    let mut out = Vec::new();
    for _ in 0..2 {
        // The second round is served from the cache (the fast path).
        let n = s.answer(&padded, TransportKind::EncryptedStream, &mut out).await.expect("response");
        assert_eq!(n % 468, 0, "padded to the block: {n}");
        let m = Message::parse(&out).expect("valid");
        assert!(m.edns.as_ref().is_some_and(|e| e.options.iter().any(|(c, _)| *c == 12)));
        assert_eq!(m.answer[0].address().map(|a| a.to_string()), Some("192.0.2.10".into()));
    }
    let n = s.answer(&padded, TransportKind::Stream, &mut out).await.expect("response");
    assert_ne!(n % 468, 0, "no padding on plain TCP");
    let n = s.answer(&plain, TransportKind::EncryptedStream, &mut out).await.expect("response");
    assert_ne!(n % 468, 0, "no padding when the query was not padded");
    // Errors are padded too.
    let mut bad = query("www.dead.test", rtype::A, true);
    let k = bad.len();
    bad[k - 2..].copy_from_slice(&4u16.to_be_bytes());
    bad.extend_from_slice(&[0, 12, 0, 0]);
    let n = s.answer(&bad, TransportKind::EncryptedStream, &mut out).await.expect("servfail");
    assert_eq!((Message::parse(&out).expect("valid").rcode(), n % 468), (2, 0));
}

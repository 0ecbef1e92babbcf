use std::time::{Duration, Instant};

use proto::rtype;
use recursor::{Outcome, ResolveError};

use crate::{n, setup};

/// Every fault ends in an answer or an error well within the budget
/// (3 s configured in `setup`, plus scheduling slack).
async fn within_budget(name: &str) -> Result<recursor::Resolution, ResolveError> {
    let (_lab, r) = setup().await;
    let started = Instant::now();
    let res = r.resolve(&n(name), rtype::A).await;
    assert!(started.elapsed() < Duration::from_millis(3500), "{name} took {:?}", started.elapsed());
    res
}

#[tokio::test]
async fn dead_server_is_a_network_error_and_silent_one_unreachable() {
    // Nothing listens on the dead server: loopback answers ICMP
    // port-unreachable, which is a network error (EDE 23).
    let err = within_budget("www.dead.test").await.expect_err("dead");
    assert_eq!(err.ede_code(), proto::ede::code::NETWORK_ERROR);
    // A server that never replies in time: no reachable authority (EDE 22).
    let err = within_budget("www.veryslow.test").await.expect_err("silent");
    assert_eq!(err.ede_code(), proto::ede::code::NO_REACHABLE_AUTHORITY);
}

#[tokio::test]
async fn half_dead_zone_answers_from_the_live_server() {
    let res = within_budget("www.half.test").await.expect("answer via the live server");
    assert_eq!(res.outcome, Outcome::Answer);
}

#[tokio::test]
async fn slow_server_answers_very_slow_fails_in_time() {
    assert!(within_budget("www.slow.test").await.is_ok());
    assert!(within_budget("www.veryslow.test").await.is_err());
}

#[tokio::test]
async fn lame_refused_servfail_malformed_wrong_id_wrong_question_fail_cleanly() {
    for name in [
        "www.lame.test",
        "www.refused.test",
        "www.servfail.test",
        "www.malformed.test",
        "www.wrongid.test",
        "www.wrongq.test",
    ] {
        let err = within_budget(name).await.expect_err(name);
        assert!(
            matches!(err, ResolveError::NoReachableAuthority { .. } | ResolveError::BudgetExhausted(_)),
            "{name}: {err:?}"
        );
    }
}

#[tokio::test]
async fn edns_intolerant_and_always_truncating_servers_work() {
    assert_eq!(within_budget("www.formerr.test").await.expect("formerr").outcome, Outcome::Answer);
    assert_eq!(within_budget("www.tcalways.test").await.expect("tc").outcome, Outcome::Answer);
}

#[tokio::test]
async fn poison_never_reaches_the_cache() {
    let (_lab, r) = setup().await;
    let res = r.resolve(&n("www.poison.test"), rtype::A).await.expect("poison zone answers");
    assert_eq!(res.outcome, Outcome::Answer);
    // The out-of-bailiwick www.example.test A 203.0.113.66 and the NS for
    // example.test must not have been cached.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs();
    assert!(r.cache().get(&n("www.example.test"), rtype::A, now).is_none());
    assert!(r.cache().get(&n("example.test"), rtype::NS, now).is_none());
    let res = r.resolve(&n("www.example.test"), rtype::A).await.expect("resolves");
    assert_eq!(res.answer[0].address().map(|a| a.to_string()), Some("192.0.2.10".to_string()));
}

/// A reply that comes from another address than the server's (an off-path
/// spoofer that guessed the ID and port) is never taken: the upstream
/// socket is connected, so the kernel drops it, and the query times out;
/// the same reply from the server's own address is taken.
#[tokio::test]
async fn replies_from_another_address_are_not_taken() {
    use recursor::{NetTransport, Transport, TransportError, UpstreamQuery};
    use tokio::net::UdpSocket;

    let server = UdpSocket::bind("127.0.0.1:0").await.expect("server socket");
    let spoofer = UdpSocket::bind("127.0.0.2:0").await.expect("spoofer socket");
    let addr = server.local_addr().expect("addr");
    let query = |timeout_ms| UpstreamQuery {
        server: addr,
        qname: crate::n("www.example.test"),
        qtype: proto::rtype::A,
        recursion_desired: false,
        edns: Some(1232),
        dnssec_ok: false,
        tcp: false,
        timeout: std::time::Duration::from_millis(timeout_ms),
        ecs: None,
        cookie: None,
    };
    // Answers each query with a well-formed reply (same ID and question),
    // sent from the spoofer's socket the first time, then from the server's.
    let answering = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        for from_spoofer in [true, false] {
            let (len, client) = server.recv_from(&mut buf).await.expect("query");
            let mut reply = buf[..len].to_vec();
            reply[2] |= 0x80; // QR
            let socket = if from_spoofer { &spoofer } else { &server };
            socket.send_to(&reply, client).await.expect("reply");
        }
    });
    let net = NetTransport::default();
    assert_eq!(net.query(query(300)).await.err(), Some(TransportError::Timeout), "the spoofed reply is not taken");
    let reply = net.query(query(2000)).await.expect("the server's own reply is taken");
    assert!(reply.has_flag(proto::flags::QR));
    answering.await.expect("answering task");
}

use proto::rtype;
use recursor::Outcome;

use crate::{n, setup, setup_with};

fn addrs(res: &recursor::Resolution) -> Vec<String> {
    res.answer.iter().filter_map(|r| r.address()).map(|a| a.to_string()).collect()
}

#[tokio::test]
async fn resolves_plain_answer_with_and_without_minimisation() {
    for minimise in [true, false] {
        let (_lab, r) = setup_with(|c| c.qname_minimisation = minimise).await;
        let res = r.resolve(&n("www.example.test"), rtype::A).await.expect("resolves");
        assert_eq!(res.outcome, Outcome::Answer);
        assert_eq!(addrs(&res), ["192.0.2.10"]);
        let res = r.resolve(&n("www.example.test"), rtype::AAAA).await.expect("resolves");
        assert_eq!(addrs(&res), ["2001:db8::10"]);
    }
}

#[tokio::test]
async fn nxdomain_and_nodata_are_outcomes_with_soa() {
    let (_lab, r) = setup().await;
    let res = r.resolve(&n("nope.example.test"), rtype::A).await.expect("resolves");
    assert_eq!(res.outcome, Outcome::NxDomain);
    assert_eq!(res.authority[0].rtype, rtype::SOA);
    let res = r.resolve(&n("mail.example.test"), rtype::AAAA).await.expect("resolves");
    assert_eq!(res.outcome, Outcome::NoData);
    // Served again from the negative cache.
    let res = r.resolve(&n("nope.example.test"), rtype::MX).await.expect("resolves");
    assert_eq!(res.outcome, Outcome::NxDomain);
}

#[tokio::test]
async fn cname_chain_across_zones_and_dname() {
    let (_lab, r) = setup().await;
    let res = r.resolve(&n("c1.chain.test"), rtype::A).await.expect("resolves");
    assert_eq!(res.outcome, Outcome::Answer);
    assert_eq!(addrs(&res), ["192.0.2.66"]);
    assert_eq!(res.answer.iter().filter(|r| r.rtype == rtype::CNAME).count(), 5);
    let res = r.resolve(&n("www.old.dname.test"), rtype::A).await.expect("resolves");
    assert_eq!(res.answer[0].rtype, rtype::DNAME);
    assert_eq!(res.answer[1].rtype, rtype::CNAME);
    assert_eq!(res.answer.last().map(|r| r.name.to_string()), Some("www.z004.test.".into()));
    assert_eq!(res.answer.last().map(|r| r.rtype), Some(rtype::A));
    let res = r.resolve(&n("dangling.chain.test"), rtype::A).await.expect("resolves");
    assert_eq!(res.outcome, Outcome::NxDomain);
    assert_eq!(res.answer.len(), 1);
}

#[tokio::test]
async fn cname_loops_and_long_chains_fail() {
    let (_lab, r) = setup().await;
    assert!(r.resolve(&n("loop1.chain.test"), rtype::A).await.is_err());
    assert!(r.resolve(&n("long1.chain.test"), rtype::A).await.is_err());
}

#[tokio::test]
async fn wildcard_ent_big_deep_and_glueless() {
    let (_lab, r) = setup().await;
    let res = r.resolve(&n("anything.wild.z005.test"), rtype::A).await.expect("wildcard");
    assert_eq!(res.outcome, Outcome::Answer);
    let res = r.resolve(&n("b.ent.z010.test"), rtype::A).await.expect("ent");
    assert_eq!(res.outcome, Outcome::NoData);
    let res = r.resolve(&n("txt.big.test"), rtype::TXT).await.expect("big over TCP");
    assert_eq!(res.answer.len(), 40);
    let res = r.resolve(&n("www.l4.l3.l2.l1.deep.test"), rtype::A).await.expect("deep");
    assert_eq!(addrs(&res), ["192.0.2.44"]);
    let res = r.resolve(&n("www.glueless.test"), rtype::A).await.expect("glueless");
    assert_eq!(addrs(&res), ["192.0.2.50"]);
    let res = r.resolve(&n("www.sub.z011.test"), rtype::A).await.expect("sub");
    assert_eq!(res.outcome, Outcome::Answer);
}

#[tokio::test]
async fn identical_questions_in_flight_are_coalesced() {
    use std::sync::atomic::Ordering;
    // One resolution alone, for reference.
    let (_lab, r, counting) = crate::setup_counting().await;
    r.resolve(&n("www.z042.test"), rtype::A).await.expect("resolves");
    let single = counting.sent.load(Ordering::Relaxed);
    assert!(single >= 3, "root, TLD and zone were asked: {single}");
    // Twenty at once on a fresh recursor: the same upstream work.
    let (_lab, r, counting) = crate::setup_counting().await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move { r.resolve(&n("www.z042.test"), rtype::A).await }));
    }
    for t in tasks {
        let res = t.await.expect("task").expect("resolves");
        assert_eq!(res.outcome, Outcome::Answer);
    }
    assert_eq!(counting.sent.load(Ordering::Relaxed), single, "twenty questions, one resolution");
}

#[tokio::test]
async fn forward_zone_sends_rd_queries_to_the_forwarders() {
    let (lab, _) = setup().await;
    let port = lab.port();
    // Forward example.test to its authoritative server, and break the root
    // hints: the answer can only have come through the forwarder.
    let (_lab2, r) = setup_with(|c| {
        c.root_hints = vec!["127.0.0.1".parse().expect("ip")];
        c.forward_zones.push(recursor::ForwardZone {
            name: n("example.test"),
            servers: vec![std::net::SocketAddr::new("127.53.2.1".parse().expect("ip"), port)],
        });
    })
    .await;
    let res = r.resolve(&n("www.example.test"), rtype::A).await.expect("forwarded");
    assert_eq!(addrs(&res), ["192.0.2.10"]);
    assert!(r.resolve(&n("www.z001.test"), rtype::A).await.is_err(), "outside the forward zone the broken hints fail");
}

#[tokio::test]
async fn forward_and_stub_zones() {
    // A second recursor forwards `test.` to nothing reachable but the stub
    // for example.test points straight at its authorities.
    let (lab, _) = setup().await;
    let port = lab.port();
    let (_lab2, r) = setup_with(|c| {
        c.stub_zones.push(recursor::StubZone {
            name: n("example.test"),
            servers: vec![std::net::SocketAddr::new("127.53.2.1".parse().expect("ip"), port)],
        });
    })
    .await;
    let res = r.resolve(&n("www.example.test"), rtype::A).await.expect("stub");
    assert_eq!(addrs(&res), ["192.0.2.10"]);
}

#[tokio::test]
async fn dname_is_kept_when_the_name_was_asked_before() {
    let (_lab, r) = setup().await;
    r.resolve(&n("www.old.dname.test"), rtype::AAAA).await.expect("first");
    let res = r.resolve(&n("www.old.dname.test"), rtype::A).await.expect("second");
    assert_eq!(res.answer[0].rtype, rtype::DNAME, "{:?}", res.answer);
}

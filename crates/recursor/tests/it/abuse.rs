//! The resolver as a weapon: a random-subdomain flood reaches the victim
//! zone's servers at no more than its limit, and a referral naming many
//! glueless name servers (NXNSAttack) sends only a few of them out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::{Lab, LabData};
use proto::build::Section;
use proto::wire::{Rcode, flags, rtype};
use proto::{Message, MessageWriter, Name, Record, class};
use recursor::{
    NetTransport, Recursor, ResolveError, SystemClock, Transport, TransportError, UpstreamLimits, UpstreamQuery,
};

use crate::n;

type Reply<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Message, TransportError>> + Send + 'a>>;

/// Records every upstream question, then asks the lab.
struct Recording {
    asked: Mutex<Vec<Name>>,
    inner: NetTransport,
}

impl Transport for Recording {
    fn query(&self, q: UpstreamQuery) -> Reply<'_> {
        self.asked.lock().expect("lock").push(q.qname.clone());
        self.inner.query(q)
    }
}

fn under(asked: &[Name], zone: &Name) -> usize {
    asked.iter().filter(|q| q.is_subdomain_of(zone) && *q != zone).count()
}

#[tokio::test]
async fn a_random_subdomain_flood_reaches_the_victim_at_its_limit() {
    let data = Arc::new(LabData::builtin().expect("lab data"));
    let lab = Lab::start(data, 0).await.expect("lab starts");
    let mut config = crate::lab_config(&lab);
    let limit = 20;
    config.upstream_limits = UpstreamLimits { zone_per_second: limit, ..UpstreamLimits::default() };
    let transport = Arc::new(Recording { asked: Mutex::new(Vec::new()), inner: NetTransport::default() });
    let r = Recursor::new(config, transport.clone(), Arc::new(SystemClock));
    // A popular name, resolved before the flood.
    let popular = r.resolve(&n("www.unsigned.test"), rtype::A).await.expect("resolves");
    let victim = n("unsigned.test");
    let before = under(&transport.asked.lock().expect("lock"), &victim);
    let start = Instant::now();
    let mut limited = 0;
    // 400 names nobody asked before, in waves over about a second.
    for wave in 0..4 {
        let mut flood = tokio::task::JoinSet::new();
        for i in 0..100 {
            let (r, q) = (r.clone(), n(&format!("r{wave}x{i}.unsigned.test")));
            flood.spawn(async move { r.resolve(&q, rtype::A).await });
        }
        for x in flood.join_all().await {
            limited += usize::from(matches!(x, Err(ResolveError::UpstreamLimited { .. })));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let sent = under(&transport.asked.lock().expect("lock"), &victim) - before;
    // A full bucket (one second) plus what refills while the flood lasts.
    let allowed = limit as f64 * (1.0 + elapsed) + 1.0;
    assert!(sent as f64 <= allowed, "{sent} queries reached the victim in {elapsed:.2} s (limit {limit}/s)");
    assert!(sent >= limit as usize, "the limit lets its rate through ({sent})");
    assert!(limited >= 300, "most of the flood is refused here, not sent ({limited})");
    assert!(r.upstream_refused().0 >= limited as u64);
    let err = ResolveError::UpstreamLimited { zone: "unsigned.test.".into() };
    assert_eq!(err.ede_code(), proto::ede::code::NO_REACHABLE_AUTHORITY);
    // The popular name is still answered, from the cache.
    let again = r.resolve(&n("www.unsigned.test"), rtype::A).await.expect("cached");
    let rdata = |res: &recursor::Resolution| res.answer.iter().map(|x| x.rdata.clone()).collect::<Vec<_>>();
    assert_eq!(rdata(&again), rdata(&popular));
    // Another zone is not affected.
    r.resolve(&n("www.example.test"), rtype::A).await.expect("another zone resolves");
    drop(lab);
}

/// An authority at one address that serves the root: `attack.test` is
/// delegated to twenty name servers under `victim.test`, none with glue;
/// every name under `victim.test` is NXDOMAIN; the root's own NS has glue.
struct NxnsRoot {
    asked: Mutex<Vec<Name>>,
}

fn rec(name: &Name, rtype: u16, rdata: Vec<u8>) -> Record {
    Record { name: name.clone(), rtype, class: class::IN, ttl: 300, rdata: rdata.into() }
}

/// What the fake root says about a name it does not delegate: its own NS
/// (with glue at 127.0.0.1) when asked for it, else NODATA or NXDOMAIN
/// with its SOA.
fn root_answer(w: &mut MessageWriter<'_>, q: &UpstreamQuery) {
    let root = n(".");
    if q.qname == root && q.qtype == rtype::NS {
        let ns = n("ns.root.");
        w.record(Section::Answer, &rec(&root, rtype::NS, ns.as_wire().to_vec()));
        w.record(Section::Additional, &rec(&ns, rtype::A, vec![127, 0, 0, 1]));
    } else {
        w.record(Section::Authority, &soa(&root));
    }
}

/// A recursor whose only root server is the fake at 127.0.0.1.
fn fake_root_config() -> recursor::RecursorConfig {
    recursor::RecursorConfig {
        root_hints: vec!["127.0.0.1".parse().expect("ip")],
        do_not_query_localhost: false,
        initial_timeout: Duration::from_millis(400),
        max_timeout: Duration::from_millis(400),
        resolution_timeout: Duration::from_millis(3000),
        ..recursor::RecursorConfig::default()
    }
}

fn soa(zone: &Name) -> Record {
    let mut rdata = n("ns.root.").as_wire().to_vec();
    rdata.extend_from_slice(n("hostmaster.root.").as_wire());
    for v in [1u32, 3600, 600, 86400, 300] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    rec(zone, rtype::SOA, rdata)
}

impl Transport for NxnsRoot {
    fn query(&self, q: UpstreamQuery) -> Reply<'_> {
        Box::pin(async move {
            self.asked.lock().expect("lock").push(q.qname.clone());
            let (attack, victim) = (n("attack.test"), n("victim.test"));
            let mut buf = Vec::new();
            let (rcode, aa) = if q.qname.is_subdomain_of(&victim) {
                (Rcode::NxDomain, flags::AA)
            } else {
                (Rcode::NoError, flags::AA)
            };
            let referral = q.qname.is_subdomain_of(&attack);
            let fl = flags::QR | if referral { 0 } else { aa } | rcode as u16;
            let mut w = MessageWriter::new(&mut buf, 0, fl);
            w.question(q.qname.as_wire(), q.qtype, class::IN);
            if referral {
                for i in 0..20 {
                    let ns = n(&format!("ns{i}.victim.test"));
                    w.record(Section::Authority, &rec(&attack, rtype::NS, ns.as_wire().to_vec()));
                }
            } else {
                root_answer(&mut w, &q);
            }
            w.finish();
            Message::parse(&buf).map_err(|_| TransportError::Malformed)
        })
    }
}

#[tokio::test]
async fn a_referral_to_many_glueless_servers_resolves_only_a_few_of_them() {
    let config = fake_root_config();
    let root = Arc::new(NxnsRoot { asked: Mutex::new(Vec::new()) });
    let r = Recursor::new(config, root.clone(), Arc::new(SystemClock));
    let res = r.resolve(&n("www.attack.test"), rtype::A).await;
    assert!(res.is_err(), "no name server of attack.test exists: {res:?}");
    let asked = root.asked.lock().expect("lock").clone();
    let mut servers: Vec<String> = asked
        .iter()
        .filter(|q| q.is_subdomain_of(&n("victim.test")))
        .filter_map(|q| q.to_string().split('.').find(|l| l.starts_with("ns")).map(str::to_string))
        .collect();
    servers.sort();
    servers.dedup();
    assert!(!servers.is_empty(), "glueless name servers are looked up: {asked:?}");
    assert!(servers.len() <= 3, "at most three of the twenty were resolved: {servers:?}");
    let victim_queries = asked.iter().filter(|q| q.is_subdomain_of(&n("victim.test"))).count();
    assert!(victim_queries <= 12, "{victim_queries} queries toward the victim: {asked:?}");
}

/// The root delegates `cyc-a.test` to `ns.cyc-b.test` and `cyc-b.test` to
/// `ns.cyc-a.test`, without glue: neither can ever be reached (TsuNAME).
struct CycleRoot {
    asked: Mutex<Vec<Name>>,
}

impl Transport for CycleRoot {
    fn query(&self, q: UpstreamQuery) -> Reply<'_> {
        Box::pin(async move {
            self.asked.lock().expect("lock").push(q.qname.clone());
            let (a, b) = (n("cyc-a.test"), n("cyc-b.test"));
            let mut buf = Vec::new();
            let cut =
                [(&a, "ns.cyc-b.test"), (&b, "ns.cyc-a.test")].into_iter().find(|(z, _)| q.qname.is_subdomain_of(z));
            let fl = flags::QR | if cut.is_some() { 0 } else { flags::AA };
            let mut w = MessageWriter::new(&mut buf, 0, fl);
            w.question(q.qname.as_wire(), q.qtype, class::IN);
            match cut {
                Some((zone, ns)) => w.record(Section::Authority, &rec(zone, rtype::NS, n(ns).as_wire().to_vec())),
                None => root_answer(&mut w, &q),
            }
            w.finish();
            Message::parse(&buf).map_err(|_| TransportError::Malformed)
        })
    }
}

#[tokio::test]
async fn a_cyclic_delegation_is_detected_and_then_costs_nothing() {
    let config = fake_root_config();
    let root = Arc::new(CycleRoot { asked: Mutex::new(Vec::new()) });
    let r = Recursor::new(config, root.clone(), Arc::new(SystemClock));
    let first = r.resolve(&n("www.cyc-a.test"), rtype::A).await;
    assert!(first.is_err(), "{first:?}");
    let spent = root.asked.lock().expect("lock").len();
    assert!(spent <= 6, "the cycle is cut short: {spent} queries: {:?}", root.asked.lock().expect("lock"));
    // Other names under either zone now fail at once, from what the
    // infrastructure cache remembers.
    for name in ["mail.cyc-a.test", "www.cyc-b.test", "x.y.cyc-a.test"] {
        let t = Instant::now();
        assert!(r.resolve(&n(name), rtype::A).await.is_err());
        assert!(t.elapsed() < Duration::from_millis(300), "{name} took {:?}", t.elapsed());
    }
    let later = root.asked.lock().expect("lock").len();
    assert_eq!(later - spent, 0, "{} more queries for names under dead delegations", later - spent);
}

/// A scripted network: `answer` gives each query's reply (or a timeout).
struct Scripted<F> {
    asked: Mutex<Vec<(std::net::SocketAddr, Name)>>,
    answer: F,
}

impl<F> Transport for Scripted<F>
where
    F: Fn(&UpstreamQuery) -> Result<Vec<u8>, TransportError> + Send + Sync + 'static,
{
    fn query(&self, q: UpstreamQuery) -> Reply<'_> {
        Box::pin(async move {
            self.asked.lock().expect("lock").push((q.server, q.qname.clone()));
            let wire = (self.answer)(&q)?;
            Message::parse(&wire).map_err(|_| TransportError::Malformed)
        })
    }
}

/// The root at 127.0.0.1: `lame-ns.test` is delegated to
/// `ns.failer.test` (no glue), `failer.test` to `dns.failer.test` at
/// 127.0.0.3, which answers SERVFAIL to everything; `dark.test` to a
/// server at 127.0.0.4 that never answers.
fn refuser_root(q: &UpstreamQuery) -> Result<Vec<u8>, TransportError> {
    let mut buf = Vec::new();
    if q.server.ip() == std::net::IpAddr::from([127, 0, 0, 4]) {
        return Err(TransportError::Timeout);
    }
    if q.server.ip() == std::net::IpAddr::from([127, 0, 0, 3]) {
        let mut w = MessageWriter::new(&mut buf, 0, flags::QR | Rcode::ServFail as u16);
        w.question(q.qname.as_wire(), q.qtype, class::IN);
        w.finish();
        return Ok(buf);
    }
    let cuts = [
        ("lame-ns.test", "ns.failer.test", None),
        ("failer.test", "dns.failer.test", Some([127, 0, 0, 3])),
        ("dark.test", "ns.dark.test", Some([127, 0, 0, 4])),
    ];
    let cut = cuts.iter().find(|(z, _, _)| q.qname.is_subdomain_of(&n(z)));
    let mut w = MessageWriter::new(&mut buf, 0, flags::QR | if cut.is_some() { 0 } else { flags::AA });
    w.question(q.qname.as_wire(), q.qtype, class::IN);
    match cut {
        Some((zone, ns, glue)) => {
            w.record(Section::Authority, &rec(&n(zone), rtype::NS, n(ns).as_wire().to_vec()));
            if let Some(a) = glue {
                w.record(Section::Additional, &rec(&n(ns), rtype::A, a.to_vec()));
            }
        }
        None => root_answer(&mut w, q),
    }
    w.finish();
    Ok(buf)
}

/// A script as a plain function.
type Script = fn(&UpstreamQuery) -> Result<Vec<u8>, TransportError>;

fn scripted_recursor() -> (Recursor, Arc<Scripted<Script>>) {
    let config = fake_root_config();
    let net = Arc::new(Scripted { asked: Mutex::new(Vec::new()), answer: refuser_root as Script });
    (Recursor::new(config, net.clone(), Arc::new(SystemClock)), net)
}

#[tokio::test]
async fn a_delegation_whose_name_servers_cannot_be_found_is_remembered_dead() {
    let (r, net) = scripted_recursor();
    assert!(r.resolve(&n("www.lame-ns.test"), rtype::A).await.is_err());
    let spent = net.asked.lock().expect("lock").len();
    assert!(net.asked.lock().expect("lock").iter().any(|(s, _)| s.ip() == std::net::IpAddr::from([127, 0, 0, 3])));
    // ns.failer.test got no address (its server fails): names under
    // lame-ns.test now fail at once, without asking again.
    for name in ["mail.lame-ns.test", "a.b.lame-ns.test", "c.lame-ns.test"] {
        assert!(r.resolve(&n(name), rtype::A).await.is_err());
    }
    let later = net.asked.lock().expect("lock").len();
    assert_eq!(
        later,
        spent,
        "names under a dead delegation cost nothing: {:?}",
        &net.asked.lock().expect("lock")[spent..]
    );
}

#[tokio::test]
async fn a_zone_whose_servers_all_timed_out_fails_at_once_until_the_backoff_ends() {
    let (r, net) = scripted_recursor();
    let t = Instant::now();
    assert!(r.resolve(&n("www.dark.test"), rtype::A).await.is_err());
    let first = t.elapsed();
    let spent = net.asked.lock().expect("lock").len();
    let t = Instant::now();
    assert!(r.resolve(&n("mail.dark.test"), rtype::A).await.is_err());
    let second = t.elapsed();
    // Well under the 400 ms timeout the first name waited for.
    assert!(second < Duration::from_millis(200), "the second name took {second:?} (the first {first:?})");
    assert_eq!(net.asked.lock().expect("lock").len(), spent, "no query to a server known dead");
}

/// An authority on a real socket that answers every A query with two
/// replies: first a spoof carrying another client cookie (and a poisoned
/// address), then its own, with the client's cookie and a server cookie.
/// Queries without a server cookie get BADCOOKIE (it requires cookies).
async fn cookie_authority() -> (std::net::SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = sock.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let secret = [0x5a; 16];
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else { return };
            let Ok(q) = Message::parse(&buf[..n]) else { continue };
            let Some(question) = q.question.clone() else { continue };
            let option = q.edns.as_ref().and_then(|e| e.options.iter().find(|(c, _)| *c == proto::wire::OPT_COOKIE));
            let Some((_, data)) = option else { continue };
            log.lock().expect("lock").push(data.to_vec());
            let Ok(c) = proto::cookie::CookieView::parse(data) else { continue };
            let fresh = proto::cookie::server_cookie(&secret, &c.client, peer.ip(), 1_900_000_000);
            let valid = c.server == fresh;
            let reply = |client: [u8; 8], address: [u8; 4], rcode: u16| {
                let mut cookie = client.to_vec();
                cookie.extend_from_slice(&fresh);
                let mut out = Vec::new();
                let mut w = MessageWriter::new(&mut out, q.id, flags::QR | flags::AA | (rcode & 0xf));
                w.question(question.name.as_wire(), question.qtype, class::IN);
                if rcode == 0 {
                    w.record(Section::Answer, &rec(&question.name, rtype::A, address.to_vec()));
                }
                w.opt_with(1232, false, &[(proto::wire::OPT_COOKIE, &cookie)]);
                // The extended bits of BADCOOKIE (23 = 1 << 4 | 7).
                if rcode > 15 {
                    let (at, _) = proto::cookie::find_opt(&out).expect("opt");
                    out[at - 4] = (rcode >> 4) as u8;
                }
                out
            };
            let mut spoofed = c.client;
            spoofed[0] ^= 0xff;
            let _ = sock.send_to(&reply(spoofed, [6, 6, 6, 6], 0), peer).await;
            let genuine = if valid { reply(c.client, [192, 0, 2, 1], 0) } else { reply(c.client, [0; 4], 23) };
            let _ = sock.send_to(&genuine, peer).await;
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn cookies_to_authorities_are_kept_and_spoofed_replies_dropped() {
    let (addr, seen) = cookie_authority().await;
    let config = recursor::RecursorConfig {
        root_hints: vec![addr.ip()],
        upstream_port: addr.port(),
        do_not_query_localhost: false,
        qname_minimisation: false,
        ..recursor::RecursorConfig::default()
    };
    let r = Recursor::new(config, Arc::new(NetTransport::default()), Arc::new(SystemClock));
    let res = r.resolve(&n("www.cookie.test"), rtype::A).await.expect("resolves");
    let addrs: Vec<_> = res.answer.iter().filter_map(|x| x.address()).map(|a| a.to_string()).collect();
    assert_eq!(addrs, ["192.0.2.1"], "the spoof with another client cookie was dropped");
    let res = r.resolve(&n("mail.cookie.test"), rtype::A).await.expect("resolves");
    assert_eq!(res.answer.iter().filter_map(|x| x.address()).map(|a| a.to_string()).collect::<Vec<_>>(), ["192.0.2.1"]);
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen[0].len(), 8, "the first query has a client cookie only");
    assert!(
        seen[1..].iter().all(|c| c.len() == 24 && c[..8] == seen[0][..]),
        "then the server cookie it was given: {seen:?}"
    );
    assert_eq!(seen.len(), 3, "one BADCOOKIE retry, then none: {seen:?}");
}

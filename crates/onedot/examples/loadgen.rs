//! The overload benchmark's load generator (`bench/overload.sh` runs it):
//! a legitimate population of many client addresses asking a mix of names
//! at a steady rate, beside one attack at a time, for a fixed time.
//!
//! Loopback only: every socket binds an address in 127.0.0.0/8 and the
//! server must be on loopback too. Prints one JSON object.
//!
//! ```text
//! loadgen --server 127.0.0.1:5401 --seconds 10 --names queries.txt \
//!         --legit-clients 300 --legit-qps 20000 \
//!         --attack water --zone unsigned.test --attack-qps 100000 --attack-prefixes 64
//! ```
//!
//! Attacks: `water` (random names under `--zone`), `reflect` (large
//! answers: DNSKEY, TXT, ANY, from many networks; bytes back per byte
//! sent are reported), `misses` (random names under each of the lab's
//! `zNNN.test` zones), `connflood` (`--conns` idle TCP connections and as
//! many that send half a length prefix), `none`.
//!
//! `--probe`: once the run is over, every name is asked once more without
//! recursion (RD=0, from the population's addresses), which a resolver
//! answers only from its cache: the share answered with data or a negative
//! answer is the legitimate mix's hit rate after the attack, whatever the
//! flood did to the cache.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

#[derive(Debug, Clone)]
struct Args {
    server: SocketAddr,
    seconds: f64,
    names: Vec<(String, u16)>,
    legit_clients: usize,
    legit_qps: f64,
    attack: String,
    attack_qps: f64,
    attack_prefixes: usize,
    zone: String,
    conns: usize,
    probe: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        server: "127.0.0.1:5401".parse()?,
        seconds: 10.0,
        names: Vec::new(),
        legit_clients: 300,
        legit_qps: 10_000.0,
        attack: "none".into(),
        attack_qps: 0.0,
        attack_prefixes: 64,
        zone: "unsigned.test".into(),
        conns: 2000,
        probe: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| anyhow::anyhow!("{k} needs a value"));
        match k.as_str() {
            "--server" => a.server = v()?.parse()?,
            "--seconds" => a.seconds = v()?.parse()?,
            "--names" => {
                let text = std::fs::read_to_string(v()?)?;
                for line in text.lines() {
                    let mut w = line.split_whitespace();
                    if let (Some(n), Some(t)) = (w.next(), w.next())
                        && let Some(t) = proto::rtype::from_text(t)
                    {
                        a.names.push((n.to_string(), t));
                    }
                }
            }
            "--legit-clients" => a.legit_clients = v()?.parse()?,
            "--legit-qps" => a.legit_qps = v()?.parse()?,
            "--attack" => a.attack = v()?,
            "--attack-qps" => a.attack_qps = v()?.parse()?,
            "--attack-prefixes" => a.attack_prefixes = v()?.parse()?,
            "--zone" => a.zone = v()?,
            "--conns" => a.conns = v()?.parse()?,
            "--probe" => a.probe = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    anyhow::ensure!(a.server.ip().is_loopback(), "the server must be on loopback");
    anyhow::ensure!(!a.names.is_empty() || a.legit_clients == 0, "--names is needed for the legitimate clients");
    anyhow::ensure!(a.seconds > 0.0 && a.seconds <= 600.0, "--seconds must be in (0, 600]");
    Ok(a)
}

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    if let Ok(n) = proto::Name::from_ascii(name) {
        proto::build::build_query(&mut q, id, n.as_wire(), qtype, true, Some(1232), false);
    }
    q
}

/// The legitimate population's results.
#[derive(Default)]
struct Legit {
    /// When the run started, and per quarter second of sending: queries
    /// sent, and answered within 100 ms (how a defence's reaction shows).
    start: std::sync::OnceLock<Instant>,
    timeline: std::sync::Mutex<Vec<(u32, u32)>>,
    sent: AtomicU64,
    answered: AtomicU64,
    within_100ms: AtomicU64,
    truncated: AtomicU64,
    servfail: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u32>>,
}

/// Legitimate client `i`: its own address in its own /24 (127.100.0.0 and
/// up), asking `names` in turn at `qps`; a truncated answer is asked again
/// over TCP, as a stub resolver does.
async fn legit_client(i: usize, a: Arc<Args>, qps: f64, out: Arc<Legit>, until: Instant) {
    let ip = Ipv4Addr::new(127, 100 + (i / 256) as u8, (i % 256) as u8, 1);
    let Ok(sock) = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0)).await else { return };
    let sock = Arc::new(sock);
    // ID → when it was sent and which name it asked.
    let pending: Arc<std::sync::Mutex<HashMap<u16, (Instant, usize)>>> = Default::default();
    let (rsock, rpending, rout, ra) = (sock.clone(), pending.clone(), out.clone(), a.clone());
    let server = a.server;
    let receiver = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let Ok(n) = rsock.recv(&mut buf).await else { return };
            if n < 12 {
                continue;
            }
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let Some((sent, k)) = rpending.lock().expect("lock").remove(&id) else { continue };
            let tc = buf[2] & 0x02 != 0;
            let rcode = buf[3] & 0x0f;
            if tc {
                rout.truncated.fetch_add(1, Ordering::Relaxed);
                // Again over TCP, the latency counted from the first try.
                let (name, qtype) = &ra.names[k % ra.names.len()];
                let q = query(id, name, *qtype);
                let out = rout.clone();
                tokio::spawn(async move {
                    if tcp_ask(server, ip, &q).await.is_some() {
                        record(&out, sent, sent.elapsed());
                    }
                });
                continue;
            }
            if rcode == 2 {
                rout.servfail.fetch_add(1, Ordering::Relaxed);
            }
            record(&rout, sent, sent.elapsed());
        }
    });
    let gap = Duration::from_secs_f64(1.0 / qps.max(0.1));
    // Start at a random phase so clients do not send in lock-step.
    let mut next = Instant::now() + gap.mul_f64(rand::random::<f64>());
    let mut k = i * 7919;
    let mut id: u16 = rand::random();
    while next < until {
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        let (name, qtype) = &a.names[k % a.names.len()];
        id = id.wrapping_add(1);
        let q = query(id, name, *qtype);
        pending.lock().expect("lock").insert(id, (Instant::now(), k));
        k += 1;
        if sock.send_to(&q, a.server).await.is_ok() {
            out.sent.fetch_add(1, Ordering::Relaxed);
            out.mark(Instant::now(), false);
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    receiver.abort();
}

impl Legit {
    /// Counts a query sent at `at` in its quarter second of the timeline,
    /// as sent or (`answered`) as answered within 100 ms.
    fn mark(&self, at: Instant, answered: bool) {
        let start = *self.start.get_or_init(Instant::now);
        let i = (at.saturating_duration_since(start).as_millis() / 250) as usize;
        let mut t = self.timeline.lock().expect("lock");
        if t.len() <= i {
            t.resize(i + 1, (0, 0));
        }
        if answered {
            t[i].1 += 1;
        } else {
            t[i].0 += 1;
        }
    }
}

fn record(out: &Legit, sent: Instant, latency: Duration) {
    out.answered.fetch_add(1, Ordering::Relaxed);
    if latency <= Duration::from_millis(100) {
        out.mark(sent, true);
        out.within_100ms.fetch_add(1, Ordering::Relaxed);
    }
    out.latencies_us.lock().expect("lock").push(latency.as_micros().min(u32::MAX as u128) as u32);
}

/// `q` asked over TCP from `ip`; `Some` when an answer came back.
async fn tcp_ask(server: SocketAddr, ip: Ipv4Addr, q: &[u8]) -> Option<()> {
    let sock = tokio::net::TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::new(IpAddr::V4(ip), 0)).ok()?;
    let mut s = tokio::time::timeout(Duration::from_secs(2), sock.connect(server)).await.ok()?.ok()?;
    s.write_all(&(q.len() as u16).to_be_bytes()).await.ok()?;
    s.write_all(q).await.ok()?;
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut len)).await.ok()?.ok()?;
    let mut m = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut m).await.ok()?;
    Some(())
}

/// The attack's counters.
#[derive(Default)]
struct Attack {
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    received: AtomicU64,
    bytes_received: AtomicU64,
    connections: AtomicU64,
}

fn random_label() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The next flood query.
fn flood_query(kind: &str, zone: &str, k: u64) -> Vec<u8> {
    let id = k as u16;
    match kind {
        "water" => query(id, &format!("{}.{zone}", random_label()), proto::rtype::A),
        "misses" => query(id, &format!("{}.z{:03}.test", random_label(), 1 + k % 200), proto::rtype::A),
        _ => {
            // Reflection: the largest answers the lab has.
            let big = [
                ("example.test", proto::rtype::DNSKEY),
                ("big.test", proto::rtype::TXT),
                ("example.test", proto::rtype::ANY),
                (".", proto::rtype::DNSKEY),
            ];
            let (n, t) = big[(k % big.len() as u64) as usize];
            query(id, n, t)
        }
    }
}

/// A UDP flood from `prefixes` networks (127.200.0.0/24 and up, one
/// address each) at `qps`, in 1 ms ticks; replies are counted per byte.
async fn udp_flood(a: Arc<Args>, out: Arc<Attack>, until: Instant) {
    let mut socks = Vec::new();
    for p in 0..a.attack_prefixes.max(1) {
        let ip = Ipv4Addr::new(127, 200 + (p / 256) as u8, (p % 256) as u8, 1);
        if let Ok(s) = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0)).await {
            socks.push(Arc::new(s));
        }
    }
    for s in &socks {
        let (s, out) = (s.clone(), out.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 65535];
            while let Ok(n) = s.recv(&mut buf).await {
                out.received.fetch_add(1, Ordering::Relaxed);
                out.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    let start = Instant::now();
    let mut k = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < until {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * a.attack_qps) as u64;
        while k < due {
            let s = &socks[(k % socks.len() as u64) as usize];
            let q = flood_query(&a.attack, &a.zone, k);
            // A full socket buffer: this one is not sent.
            if let Ok(n) = s.try_send_to(&q, a.server) {
                out.sent.fetch_add(1, Ordering::Relaxed);
                out.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            k += 1;
            if k.is_multiple_of(256) {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Connection flood: `conns` idle connections and `conns` that send one
/// octet of a length prefix and stall, each from an attacker network,
/// held until the end.
async fn conn_flood(a: Arc<Args>, out: Arc<Attack>, until: Instant) {
    let mut held = Vec::new();
    for c in 0..a.conns * 2 {
        if Instant::now() >= until {
            break;
        }
        let p = c % a.attack_prefixes.max(1);
        let ip = Ipv4Addr::new(127, 200 + (p / 256) as u8, (p % 256) as u8, 1 + (c / 256 % 250) as u8);
        let Ok(sock) = tokio::net::TcpSocket::new_v4() else { continue };
        if sock.bind(SocketAddr::new(IpAddr::V4(ip), 0)).is_err() {
            continue;
        }
        if let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_millis(200), sock.connect(a.server)).await {
            if c % 2 == 1 {
                let _ = s.write_all(&[0]).await;
            }
            out.connections.fetch_add(1, Ordering::Relaxed);
            held.push(s);
        }
        if c % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Keep them open (whether the server closed them or not) until the end.
    tokio::time::sleep_until(until.into()).await;
    drop(held);
}

/// What `--probe` found: names asked, answered from the cache.
#[derive(Default)]
struct Probe {
    asked: AtomicU64,
    hit: AtomicU64,
}

/// Every name asked once with RD=0, 32 at a time, each from one of the
/// population's addresses. A hit is an answer with data, or a negative
/// answer (NXDOMAIN, or NOERROR with the zone's SOA): what a resolver
/// gives for RD=0 only from its cache (onedot refuses a name it has not
/// cached; Unbound gives a referral).
async fn probe(a: Arc<Args>, out: Arc<Probe>) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..32usize {
        let (a, out, next) = (a.clone(), out.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let clients = a.legit_clients.max(1);
            let mut buf = [0u8; 4096];
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((name, qtype)) = a.names.get(k) else { return };
                let i = (k + w) % clients;
                let ip = Ipv4Addr::new(127, 100 + (i / 256) as u8, (i % 256) as u8, 2);
                let Ok(sock) = UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0)).await else { continue };
                let Ok(name) = proto::Name::from_ascii(name) else { continue };
                let mut q = Vec::with_capacity(64);
                proto::build::build_query(&mut q, k as u16, name.as_wire(), *qtype, false, Some(1232), false);
                out.asked.fetch_add(1, Ordering::Relaxed);
                if sock.send_to(&q, a.server).await.is_err() {
                    continue;
                }
                let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await else {
                    continue;
                };
                let Ok(m) = proto::Message::parse(&buf[..n]) else { continue };
                let rcode = m.flags & 0x0f;
                let negative = m.authority.iter().any(|r| r.rtype == proto::rtype::SOA);
                if rcode == 3 || (rcode == 0 && (!m.answer.is_empty() || negative)) {
                    out.hit.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

fn main() -> anyhow::Result<()> {
    let a = Arc::new(parse_args()?);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let legit = Arc::new(Legit::default());
    let attack = Arc::new(Attack::default());
    let probed = Arc::new(Probe::default());
    let started = Instant::now();
    let until = Instant::now() + Duration::from_secs_f64(a.seconds);
    let _ = legit.start.set(Instant::now());
    // The flood on a thread (and runtime) of its own: the population's
    // sends and receives are then timed by the kernel's scheduler, which
    // wakes a sleeping thread at once, not behind the flood's sends.
    let (fa, fout) = (a.clone(), attack.clone());
    let flooder = std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async move {
            match fa.attack.as_str() {
                "water" | "reflect" | "misses" => udp_flood(fa, fout, until).await,
                "connflood" => conn_flood(fa, fout, until).await,
                _ => {}
            }
        });
        Ok(())
    });
    rt.block_on(async {
        let mut tasks = Vec::new();
        let per_client = a.legit_qps / a.legit_clients.max(1) as f64;
        for i in 0..a.legit_clients {
            tasks.push(tokio::spawn(legit_client(i, a.clone(), per_client, legit.clone(), until)));
        }
        for t in tasks {
            let _ = t.await;
        }
        if a.probe {
            probe(a.clone(), probed.clone()).await;
        }
    });
    flooder.join().map_err(|_| anyhow::anyhow!("the flood's thread panicked"))??;
    let mut lat = legit.latencies_us.lock().expect("lock").clone();
    lat.sort_unstable();
    let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let sent = l(&legit.sent);
    let json = serde_json::json!({
        "seconds": a.seconds,
        "legit": {
            "clients": a.legit_clients,
            "sent": sent,
            "answered": l(&legit.answered),
            "within_100ms": l(&legit.within_100ms),
            "answered_pct": if sent > 0 { 100.0 * l(&legit.answered) as f64 / sent as f64 } else { f64::NAN },
            "within_100ms_pct": if sent > 0 { 100.0 * l(&legit.within_100ms) as f64 / sent as f64 } else { f64::NAN },
            "truncated": l(&legit.truncated),
            "servfail": l(&legit.servfail),
            "p50_ms": percentile(&lat, 0.5),
            "p99_ms": percentile(&lat, 0.99),
            "timeline_within_100ms_pct": legit.timeline.lock().expect("lock").iter()
                .map(|&(sent, ok)| if sent > 0 { (1000.0 * f64::from(ok) / f64::from(sent)).round() / 10.0 } else { f64::NAN })
                .collect::<Vec<f64>>(),
        },
        "attack": {
            "kind": a.attack,
            "offered_qps": a.attack_qps,
            "sent": l(&attack.sent),
            "sent_qps": l(&attack.sent) as f64 / a.seconds,
            "bytes_sent": l(&attack.bytes_sent),
            "received": l(&attack.received),
            "bytes_received": l(&attack.bytes_received),
            "amplification": if l(&attack.bytes_sent) > 0 { l(&attack.bytes_received) as f64 / l(&attack.bytes_sent) as f64 } else { f64::NAN },
            "connections": l(&attack.connections),
        },
        "probe": {
            "asked": l(&probed.asked),
            "hit": l(&probed.hit),
            "hit_pct": if l(&probed.asked) > 0 { 100.0 * l(&probed.hit) as f64 / l(&probed.asked) as f64 } else { f64::NAN },
        },
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    println!("{json}");
    Ok(())
}

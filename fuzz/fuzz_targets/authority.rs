//! A fuzzed authority: the recursor resolves a client query through a fake
//! transport where the root is honest and every other server answers what
//! the fuzzer says — framed replies (right ID and question, any flags,
//! rcode and records built from a small pool of names around the question,
//! so referrals, CNAME/DNAME chains, glue, SOAs and bad data meet), or
//! silence, or a header and question followed by raw bytes.
//!
//! The root (127.9.0.1) delegates `test.` to ns.test. (127.9.0.2) and
//! `fz.` to ns.fz. (127.9.0.3) with glue; everything else it denies with
//! NXDOMAIN. It never says anything positive about `victim.`.
//!
//! Checked on every input, on tokio's paused clock (timeouts cost nothing):
//! - no panic;
//! - at most `max_upstream_queries` upstream queries for the client query
//!   (validation's DNSKEY/DS fetches included);
//! - nothing positive cached under `victim.`, and no question under it
//!   sent anywhere but the root: only the fuzzed servers could have said
//!   anything positive about it, and none of them is authoritative there
//!   (the bailiwick rule: out-of-zone records, referrals and glue from
//!   them are not believed);
//! - the client gets one well-formed response to its question: its ID,
//!   QR and RA set, the question echoed, an rcode a resolver may give.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use proto::build::{Section, build_query};
use proto::{Message, MessageWriter, Name, Record, flags, rtype};
use recursor::{
    Clock, FastPath, Recursor, RecursorConfig, Service, ServiceConfig, Transport, TransportError, TransportKind,
    UpstreamQuery, ValidationConfig,
};

const ROOT: Ipv4Addr = Ipv4Addr::new(127, 9, 0, 1);
const MAX_UPSTREAM: u32 = 24;

/// Owner and target names: around the question, in and out of bailiwick.
const NAMES: [&str; 16] = [
    ".",
    "test.",
    "www.test.",
    "ns.test.",
    "sub.test.",
    "ns.sub.test.",
    "a.b.sub.test.",
    "*.test.",
    "fz.",
    "ns.fz.",
    "www.fz.",
    "victim.",
    "ns.victim.",
    "www.victim.",
    "other.",
    "x.other.",
];

const TYPES: [u16; 14] = [
    rtype::A,
    rtype::AAAA,
    rtype::NS,
    rtype::CNAME,
    rtype::DNAME,
    rtype::SOA,
    rtype::TXT,
    rtype::MX,
    rtype::DS,
    rtype::DNSKEY,
    rtype::RRSIG,
    rtype::NSEC,
    rtype::NSEC3,
    rtype::ANY,
];

#[derive(Arbitrary, Debug)]
struct FuzzRecord {
    owner: u8,
    rtype: u8,
    ttl: u32,
    /// A name index for name-valued types, the address octets for A.
    target: u8,
    raw: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum FuzzReply {
    Silence,
    Framed { flags: u16, answer: Vec<FuzzRecord>, authority: Vec<FuzzRecord>, additional: Vec<FuzzRecord> },
    Raw { flags: u16, counts: [u16; 3], body: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    qname: u8,
    qtype: u8,
    dnssec_ok: bool,
    checking_disabled: bool,
    validate: bool,
    minimise: bool,
    tcp_client: bool,
    replies: Vec<FuzzReply>,
}

fn pool(i: u8) -> Name {
    Name::from_ascii(NAMES[usize::from(i) % NAMES.len()]).unwrap_or_else(|_| Name::root())
}

fn rdata(r: &FuzzRecord, t: u16) -> Vec<u8> {
    match t {
        rtype::A => vec![127, 9, r.target, r.raw.first().copied().unwrap_or(1)],
        rtype::NS | rtype::CNAME | rtype::DNAME => pool(r.target).as_wire().to_vec(),
        rtype::MX => {
            let mut v = vec![0, 10];
            v.extend_from_slice(pool(r.target).as_wire());
            v
        }
        rtype::SOA => {
            let mut v = pool(r.target).as_wire().to_vec();
            v.extend_from_slice(pool(r.target.wrapping_add(1)).as_wire());
            let mut nums = r.raw.clone();
            nums.resize(20, 0);
            v.extend_from_slice(&nums);
            v
        }
        _ => r.raw.clone(),
    }
}

fn record(r: &FuzzRecord) -> Record {
    let t = TYPES[usize::from(r.rtype) % (TYPES.len() - 1)];
    Record { name: pool(r.owner), rtype: t, class: 1, ttl: r.ttl % 200_000, rdata: rdata(r, t).into() }
}

/// Wall-clock seconds that move with tokio's paused clock.
struct PausedClock {
    base: u64,
    start: tokio::time::Instant,
}

impl Clock for PausedClock {
    fn now_unix(&self) -> u64 {
        self.base + self.start.elapsed().as_secs()
    }
}

struct FuzzNet {
    replies: Vec<FuzzReply>,
    next: AtomicUsize,
    sent: AtomicUsize,
    asked: Mutex<Vec<(IpAddr, Name)>>,
}

type Reply<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Message, TransportError>> + Send + 'a>>;

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap_or_else(|_| Name::root())
}

impl FuzzNet {
    /// The honest root.
    fn root(&self, q: &UpstreamQuery, out: &mut Vec<u8>) {
        let mut w = MessageWriter::new(out, 1, flags::QR);
        w.question(q.qname.as_wire(), q.qtype, 1);
        let soa = || {
            let mut d = name("ns.root.").as_wire().to_vec();
            d.extend_from_slice(name("host.root.").as_wire());
            d.extend_from_slice(&[0, 0, 0, 1, 0, 0, 14, 16, 0, 0, 2, 88, 0, 1, 81, 128, 0, 0, 14, 16]);
            Record { name: Name::root(), rtype: rtype::SOA, class: 1, ttl: 3600, rdata: d.into() }
        };
        let delegations = [("test.", "ns.test.", [127, 9, 0, 2]), ("fz.", "ns.fz.", [127, 9, 0, 3])];
        if let Some((zone, ns, addr)) = delegations.iter().find(|(z, _, _)| q.qname.is_subdomain_of(&name(z))) {
            let (zone, ns) = (name(zone), name(ns));
            w.set_flags(flags::QR);
            w.record(
                Section::Authority,
                &Record { name: zone, rtype: rtype::NS, class: 1, ttl: 3600, rdata: ns.as_wire().to_vec().into() },
            );
            w.record(
                Section::Additional,
                &Record { name: ns, rtype: rtype::A, class: 1, ttl: 3600, rdata: addr.to_vec().into() },
            );
        } else if q.qname.is_root() && q.qtype == rtype::NS {
            w.set_flags(flags::QR | flags::AA);
            w.record(
                Section::Answer,
                &Record {
                    name: Name::root(),
                    rtype: rtype::NS,
                    class: 1,
                    ttl: 3600,
                    rdata: name("ns.root.").as_wire().to_vec().into(),
                },
            );
        } else if q.qname.is_root() {
            w.set_flags(flags::QR | flags::AA);
            w.record(Section::Authority, &soa());
        } else {
            w.set_flags(flags::QR | flags::AA | 3);
            w.record(Section::Authority, &soa());
        }
        w.finish();
    }

    fn fuzzed(&self, q: &UpstreamQuery, out: &mut Vec<u8>) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.replies.get(i) {
            None | Some(FuzzReply::Silence) => false,
            Some(FuzzReply::Framed { flags: f, answer, authority, additional }) => {
                let mut w = MessageWriter::new(out, 1, (f & !0x7800) | flags::QR);
                w.question(q.qname.as_wire(), q.qtype, 1);
                for (sec, recs) in
                    [(Section::Answer, answer), (Section::Authority, authority), (Section::Additional, additional)]
                {
                    for r in recs.iter().take(12) {
                        w.record(sec, &record(r));
                    }
                }
                w.finish();
                true
            }
            Some(FuzzReply::Raw { flags: f, counts, body }) => {
                let mut w = MessageWriter::new(out, 1, (f & !0x7800) | flags::QR);
                w.question(q.qname.as_wire(), q.qtype, 1);
                w.finish();
                for (k, c) in counts.iter().enumerate() {
                    out[6 + 2 * k..8 + 2 * k].copy_from_slice(&c.to_be_bytes());
                }
                out.extend_from_slice(body);
                true
            }
        }
    }
}

impl Transport for FuzzNet {
    fn query(&self, q: UpstreamQuery) -> Reply<'_> {
        Box::pin(async move {
            self.sent.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut a) = self.asked.lock() {
                a.push((q.server.ip(), q.qname.clone()));
            }
            let mut out = Vec::with_capacity(512);
            let answered = if q.server.ip() == IpAddr::V4(ROOT) {
                self.root(&q, &mut out);
                true
            } else {
                self.fuzzed(&q, &mut out)
            };
            if !answered {
                tokio::time::sleep(q.timeout).await;
                return Err(TransportError::Timeout);
            }
            match Message::parse(&out) {
                Ok(m) if m.question.as_ref().is_some_and(|x| x.name == q.qname && x.qtype == q.qtype) => Ok(m),
                _ if q.tcp => Err(TransportError::Malformed),
                _ => {
                    tokio::time::sleep(q.timeout).await;
                    Err(TransportError::Timeout)
                }
            }
        })
    }
}

/// A DNSKEY nobody signs with: validation runs, and everything below a
/// signed root would be bogus (the honest root here is unsigned, so it is
/// all bogus or insecure, never secure).
fn anchor() -> Record {
    let mut rdata = vec![1, 1, 3, 13];
    rdata.extend_from_slice(&[7u8; 64]);
    Record { name: Name::root(), rtype: rtype::DNSKEY, class: 1, ttl: 3600, rdata: rdata.into() }
}

fuzz_target!(|input: Input| {
    let qname = pool(input.qname);
    let qtype = TYPES[usize::from(input.qtype) % TYPES.len()];
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
    rt.block_on(async {
        let net = Arc::new(FuzzNet {
            replies: input.replies,
            next: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
            asked: Mutex::new(Vec::new()),
        });
        let config = RecursorConfig {
            root_hints: vec![IpAddr::V4(ROOT)],
            do_not_query_localhost: false,
            qname_minimisation: input.minimise,
            max_upstream_queries: MAX_UPSTREAM,
            rrset_cache_bytes: 1 << 20,
            validation: input.validate.then(|| ValidationConfig::with_anchors(vec![anchor()])),
            ..RecursorConfig::default()
        };
        let clock = Arc::new(PausedClock { base: 1_800_000_000, start: tokio::time::Instant::now() });
        let recursor = Recursor::new(config, net.clone(), clock.clone());
        let service = Service::new(
            recursor,
            ServiceConfig {
                answer_cache_bytes: 1 << 20,
                local: recursor::LocalData::new(Vec::new(), false),
                ..ServiceConfig::default()
            },
            clock.clone(),
        );
        let mut query = Vec::new();
        build_query(&mut query, 0xf00d, qname.as_wire(), qtype, true, Some(1232), input.dnssec_ok);
        if input.checking_disabled {
            query[3] |= 0x10;
        }
        let kind = if input.tcp_client { TransportKind::Stream } else { TransportKind::Datagram };
        let mut out = Vec::with_capacity(1232);
        let len = match service.try_fast(&query, kind, &mut out) {
            FastPath::Answered(len) => Some(len),
            _ => service.answer(&query, kind, &mut out).await,
        };
        tokio::time::sleep(Duration::from_millis(1)).await;

        let sent = net.sent.load(Ordering::Relaxed);
        assert!(sent <= MAX_UPSTREAM as usize, "{sent} upstream queries for one client query");

        let len = len.expect("every well-formed query gets a response");
        let m = Message::parse(&out[..len]).expect("the response parses");
        assert_eq!(m.id, 0xf00d);
        assert!(m.has_flag(flags::QR) && m.has_flag(flags::RA));
        let q = m.question.as_ref().expect("the question is echoed");
        assert!(q.name == qname && q.qtype == qtype, "the question is echoed");
        assert!(matches!(m.rcode(), 0 | 2 | 3), "rcode {}", m.rcode());
        if kind == TransportKind::Datagram {
            assert!(len <= 1232, "{len} bytes over UDP");
        }

        let victim = name("victim.");
        for (server, n) in net.asked.lock().expect("log").iter() {
            assert!(
                !n.is_subdomain_of(&victim) || *server == IpAddr::V4(ROOT),
                "{n} asked of {server}, which nobody made authoritative for it"
            );
        }
        let now = clock.now_unix();
        for n in NAMES.iter().map(|s| name(s)).filter(|n| n.is_subdomain_of(&victim)) {
            for t in TYPES {
                if let Some(e) = service.recursor().cache().get(&n, t, now) {
                    assert!(e.negative().is_some(), "{n} type {t} cached from a server not authoritative for it");
                }
            }
        }
    });
});

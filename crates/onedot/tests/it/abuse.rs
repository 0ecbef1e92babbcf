//! Abuse and overload defence end to end: `onedot serve` on loopback with
//! tight limits, asked by dig, kdig and raw sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use proto::{Message, Name, flags, rtype, wire::OPT_COOKIE};

use crate::filtering::Fixture;

/// A query for `name` with EDNS and, if given, a COOKIE option.
fn query(id: u16, name: &str, qtype: u16, cookie: Option<&[u8]>) -> Vec<u8> {
    let mut q = Vec::new();
    let qname = Name::from_ascii(name).expect("name");
    let mut w = proto::MessageWriter::new(&mut q, id, flags::RD);
    w.question(qname.as_wire(), qtype, proto::class::IN);
    match cookie {
        Some(c) => w.opt_with(1232, false, &[(OPT_COOKIE, c)]),
        None => w.opt(1232, false, 0, &[]),
    }
    w.finish();
    q
}

fn cookie_of(m: &Message) -> Option<Vec<u8>> {
    m.edns.as_ref()?.options.iter().find(|(c, _)| *c == OPT_COOKIE).map(|(_, d)| d.to_vec())
}

fn dig(args: &[&str]) -> String {
    let out = Command::new("dig").args(args).output().expect("dig runs (dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn limits(extra: &str) -> String {
    format!("[limits]\nresponses_per_second = 20\nerrors_per_second = 10\nburst_seconds = 1\nslip = 2\n{extra}")
}

/// What came back to a socket within a second (or until 300 ms of
/// silence): NOERROR answers, truncated ones (slips, with the largest),
/// and anything else (BADCOOKIE).
#[derive(Debug, Default, PartialEq, Eq)]
struct Got {
    answered: usize,
    truncated: usize,
    largest_tc: usize,
    other: usize,
}

fn send_all(sock: &UdpSocket, server: SocketAddr, queries: &[Vec<u8>]) {
    for q in queries {
        sock.send_to(q, server).expect("send");
    }
}

fn collect(sock: &UdpSocket) -> Got {
    sock.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
    let mut got = Got::default();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let Ok(n) = sock.recv(&mut buf) else { break };
        let m = Message::parse(&buf[..n]).expect("a valid response");
        if m.has_flag(flags::TC) {
            got.truncated += 1;
            got.largest_tc = got.largest_tc.max(n);
        } else if m.rcode() == 0 {
            got.answered += 1;
        } else {
            got.other += 1;
        }
    }
    got
}

fn flood(sock: &UdpSocket, server: SocketAddr, queries: &[Vec<u8>]) -> Got {
    send_all(sock, server, queries);
    collect(sock)
}

#[test]
fn a_udp_flood_from_one_network_is_cut_to_its_rate_with_slips_and_tcp_still_answers() {
    // One worker, so one socket: the neighbour's query is queued after the
    // flood's (with two, SO_REUSEPORT may hand it to the idle worker first).
    let f = Fixture::start_with("abuse-rrl", &[], "workers = 1", &limits(""));
    let door = f.door("unfiltered");
    let sock = UdpSocket::bind("127.0.0.9:0").expect("bind");
    // Warm the cache, then wait for the bucket to fill again.
    let warm = crate::filtering::ask(door, "www.example.test", rtype::A, false).expect("answer");
    assert_eq!(warm.rcode(), 0);
    std::thread::sleep(Duration::from_millis(1100));
    let queries: Vec<Vec<u8>> = (0..300).map(|i| query(i, "www.example.test", rtype::A, None)).collect();
    // The whole network is limited (a neighbour asking right after gets
    // nothing but a slip or silence); other networks are not.
    let neighbour = UdpSocket::bind("127.0.0.10:0").expect("bind");
    send_all(&sock, door, &queries);
    send_all(&neighbour, door, &queries[..1]);
    let got = collect(&sock);
    // Half the bucket (20 a second) is answered in full; past half, the
    // network is spending faster than its rate and an answer larger than
    // its query is sent truncated; over the limit, every second one slips.
    assert!((8..=16).contains(&got.answered), "answered {} of 300 at 20/s: {got:?}", got.answered);
    assert!((130..=170).contains(&got.truncated), "capped and slipped: {got:?}");
    assert!(
        got.largest_tc <= queries[0].len(),
        "a slip ({} octets) is no larger than the query ({})",
        got.largest_tc,
        queries[0].len()
    );
    assert_eq!(collect(&neighbour).answered, 0, "127.0.0.10 shares 127.0.0.0/24's empty bucket");
    let other = UdpSocket::bind("127.0.1.1:0").expect("bind");
    assert_eq!(flood(&other, door, &queries[..5]).answered, 5);
    // TCP, whose source is proven, always answers.
    let tcp = crate::filtering::ask(door, "www.example.test", rtype::A, true).expect("tcp answer");
    assert!(!tcp.has_flag(flags::TC) && !tcp.answer.is_empty());
    let metrics = f.get("/metrics");
    let count = |action: &str| -> u64 {
        let key = format!("onedot_admission_total{{action=\"{action}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&key)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    assert!(count("slip") >= 100 && count("drop") >= 100 && count("capped") >= 5, "{metrics}");
    assert!(!metrics.contains("127.0."), "no address in metrics");
}

#[test]
fn a_network_flooding_past_the_flood_rate_is_dropped_in_the_kernel_then_let_in_again() {
    let f = Fixture::start_with(
        "abuse-kernel",
        &[],
        "workers = 1",
        &limits("flood_per_second = 100\nkernel_filter_seconds = 3\n"),
    );
    let door = f.door("unfiltered");
    let warm = crate::filtering::ask(door, "www.example.test", rtype::A, false).expect("answer");
    assert_eq!(warm.rcode(), 0);
    let queries: Vec<Vec<u8>> = (0..300).map(|i| query(i, "www.example.test", rtype::A, None)).collect();
    let flooder = UdpSocket::bind("127.0.7.9:0").expect("bind");
    let got = flood(&flooder, door, &queries);
    assert!(got.answered + got.truncated > 0, "answered until found flooding: {got:?}");
    // The filter is fed every 250 ms.
    std::thread::sleep(Duration::from_millis(600));
    let metrics = f.get("/metrics");
    assert!(metrics.contains("onedot_admission_total{action=\"kernel_filter\"} 1"), "{metrics}");
    assert!(metrics.contains("onedot_kernel_filter_networks 1"), "{metrics}");
    // Nothing reaches onedot from that network now, not even a slip; a
    // neighbouring network is answered.
    let neighbour = UdpSocket::bind("127.0.7.10:0").expect("bind");
    assert_eq!(flood(&neighbour, door, &queries[..10]), Got::default());
    let other = UdpSocket::bind("127.0.8.1:0").expect("bind");
    assert_eq!(flood(&other, door, &queries[..5]).answered, 5);
    // After kernel_filter_seconds (and the bucket's refill), let in again.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        f.get("/metrics").lines().find(|l| l.starts_with("onedot_kernel_filter_networks ")),
        Some("onedot_kernel_filter_networks 0")
    );
    assert!(flood(&neighbour, door, &queries[..3]).answered >= 1);
    assert!(!f.get("/metrics").contains("127.0."), "no address in metrics");
}

#[test]
fn dig_and_kdig_get_good_cookies_and_a_valid_cookie_lifts_the_limit() {
    let f = Fixture::start("abuse-cookies", &[], &limits(""));
    let door = f.door("unfiltered");
    let (host, port) = (format!("@{}", door.ip()), door.port().to_string());
    let text = dig(&[&host, "-p", &port, "+cookie", "www.example.test", "A"]);
    assert!(text.contains("status: NOERROR"), "{text}");
    let line = text.lines().find(|l| l.contains("COOKIE:")).unwrap_or_else(|| panic!("no cookie: {text}"));
    assert!(line.ends_with("(good)"), "dig judges the server cookie: {line}");
    let cookie = line.split_whitespace().nth(2).expect("cookie hex").to_string();
    assert_eq!(cookie.len(), 48, "8 octets of client cookie and 16 of RFC 9018 server cookie: {cookie}");
    assert_eq!(&cookie[16..18], "01", "version 1");
    let again = dig(&[&host, "-p", &port, &format!("+cookie={cookie}"), "www.example.test", "A"]);
    assert!(again.lines().any(|l| l.contains("COOKIE:") && l.ends_with("(good)")), "{again}");
    let k = Command::new("kdig").args([&host, "-p", &port, "+cookie", "www.example.test", "A"]).output().expect("kdig");
    let ktext = String::from_utf8_lossy(&k.stdout);
    let kline = ktext.lines().find(|l| l.contains("COOKIE:")).unwrap_or_else(|| panic!("kdig: {ktext}"));
    assert_eq!(kline.split_whitespace().last().map(str::len), Some(48), "{kline}");
    // With a valid server cookie a client is past the rate limit: 200
    // queries at once from one address, all answered.
    let sock = UdpSocket::bind("127.0.0.21:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let client = [7u8; 8];
    sock.send_to(&query(1, "www.example.test", rtype::A, Some(&client)), door).expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("answer");
    let server_cookie = cookie_of(&Message::parse(&buf[..n]).expect("parses")).expect("cookie");
    assert_eq!(&server_cookie[..8], &client);
    let queries: Vec<Vec<u8>> =
        (0..200).map(|i| query(i, "www.example.test", rtype::A, Some(&server_cookie))).collect();
    let got = flood(&sock, door, &queries);
    assert_eq!(got, Got { answered: 200, ..Got::default() });
    // A forged server cookie is no such pass.
    let mut forged = server_cookie.clone();
    forged[20] ^= 1;
    let queries: Vec<Vec<u8>> = (0..200).map(|i| query(i, "www.example.test", rtype::A, Some(&forged))).collect();
    let got = flood(&sock, door, &queries);
    assert!(got.answered <= 25, "answered with a forged cookie: {got:?}");
    assert!(got.other >= 50, "slips to a client with a cookie are BADCOOKIE with a fresh one: {got:?}");
}

#[test]
fn malformed_cookies_get_formerr_and_required_cookies_badcookie() {
    let f = Fixture::start("abuse-badcookie", &[], &limits("require_cookies = true\n"));
    let door = f.door("unfiltered");
    let sock = UdpSocket::bind("127.0.0.31:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let mut buf = [0u8; 4096];
    let mut ask = |q: Vec<u8>| {
        sock.send_to(&q, door).expect("send");
        let n = sock.recv(&mut buf).expect("answer");
        Message::parse(&buf[..n]).expect("parses")
    };
    let bad = ask(query(1, "www.example.test", rtype::A, Some(&[1, 2, 3])));
    assert_eq!(bad.rcode(), 1, "a 3-octet cookie is FORMERR");
    let first = ask(query(2, "www.example.test", rtype::A, Some(&[4; 8])));
    assert_eq!(first.rcode(), 23, "BADCOOKIE (extended RCODE 23)");
    let c = cookie_of(&first).expect("a server cookie to retry with");
    let second = ask(query(3, "www.example.test", rtype::A, Some(&c)));
    assert_eq!(second.rcode(), 0);
    assert!(!second.answer.is_empty());
    let none = ask(query(4, "www.example.test", rtype::A, None));
    assert!(none.has_flag(flags::TC) && none.answer.is_empty(), "no cookie: off to TCP");
    let tcp = crate::filtering::ask(door, "www.example.test", rtype::A, true).expect("tcp answer");
    assert!(!tcp.answer.is_empty());
}

#[test]
fn any_is_answered_with_rfc8482_hinfo() {
    let f = Fixture::start("abuse-any", &[], &limits(""));
    let door = f.door("unfiltered");
    let m = crate::filtering::ask(door, "example.test", rtype::ANY, false).expect("answer");
    assert_eq!(m.rcode(), 0);
    assert_eq!(m.answer.len(), 1);
    assert_eq!(m.answer[0].rtype, rtype::HINFO);
    assert_eq!(&*m.answer[0].rdata, b"\x07RFC8482\x00");
}

#[test]
fn connections_from_one_network_are_capped() {
    let f = Fixture::start("abuse-conns", &[], &limits("connections_per_prefix = 3\nmax_connections = 10\n"));
    let door = f.door("unfiltered");
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(door).expect("connects")).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The fourth is accepted by the kernel and closed by onedot at once.
    let mut fourth = TcpStream::connect(door).expect("connects");
    fourth.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let q = query(9, "www.example.test", rtype::A, None);
    let _ = fourth.write_all(&(q.len() as u16).to_be_bytes());
    let _ = fourth.write_all(&q);
    let mut byte = [0u8; 1];
    assert!(matches!(fourth.read(&mut byte), Ok(0) | Err(_)), "the fourth connection is closed");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let m = crate::filtering::ask(door, "www.example.test", rtype::A, true).expect("a new connection works again");
    assert_eq!(m.rcode(), 0);
}

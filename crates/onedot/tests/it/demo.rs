//! `onedot demo` with real clients (dig, kdig) against it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::onedot;

struct Demo {
    child: std::process::Child,
    port: u16,
    dot_port: u16,
    summary: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the demo on a free port with its lab on a free port (so it never
/// collides with the port-53 peer tests) and reads its banner.
fn start() -> Demo {
    let mut child = Command::new(onedot())
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--dot-listen",
            "127.0.0.1:0",
            "--lab-port",
            "0",
            "--exit-after",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut summary = String::new();
    let mut port = 0;
    let mut dot_port = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("utf-8");
        if let Some(rest) = line.trim().strip_prefix("resolver: udp 127.0.0.1:") {
            port = rest.split_whitespace().next().and_then(|p| p.parse().ok()).expect("port");
        }
        if let Some(rest) = line.trim().strip_prefix("resolver: dot 127.0.0.1:") {
            dot_port = rest.split_whitespace().next().and_then(|p| p.parse().ok()).expect("dot port");
        }
        summary.push_str(&line);
        summary.push('\n');
        if line.starts_with("Running") || Instant::now() > deadline {
            break;
        }
    }
    assert!(port > 0, "demo printed no listener:\n{summary}");
    Demo { child, port, dot_port, summary }
}

fn dig(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| panic!("{tool} runs: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn demo_resolves_its_own_names() {
    let d = start();
    assert!(d.summary.contains("www.example.test A: NOERROR 192.0.2.10"), "{}", d.summary);
    assert!(d.summary.contains("nope.example.test A: NXDOMAIN"), "{}", d.summary);
    assert!(d.summary.contains("txt.big.test TXT: NOERROR, 40 records (over TCP)"), "{}", d.summary);
}

#[test]
fn dig_and_kdig_against_the_demo() {
    let d = start();
    let p = d.port.to_string();
    let udp = dig("dig", &["@127.0.0.1", "-p", &p, "www.example.test", "+short", "+tries=1", "+time=5"]);
    assert_eq!(udp.trim(), "192.0.2.10");
    let tcp = dig("dig", &["@127.0.0.1", "-p", &p, "www.example.test", "+tcp", "+short", "+tries=1", "+time=5"]);
    assert_eq!(tcp.trim(), "192.0.2.10");
    let nx = dig("dig", &["@127.0.0.1", "-p", &p, "nope.example.test", "+tries=1", "+time=5"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let chain = dig("kdig", &["@127.0.0.1", "-p", &p, "c1.chain.test", "+short", "+retry=0", "+time=5"]);
    assert_eq!(chain.lines().last(), Some("192.0.2.66"), "{chain}");
    let big = dig("kdig", &["@127.0.0.1", "-p", &p, "txt.big.test", "TXT", "+retry=0", "+time=5"]);
    assert!(big.contains("TC") || big.contains("TCP") || big.matches("TXT").count() > 40, "{big}");
    let fail = dig("dig", &["@127.0.0.1", "-p", &p, "www.dead.test", "+tries=1", "+time=8"]);
    assert!(fail.contains("status: SERVFAIL") && fail.contains("EDE: 23"), "{fail}");
}

#[test]
fn onedot_query_prints_dig_style() {
    let d = start();
    let server = format!("@127.0.0.1:{}", d.port);
    let out = Command::new(onedot()).args(["query", "www.example.test", "AAAA", &server]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2001:db8::10") && text.contains("NOERROR"), "{text}");
    let out = Command::new(onedot()).args(["query", "txt.big.test", "TXT", &server]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(TCP)"), "{text}");
}

#[test]
fn dig_dnssec_against_the_demo_shows_ad_insecure_and_bogus() {
    let d = start();
    let p = d.port.to_string();
    let secure = dig("dig", &["@127.0.0.1", "-p", &p, "www.example.test", "+dnssec", "+tries=1", "+time=5"]);
    assert!(secure.contains(" ad;") || secure.contains(" ad "), "AD on www.example.test:\n{secure}");
    assert!(secure.contains("RRSIG"), "{secure}");
    let insecure = dig("dig", &["@127.0.0.1", "-p", &p, "www.unsigned.test", "+dnssec", "+tries=1", "+time=5"]);
    let flags = insecure.lines().find(|l| l.starts_with(";; flags:")).unwrap_or_default();
    assert!(insecure.contains("status: NOERROR") && !flags.contains(" ad"), "no AD on www.unsigned.test:\n{insecure}");
    let bogus = dig("dig", &["@127.0.0.1", "-p", &p, "www.bogus.test", "+dnssec", "+tries=1", "+time=5"]);
    assert!(bogus.contains("status: SERVFAIL") && bogus.contains("EDE: 6"), "{bogus}");
    let cd = dig("dig", &["@127.0.0.1", "-p", &p, "www.bogus.test", "+cd", "+short", "+tries=1", "+time=5"]);
    assert_eq!(cd.trim(), "192.0.2.30");
}

#[test]
fn kdig_over_tls_against_the_demo() {
    let d = start();
    assert!(d.dot_port > 0, "demo printed a DoT listener:\n{}", d.summary);
    let p = d.dot_port.to_string();
    let plain = dig("kdig", &["@127.0.0.1", "-p", &p, "+tls", "www.example.test", "+short", "+retry=0", "+time=5"]);
    assert_eq!(plain.trim(), "192.0.2.10", "{plain}");
    // The same, checking the certificate the demo made.
    let cert = d
        .summary
        .lines()
        .find_map(|l| l.split("self-signed certificate ").nth(1))
        .map(|s| s.trim_end_matches(')').to_string())
        .expect("certificate path");
    let ca = format!("+tls-ca={cert}");
    let verified = dig(
        "kdig",
        &["@127.0.0.1", "-p", &p, &ca, "+tls-hostname=localhost", "www.example.test", "+short", "+retry=0", "+time=5"],
    );
    assert_eq!(verified.trim(), "192.0.2.10", "{verified}");
    // Padded query, padded response (RFC 8467).
    let padded = dig("kdig", &["@127.0.0.1", "-p", &p, "+tls", "+padding", "www.example.test", "+retry=0", "+time=5"]);
    assert!(padded.contains("PADDING"), "{padded}");
}

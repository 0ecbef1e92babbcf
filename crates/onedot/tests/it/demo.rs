//! `onedot demo` with real clients (dig, kdig) against it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::onedot;

struct Demo {
    child: std::process::Child,
    port: u16,
    dot_port: u16,
    doh_port: u16,
    doq_port: u16,
    /// Profile name → its UDP listener.
    profiles: std::collections::HashMap<String, std::net::SocketAddr>,
    web_port: u16,
    summary: String,
}

impl Demo {
    /// The self-signed certificate the demo made (its path, as printed).
    fn certificate(&self) -> String {
        self.summary
            .lines()
            .find_map(|l| l.split("self-signed certificate ").nth(1))
            .map(|s| s.trim_end_matches(')').to_string())
            .expect("certificate path")
    }
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
            "--doh-listen",
            "127.0.0.1:0",
            "--doq-listen",
            "127.0.0.1:0",
            "--lab-port",
            "0",
            "--profiles-port",
            "0",
            "--web-listen",
            "127.0.0.1:0",
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
    let mut doh_port = 0;
    let mut doq_port = 0;
    let mut profiles = std::collections::HashMap::new();
    let mut web_port = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("utf-8");
        if let Some(rest) = line.trim().strip_prefix("resolver: udp 127.0.0.1:") {
            port = rest.split_whitespace().next().and_then(|p| p.parse().ok()).expect("port");
        }
        if let Some(rest) = line.trim().strip_prefix("resolver: doh https://127.0.0.1:") {
            doh_port = rest.split('/').next().and_then(|p| p.parse().ok()).expect("doh port");
        }
        if let Some(rest) = line.trim().strip_prefix("resolver: doq 127.0.0.1:") {
            doq_port = rest.split_whitespace().next().and_then(|p| p.parse().ok()).expect("doq port");
        }
        if let Some(rest) = line.trim().strip_prefix("resolver: dot 127.0.0.1:") {
            dot_port = rest.split_whitespace().next().and_then(|p| p.parse().ok()).expect("dot port");
        }
        if let Some(rest) = line.trim().strip_prefix("profile ")
            && let Some((name, rest)) = rest.split_once(": udp ")
        {
            let addr = rest.split_whitespace().next().and_then(|a| a.parse().ok()).expect("profile address");
            profiles.insert(name.to_string(), addr);
        }
        if let Some(rest) = line.trim().strip_prefix("web: http://127.0.0.1:") {
            web_port = rest.split('/').next().and_then(|p| p.parse().ok()).expect("web port");
        }
        summary.push_str(&line);
        summary.push('\n');
        if line.starts_with("Running") || Instant::now() > deadline {
            break;
        }
    }
    assert!(port > 0, "demo printed no listener:\n{summary}");
    Demo { child, port, dot_port, doh_port, doq_port, profiles, web_port, summary }
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
    let cert = d.certificate();
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

/// Unpadded base64url, for the DoH `dns` parameter.
fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// `curl -sk` returning ("status http-version", body).
fn curl(args: &[&str]) -> (String, Vec<u8>) {
    let body = std::env::temp_dir().join(format!("onedot-doh-{}-{}", std::process::id(), rand_suffix()));
    let out = Command::new("curl")
        .args(["-sk", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("curl runs");
    let bytes = std::fs::read(&body).unwrap_or_default();
    let _ = std::fs::remove_file(&body);
    (String::from_utf8_lossy(&out.stdout).into_owned(), bytes)
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[test]
fn doh_with_dig_kdig_and_curl_against_the_demo() {
    let d = start();
    assert!(d.doh_port > 0, "demo printed a DoH listener:\n{}", d.summary);
    let p = d.doh_port.to_string();
    let via_dig = dig("dig", &["@127.0.0.1", "-p", &p, "+https", "www.example.test", "+short", "+tries=1", "+time=5"]);
    assert_eq!(via_dig.trim(), "192.0.2.10", "{via_dig}");
    let via_kdig =
        dig("kdig", &["@127.0.0.1", "-p", &p, "+https", "www.example.test", "+short", "+retry=0", "+time=5"]);
    assert_eq!(via_kdig.trim(), "192.0.2.10", "{via_kdig}");
    // GET over HTTP/2 with ?dns= (RFC 8484 §4.1).
    let mut q = Vec::new();
    let name = proto::Name::from_ascii("www.example.test").expect("name");
    proto::build::build_query(&mut q, 0, name.as_wire(), proto::rtype::A, true, None, false);
    let url = format!("https://127.0.0.1:{p}/dns-query?dns={}", base64url(&q));
    let (status, body) = curl(&["--http2", &url]);
    assert_eq!(status, "200 2", "{status}");
    // HTTP/3 is advertised on the same port (Alt-Svc).
    let head = Command::new("curl").args(["-sk", "-o", "/dev/null", "-D", "-", &url]).output().expect("curl runs");
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains(&format!("alt-svc: h3=\":{p}\"")), "{head}");
    let m = proto::Message::parse(&body).expect("a DNS message");
    assert_eq!(m.answer[0].address().map(|a| a.to_string()), Some("192.0.2.10".into()));
    // POST over HTTP/1.1.
    let post = std::env::temp_dir().join(format!("onedot-doh-post-{}", std::process::id()));
    std::fs::write(&post, &q).expect("write");
    let data = format!("@{}", post.display());
    let url = format!("https://127.0.0.1:{p}/dns-query");
    let (status, body) =
        curl(&["--http1.1", "-H", "content-type: application/dns-message", "--data-binary", &data, &url]);
    assert_eq!(status, "200 1.1", "{status}");
    assert!(proto::Message::parse(&body).is_ok());
    // Malformed requests get HTTP errors, not crashes.
    assert!(curl(&[&format!("https://127.0.0.1:{p}/dns-query?dns=%%%")]).0.starts_with("400"));
    assert!(curl(&[&format!("https://127.0.0.1:{p}/elsewhere")]).0.starts_with("404"));
    assert!(curl(&["-X", "PUT", &url]).0.starts_with("405"));
    assert!(curl(&["-H", "content-type: text/plain", "--data-binary", &data, &url]).0.starts_with("415"));
    let _ = std::fs::remove_file(&post);
}

/// The JSON API on the DoH listener, with the fields the big public
/// resolvers' JSON APIs have, so their clients work unchanged.
#[test]
fn json_api_against_the_demo() {
    let d = start();
    let base = format!("https://127.0.0.1:{}/dns-query", d.doh_port);
    let (status, body) = curl(&[&format!("{base}?name=www.example.test&type=A")]);
    assert!(status.starts_with("200"), "{status}");
    let text = String::from_utf8_lossy(&body);
    for field in [
        "\"Status\":0",
        "\"AD\":true",
        "\"RD\":true",
        "\"RA\":true",
        "\"TC\":false",
        "\"CD\":false",
        "\"Question\"",
        "\"data\":\"192.0.2.10\"",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
    let (_, body) = curl(&[&format!("{base}?name=www.bogus.test&type=1")]);
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("\"Status\":2") && text.contains("EDE 6"), "{text}");
    let (_, body) = curl(&[&format!("{base}?name=www.bogus.test&cd=1")]);
    assert!(String::from_utf8_lossy(&body).contains("192.0.2.30"), "CD returns the data");
    let (_, body) = curl(&[&format!("{base}?name=nope.example.test&type=AAAA")]);
    assert!(String::from_utf8_lossy(&body).contains("\"Status\":3"));
    assert!(curl(&[&format!("{base}?name=a..b")]).0.starts_with("400"));
    assert!(curl(&[&format!("{base}?name=www.example.test&type=NOPE")]).0.starts_with("400"));
}

/// DDR (RFC 9462): `_dns.resolver.arpa SVCB` advertises the demo's DoT and
/// DoH doors, on the ports they are bound to.
#[test]
fn ddr_advertises_the_encrypted_doors() {
    let d = start();
    let p = d.port.to_string();
    // Over TCP, and without dig's own comment lines, so a slow machine's
    // retry notes never look like records.
    let svcb =
        dig("dig", &["@127.0.0.1", "-p", &p, "_dns.resolver.arpa", "SVCB", "+short", "+tcp", "+tries=2", "+time=5"]);
    let svcb: String =
        svcb.lines().filter(|l| !l.starts_with(";;") && !l.is_empty()).map(|l| format!("{l}\n")).collect();
    assert!(svcb.contains(&format!("alpn=\"dot\" port={}", d.dot_port)), "{svcb}");
    assert!(svcb.contains(&format!("port={}", d.doh_port)) && svcb.contains("/dns-query{?dns}"), "{svcb}");
    assert!(svcb.contains(&format!("alpn=\"doq\" port={}", d.doq_port)), "{svcb}");
    assert!(svcb.lines().all(|l| l.contains(" localhost. ")), "{svcb}");
}

/// The demo contract's filtering names: three doors, three behaviours, each
/// block with its EDE; the family profile over DoH; the transparency page.
#[test]
fn demo_profiles_block_with_extended_errors() {
    let d = start();
    for line in [
        "[unfiltered] malware.test A: NOERROR 203.0.113.251",
        "[unfiltered] censored.test A: NXDOMAIN [EDE 16: ordered by Demo District Court",
        "[security] malware.test A: NXDOMAIN [EDE 15: source demo-malware, category malware]",
        "[security] adult.test A: NOERROR 203.0.113.252",
        "[family] adult.test A: NXDOMAIN [EDE 17: source demo-adult, category adult]",
    ] {
        assert!(d.summary.contains(line), "missing {line:?} in:\n{}", d.summary);
    }
    let security = d.profiles.get("security").expect("security door");
    assert_eq!(security.ip().to_string(), "127.0.0.2");
    let family = d.profiles.get("family").expect("family door");
    assert_eq!(family.ip().to_string(), "127.0.0.3");
    let out = dig(
        "dig",
        &[&format!("@{}", family.ip()), "-p", &family.port().to_string(), "adult.test", "+tries=1", "+time=5"],
    );
    assert!(out.contains("status: NXDOMAIN") && out.contains("EDE: 17 (Filtered)"), "{out}");
    let p = d.doh_port.to_string();
    let doh = dig("dig", &["@127.0.0.1", "-p", &p, "+https=/family/dns-query", "adult.test", "+tries=1", "+time=5"]);
    assert!(doh.contains("status: NXDOMAIN") && doh.contains("EDE: 17"), "{doh}");
    let doh = dig("dig", &["@127.0.0.1", "-p", &p, "+https=/dns-query", "adult.test", "+short", "+tries=1", "+time=5"]);
    assert_eq!(doh.trim(), "203.0.113.252");
    let (status, body) = curl(&[&format!("http://127.0.0.1:{}/transparency.json", d.web_port)]);
    assert!(status.starts_with("200"), "{status}");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let names: Vec<&str> =
        v["sources"].as_array().expect("sources").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["demo-malware", "demo-adult", "demo-court-order"]);
    assert_eq!(v["sources"][2]["legal_basis"]["authority"], "Demo District Court");
}

/// dnspython's DoH client over HTTP/2 and HTTP/3 and its DoQ client
/// (RFC 9250) against the demo.
#[test]
fn dnspython_doh_h2_h3_and_doq_against_the_demo() {
    let d = start();
    assert!(d.doq_port > 0, "demo printed a DoQ listener:\n{}", d.summary);
    let script = r#"
import sys, dns.message, dns.query
doh, doq = int(sys.argv[1]), int(sys.argv[2])
q = dns.message.make_query("www.example.test", "A")
r = dns.query.https(q, f"https://127.0.0.1:{doh}/dns-query", verify=False, timeout=5,
                    http_version=dns.query.HTTPVersion.H2)
print("doh", r.rcode(), r.answer[0][0])
r = dns.query.quic(q, "127.0.0.1", port=doq, verify=False, timeout=5)
print("doq", r.rcode(), r.answer[0][0])
r = dns.query.https(q, f"https://127.0.0.1:{doh}/dns-query", verify=False, timeout=5,
                    http_version=dns.query.HTTPVersion.H3)
print("h3", r.rcode(), r.answer[0][0])
q = dns.message.make_query("nope.example.test", "A")
r = dns.query.quic(q, "127.0.0.1", port=doq, verify=False, timeout=5)
print("doq-nx", r.rcode())
"#;
    let out = Command::new("python3")
        .args(["-c", script, &d.doh_port.to_string(), &d.doq_port.to_string()])
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("doh 0 192.0.2.10")
            && text.contains("doq 0 192.0.2.10")
            && text.contains("doq-nx 3")
            && text.contains("h3 0 192.0.2.10"),
        "{text}"
    );
}

/// `onedot query` over every transport, checking the demo's certificate by
/// CA and name, or by SPKI pin; a wrong name or pin is refused.
#[test]
fn onedot_query_speaks_every_transport() {
    use rustls_pki_types::pem::PemObject;
    let d = start();
    let cert = d.certificate();
    let q = |args: &[&str]| {
        let out =
            Command::new(crate::onedot()).arg("query").args(args).env("RUST_BACKTRACE", "0").output().expect("runs");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (dot, doh, doq) = (
        format!("@127.0.0.1:{}", d.dot_port),
        format!("@127.0.0.1:{}", d.doh_port),
        format!("@127.0.0.1:{}", d.doq_port),
    );
    for (flag, server, via) in
        [("--tls", &dot, "(TLS)"), ("--https", &doh, "(HTTPS)"), ("--h3", &doh, "(HTTP/3)"), ("--quic", &doq, "(QUIC)")]
    {
        let (ok, out) = q(&["www.example.test", flag, server, "--ca", &cert, "--tls-name", "localhost"]);
        assert!(ok && out.contains("192.0.2.10") && out.contains(via), "{flag}: {out}");
    }
    let (ok, out) = q(&["www.example.test", "--json", &doh, "--ca", &cert, "--tls-name", "localhost"]);
    assert!(ok && out.contains("\"Status\":0") && out.contains("192.0.2.10"), "{out}");
    // The wrong name is refused.
    let (ok, out) = q(&["www.example.test", "--tls", &dot, "--ca", &cert, "--tls-name", "wrong.example"]);
    assert!(!ok, "{out}");
    // SPKI pinning alone: the right pin passes, another fails.
    let der = rustls_pki_types::CertificateDer::from_pem_file(&cert).expect("certificate");
    let spki = doors::client::spki_of(&der).expect("spki");
    let pin = domain::utils::base64::encode_string(&ring::digest::digest(&ring::digest::SHA256, spki));
    let (ok, out) = q(&["www.example.test", "--quic", &doq, "--pin", &pin, "--tls-name", "localhost"]);
    assert!(ok && out.contains("192.0.2.10"), "{out}");
    let other = domain::utils::base64::encode_string(&[7u8; 32]);
    let (ok, out) = q(&["www.example.test", "--tls", &dot, "--pin", &other, "--tls-name", "localhost"]);
    assert!(!ok, "{out}");
}

/// Forward zones over DoT (with a dead first server: failover), DoH on
/// HTTP/2 and HTTP/3, and DoQ with an SPKI pin alone, to the demo as a
/// second onedot; the demo's metrics show the queries arriving through
/// those doors.
#[test]
fn forward_zones_over_encrypted_transports_with_failover() {
    use rustls_pki_types::pem::PemObject;
    let d = start();
    let cert = d.certificate();
    let der = rustls_pki_types::CertificateDer::from_pem_file(&cert).expect("certificate");
    let spki = doors::client::spki_of(&der).expect("spki");
    let pin = domain::utils::base64::encode_string(&ring::digest::digest(&ring::digest::SHA256, spki));
    let zones = format!(
        r#"
[[forward_zone]]
name = "example.test."
servers = ["127.0.0.1:1", "127.0.0.1:{dot}"]
transport = "tls"
tls_name = "localhost"
ca_file = "{cert}"
[[forward_zone]]
name = "z001.test."
servers = ["127.0.0.1:{doh}"]
transport = "https"
tls_name = "localhost"
ca_file = "{cert}"
[[forward_zone]]
name = "z003.test."
servers = ["127.0.0.1:{doh}"]
transport = "h3"
tls_name = "localhost"
ca_file = "{cert}"
[[forward_zone]]
name = "z002.test."
servers = ["127.0.0.1:{doq}"]
transport = "quic"
spki_pins = ["{pin}"]
"#,
        dot = d.dot_port,
        doh = d.doh_port,
        doq = d.doq_port,
    );
    let f = crate::filtering::Fixture::start("forward", &[], &zones);
    let door = f.door("unfiltered");
    for (name, want) in [
        ("www.example.test", "192.0.2.10"),
        ("www.z001.test", "203.0.113.1"),
        ("www.z003.test", "203.0.113.3"),
        ("www.z002.test", "203.0.113.2"),
    ] {
        let m =
            crate::filtering::ask(door, name, proto::rtype::A, false).unwrap_or_else(|| panic!("{name}: no answer"));
        let got: Vec<String> = m.answer.iter().filter_map(|r| r.address()).map(|a| a.to_string()).collect();
        assert_eq!(got, [want], "{name}");
    }
    let (_, body) = curl(&[&format!("http://127.0.0.1:{}/metrics", d.web_port)]);
    let metrics = String::from_utf8_lossy(&body);
    for door in ["dot", "doh", "doq"] {
        assert!(
            metrics.contains(&format!("onedot_queries_total{{door=\"{door}\",profile=\"unfiltered\",qtype=\"A\"")),
            "{door}:\n{metrics}"
        );
    }
}

/// curl resolving a name through the demo with `--doh-url` (the name is a
/// lab server on 127.53/16, so the connection curl then makes stays on
/// loopback).
#[test]
fn curl_resolves_names_through_doh_url() {
    let d = start();
    let out = Command::new("curl")
        .args(["-sv", "--max-time", "5", "--doh-insecure", "--doh-url"])
        .arg(format!("https://127.0.0.1:{}/dns-query", d.doh_port))
        .arg("http://ns1.example.test:9/")
        .output()
        .expect("curl runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("DoH A: 127.53.2.1"), "{log}");
}

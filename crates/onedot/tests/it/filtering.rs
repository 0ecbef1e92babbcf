//! Filtering profiles end to end: `onedot serve` on loopback with list
//! files of every format, resolving through the lab, asked over UDP and
//! TCP like any client; the transparency log over HTTP.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::{Message, Name, flags, rtype};

use crate::onedot;

/// A lab and a `serve` with extra config, both stopped on drop.
pub(crate) struct Fixture {
    lab: Child,
    pub(crate) serve: Child,
    pub(crate) dir: PathBuf,
    /// Profile name → its first UDP listener (the default profile is
    /// `unfiltered`).
    doors: HashMap<String, SocketAddr>,
    pub(crate) web: SocketAddr,
    /// The first DoH listener, if any.
    pub(crate) doh: Option<SocketAddr>,
    pub(crate) log: Arc<Mutex<String>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for c in [&mut self.serve, &mut self.lab] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed certificate for localhost and 127.0.0.1 in `dir`, and
/// the `[server]` lines of a DoH door (HTTP/1.1 and 2) on a free port with
/// the other encrypted doors off; returns them and the certificate's path.
pub(crate) fn doh_only_tls(dir: &std::path::Path) -> (String, PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("cert");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("key");
    let server = format!(
        "tls_certificate = {:?}\ntls_private_key = {:?}\ndoh_listen = [\"127.0.0.1:0\"]\ndot_listen = []\ndoq_listen = []\ndoh3 = false\n",
        cert_path.display().to_string(),
        key_path.display().to_string()
    );
    (server, cert_path)
}

pub(crate) fn unique_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("onedot-filter-{tag}-{}-{nanos}", std::process::id()))
}

impl Fixture {
    /// Writes `files` into a fresh directory and serves `policy` (TOML for
    /// the `[policy]` tables; paths relative to that directory).
    pub(crate) fn start(tag: &str, files: &[(&str, &str)], policy: &str) -> Fixture {
        Fixture::start_with(tag, files, "", policy)
    }

    /// As [`Fixture::start`], with `server` added to the `[server]` table.
    pub(crate) fn start_with(tag: &str, files: &[(&str, &str)], server: &str, policy: &str) -> Fixture {
        let dir = unique_dir(tag);
        std::fs::create_dir_all(&dir).expect("dir");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("list file");
        }
        let (lab, port) = crate::start_lab(None);
        let config = format!(
            "version = 1\n[web]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n{server}\n[resolver]\n\
             root_hints = [\"127.53.0.1\"]\nupstream_port = {port}\ndo_not_query_localhost = false\n\
             answer_special_use_locally = false\n[dnssec]\nvalidate = false\n{policy}"
        );
        std::fs::write(dir.join("onedot.toml"), config).expect("config");
        let (serve, log, rx) = crate::restart::spawn_serve(&dir.join("onedot.toml"), &[]);
        let mut doors = HashMap::new();
        let mut web = None;
        let mut doh = None;
        let deadline = Instant::now() + Duration::from_secs(30);
        while web.is_none() && Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
            let field = |k: &str| line.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
            if let Some(w) = field("web=") {
                web = w.parse().ok();
            }
            if let Some(d) = field("doh=") {
                doh = doh.or(d.parse().ok());
            }
            if let Some(udp) = field("udp=").and_then(|u| u.parse().ok()) {
                doors.entry(field("profile=").unwrap_or_else(|| "unfiltered".into())).or_insert(udp);
            }
        }
        let Some(web) = web else {
            // Stop what was started before failing, so nothing outlives the test.
            for mut c in [serve, lab] {
                let _ = c.kill();
                let _ = c.wait();
            }
            panic!("serve did not start:\n{}", log.lock().expect("log"));
        };
        Fixture { lab, serve, dir, doors, web, doh, log }
    }

    pub(crate) fn door(&self, profile: &str) -> SocketAddr {
        *self.doors.get(profile).unwrap_or_else(|| panic!("no door for {profile}: {:?}", self.doors))
    }

    pub(crate) fn ask(&self, profile: &str, name: &str, qtype: u16) -> Option<Message> {
        ask(self.door(profile), name, qtype, false)
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join(file), text).expect("list file");
    }

    pub(crate) fn get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.web).expect("web connects");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("request");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Stops `serve` with SIGTERM (a graceful shutdown) and waits for it.
    pub(crate) fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.serve.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.serve.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `cond` holds for the answer (reloads are asynchronous).
    pub(crate) fn wait_for(&self, profile: &str, name: &str, cond: impl Fn(&Message) -> bool) -> Message {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.ask(profile, name, rtype::A)
                && (cond(&m) || Instant::now() > deadline)
            {
                return m;
            }
            assert!(Instant::now() < deadline, "no answer for {name}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One query over UDP (or TCP), with EDNS so EDEs come back.
pub(crate) fn ask(server: SocketAddr, name: &str, qtype: u16, tcp: bool) -> Option<Message> {
    let mut q = Vec::new();
    let id = (std::process::id() as u16).wrapping_add(qtype);
    let qname = Name::from_ascii(name).expect("name");
    proto::build::build_query(&mut q, id, qname.as_wire(), qtype, true, Some(1232), false);
    if tcp {
        let mut s = TcpStream::connect(server).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(&(q.len() as u16).to_be_bytes()).ok()?;
        s.write_all(&q).ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).ok()?;
        return Message::parse(&buf).ok();
    }
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    sock.send_to(&q, server).expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    Message::parse(&buf[..n]).ok()
}

fn rcode(m: &Message) -> u16 {
    m.rcode()
}

fn addrs(m: &Message) -> Vec<String> {
    m.answer.iter().filter_map(|r| r.address()).map(|a| a.to_string()).collect()
}

fn ede(m: &Message) -> Option<(u16, String)> {
    m.ede().into_iter().next()
}

const NX: u16 = 3;

/// Every format and action, the precedence rules, wildcards, CNAME chains,
/// rpz-ip and the EDE codes and texts, through real queries.
#[test]
fn formats_actions_precedence_and_ede() {
    let files = [
        ("hosts", "# a hosts file\n127.0.0.1 localhost\n0.0.0.0 malware.test\n"),
        ("domains.txt", "*.adult.test\n"),
        ("adblock.txt", "[Adblock Plus 2.0]\n! ads\n||z001.test^\n@@||www.z001.test^\n||x.test^$third-party\n"),
        (
            "policy.rpz",
            "$TTL 60\n$ORIGIN rpz.local.\n@ SOA ns.rpz.local. admin.rpz.local. 1 3600 600 86400 60\n@ NS ns.rpz.local.\n\
             www.z002.test CNAME .\nwww.z003.test CNAME *.\nwww.z004.test CNAME rpz-drop.\n\
             www.z005.test A 192.0.2.55\nwww.z005.test TXT \"rewritten by policy\"\n\
             www.z006.test CNAME www.example.test.\n*.z007.test CNAME .\nwww.z008.test CNAME rpz-tcp-only.\n\
             32.251.113.0.203.rpz-ip CNAME .\n",
        ),
        ("allow.txt", "www.z002.test\n"),
        ("order.txt", "censored.test\n"),
    ];
    let policy = r#"
[policy]
[[policy.source]]
name = "hosts-malware"
path = "hosts"
format = "hosts"
category = "malware"
ede = "blocked"
[[policy.source]]
name = "adult-wild"
path = "domains.txt"
format = "domains"
category = "adult"
[[policy.source]]
name = "ads"
path = "adblock.txt"
format = "adblock"
category = "ads"
[[policy.source]]
name = "rpz"
path = "policy.rpz"
format = "rpz"
category = "local policy"
[[policy.source]]
name = "court"
path = "order.txt"
format = "domains"
category = "court order"
all_profiles = true
legal_basis = { authority = "Test Court", reference = "case 7" }
[[policy.profile]]
name = "strict"
sources = ["hosts-malware", "adult-wild", "ads", "rpz"]
listen = ["127.0.0.1:0"]
[[policy.profile]]
name = "null"
sources = ["hosts-malware", "court"]
answer = "null"
listen = ["127.0.0.1:0"]
[[policy.profile]]
name = "sinkhole"
sources = ["hosts-malware"]
answer = "sinkhole"
sinkhole_a = "192.0.2.254"
sinkhole_aaaa = "2001:db8::254"
ede = "blocked"
listen = ["127.0.0.1:0"]
[[policy.profile]]
name = "allowing"
sources = ["allow", "rpz"]
listen = ["127.0.0.1:0"]
[[policy.source]]
name = "allow"
path = "allow.txt"
format = "domains"
kind = "allow"
"#;
    let f = Fixture::start("formats", &files, policy);

    // Unfiltered: only the court order applies.
    let m = f.ask("unfiltered", "malware.test", rtype::A).expect("answer");
    assert_eq!(addrs(&m), ["203.0.113.251"]);
    let m = f.ask("unfiltered", "censored.test", rtype::A).expect("answer");
    assert_eq!(rcode(&m), NX);
    let (code, text) = ede(&m).expect("EDE");
    assert_eq!(code, 16, "{text}");
    assert!(text.contains("Test Court") && text.contains("case 7") && text.contains("court"), "{text}");

    // hosts: the name and below, NXDOMAIN, EDE 15 (the source says).
    for name in ["malware.test", "www.malware.test"] {
        let m = f.ask("strict", name, rtype::A).expect("answer");
        assert_eq!(rcode(&m), NX, "{name}");
        let (code, text) = ede(&m).expect("EDE");
        assert_eq!((code, text.as_str()), (15, "source hosts-malware, category malware"));
        assert!(!m.has_flag(flags::AD));
    }
    // *.adult.test: names below only; EDE 17 (the profile's default).
    assert_eq!(addrs(&f.ask("strict", "adult.test", rtype::A).expect("answer")), ["203.0.113.252"]);
    let m = f.ask("strict", "www.adult.test", rtype::A).expect("answer");
    assert_eq!((rcode(&m), ede(&m).map(|e| e.0)), (NX, Some(17)));
    // AdBlock: ||z001.test^ blocks the zone, the @@ exception wins.
    assert_eq!(rcode(&f.ask("strict", "z001.test", rtype::A).expect("answer")), NX);
    assert_eq!(rcode(&f.ask("strict", "mail.z001.test", rtype::A).expect("answer")), NX);
    assert_eq!(addrs(&f.ask("strict", "www.z001.test", rtype::A).expect("answer")), ["203.0.113.1"]);
    // RPZ: NXDOMAIN, NODATA, DROP, local data, CNAME rewrite, wildcard, TCP-only.
    assert_eq!(rcode(&f.ask("strict", "www.z002.test", rtype::A).expect("answer")), NX);
    assert_eq!(addrs(&f.ask("strict", "z002.test", rtype::A).expect("answer")), ["198.51.100.2"], "exact only");
    let m = f.ask("strict", "www.z003.test", rtype::A).expect("answer");
    assert_eq!((rcode(&m), m.answer.len(), ede(&m).map(|e| e.0)), (0, 0, Some(17)));
    assert!(f.ask("strict", "www.z004.test", rtype::A).is_none(), "rpz-drop sends nothing");
    let m = f.ask("strict", "www.z005.test", rtype::A).expect("answer");
    assert_eq!(addrs(&m), ["192.0.2.55"]);
    let m = f.ask("strict", "www.z005.test", rtype::TXT).expect("answer");
    assert_eq!(m.answer.len(), 1);
    assert!(String::from_utf8_lossy(&m.answer[0].rdata).contains("rewritten by policy"));
    let m = f.ask("strict", "www.z006.test", rtype::A).expect("answer");
    assert_eq!(m.answer[0].rtype, rtype::CNAME);
    assert_eq!(addrs(&m), ["192.0.2.10"], "the rewrite is followed");
    assert_eq!(rcode(&f.ask("strict", "a.b.z007.test", rtype::A).expect("answer")), NX);
    assert_eq!(addrs(&f.ask("strict", "z007.test", rtype::A).expect("answer")), ["198.51.100.7"]);
    let m = f.ask("strict", "www.z008.test", rtype::A).expect("answer");
    assert!(m.has_flag(flags::TC) && m.answer.is_empty(), "TCP-only: truncated over UDP");
    let m = ask(f.door("strict"), "www.z008.test", rtype::A, true).expect("TCP answer");
    assert_eq!(addrs(&m), ["203.0.113.8"], "TCP-only: answered over TCP");
    // CNAME chains into blocked names; rpz-ip on answer addresses.
    let m = f.ask("strict", "to-malware.cdn.test", rtype::A).expect("answer");
    assert_eq!((rcode(&m), ede(&m).map(|e| e.0)), (NX, Some(15)), "CNAME to a blocked name");
    let m = f.ask("strict", "same-address.cdn.test", rtype::A).expect("answer");
    assert_eq!(rcode(&m), NX, "rpz-ip on the answer address");
    assert_eq!(addrs(&f.ask("strict", "clean.cdn.test", rtype::A).expect("answer")), ["203.0.113.254"]);
    assert_eq!(addrs(&f.ask("unfiltered", "to-malware.cdn.test", rtype::A).expect("answer")), ["203.0.113.251"]);

    // null: 0.0.0.0 and ::, NODATA for other types; the court order too.
    let m = f.ask("null", "malware.test", rtype::A).expect("answer");
    assert_eq!((rcode(&m), addrs(&m)), (0, vec!["0.0.0.0".to_string()]));
    assert_eq!(addrs(&f.ask("null", "malware.test", rtype::AAAA).expect("answer")), ["::"]);
    let m = f.ask("null", "malware.test", rtype::MX).expect("answer");
    assert_eq!((rcode(&m), m.answer.len(), ede(&m).map(|e| e.0)), (0, 0, Some(15)));
    assert_eq!(ede(&f.ask("null", "censored.test", rtype::A).expect("answer")).map(|e| e.0), Some(16));
    // sinkhole addresses.
    assert_eq!(addrs(&f.ask("sinkhole", "www.malware.test", rtype::A).expect("answer")), ["192.0.2.254"]);
    assert_eq!(addrs(&f.ask("sinkhole", "www.malware.test", rtype::AAAA).expect("answer")), ["2001:db8::254"]);
    // An allow source beats the RPZ block of the same name.
    assert_eq!(addrs(&f.ask("allowing", "www.z002.test", rtype::A).expect("answer")), ["203.0.113.2"]);
    assert_eq!(rcode(&f.ask("allowing", "www.z003.test", rtype::A).expect("answer")).min(1), 0);
    // Cached blocked answers stay blocked (served from the answer cache).
    for _ in 0..3 {
        assert_eq!(rcode(&f.ask("strict", "malware.test", rtype::A).expect("answer")), NX);
    }
}

/// Three doors, three profiles, one name answered three ways.
#[test]
fn three_profiles_answer_the_same_name_three_ways() {
    let files = [("malware.txt", "malware.test\nwww.z009.test\n"), ("adult.txt", "adult.test\nwww.z009.test\n")];
    let policy = r#"
[[policy.source]]
name = "malware"
path = "malware.txt"
format = "domains"
category = "malware"
ede = "blocked"
[[policy.source]]
name = "adult"
path = "adult.txt"
format = "domains"
category = "adult"
[[policy.profile]]
name = "security"
sources = ["malware"]
listen = ["127.0.0.2:0"]
[[policy.profile]]
name = "family"
sources = ["adult", "malware"]
listen = ["127.0.0.3:0"]
"#;
    let f = Fixture::start("three", &files, policy);
    assert_eq!(f.door("security").ip().to_string(), "127.0.0.2");
    let plain = f.ask("unfiltered", "www.z009.test", rtype::A).expect("answer");
    let security = f.ask("security", "www.z009.test", rtype::A).expect("answer");
    let family = f.ask("family", "www.z009.test", rtype::A).expect("answer");
    assert_eq!(addrs(&plain), ["203.0.113.9"]);
    assert_eq!(ede(&security), Some((15, "source malware, category malware".into())));
    assert_eq!(ede(&family), Some((17, "source adult, category adult".into())), "the first listed source wins a tie");
    // adult.test: only family blocks it.
    assert_eq!(addrs(&f.ask("security", "adult.test", rtype::A).expect("answer")), ["203.0.113.252"]);
    assert_eq!(rcode(&f.ask("family", "adult.test", rtype::A).expect("answer")), NX);
}

/// A broken list is reported with file:line and the previous version keeps
/// blocking; a good edit is picked up and shows in the transparency log.
#[test]
fn reload_keeps_the_old_list_on_errors_and_logs_changes() {
    let files = [("block.txt", "malware.test\n")];
    let policy = r#"
[policy]
watch_interval_s = 1
state_file = "transparency-state.json"
[[policy.source]]
name = "blocklist"
path = "block.txt"
format = "domains"
category = "malware"
[[policy.profile]]
name = "filtered"
sources = ["blocklist"]
listen = ["127.0.0.1:0"]
"#;
    let f = Fixture::start("reload", &files, policy);
    assert_eq!(rcode(&f.ask("filtered", "malware.test", rtype::A).expect("answer")), NX);
    assert_eq!(addrs(&f.ask("filtered", "adult.test", rtype::A).expect("answer")), ["203.0.113.252"]);

    // A broken edit: reported with file and line; the old list still blocks.
    f.write("block.txt", "adult.test\nthis is not a name\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f.log.lock().expect("log").contains("not reloaded") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = f.log.lock().expect("log").clone();
    assert!(log.contains("block.txt:2: one name per line expected"), "{log}");
    assert_eq!(rcode(&f.ask("filtered", "malware.test", rtype::A).expect("answer")), NX);
    assert_eq!(addrs(&f.ask("filtered", "adult.test", rtype::A).expect("answer")), ["203.0.113.252"]);
    let json = f.get("/transparency.json");
    assert!(json.contains("block.txt:2"), "the failure is public:\n{json}");

    // A good edit replaces the list, cached answers included.
    f.write("block.txt", "adult.test\n");
    let m = f.wait_for("filtered", "adult.test", |m| rcode(m) == NX);
    assert_eq!(rcode(&m), NX);
    assert_eq!(addrs(&f.ask("filtered", "malware.test", rtype::A).expect("answer")), ["203.0.113.251"]);

    // The transparency log shows the source, the change and the blocks.
    let json = f.get("/transparency.json");
    assert!(json.starts_with("HTTP/1.1 200"), "{json}");
    let body = &json[json.find("\r\n\r\n").expect("body") + 4..];
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON");
    let src = &v["sources"][0];
    assert_eq!(src["name"], "blocklist");
    assert_eq!(src["category"], "malware");
    assert_eq!(src["size"], 1);
    assert!(src["last_error"].is_null(), "{src}");
    let changes = src["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2, "{src}");
    assert_eq!(changes[1]["added_sample"][0], "adult.test");
    assert_eq!(changes[1]["removed_sample"][0], "malware.test");
    assert!(src["blocks_per_day"][0]["blocks"].as_u64().expect("count") >= 2, "{src}");
    let page = f.get("/transparency");
    assert!(page.contains("<h3 id=\"blocklist\">blocklist</h3>") && page.contains("+adult.test"), "{page}");
    assert!(f.get("/health").ends_with("ok\n"));
    // The history is kept on disk for the next start (written just after
    // the swap, so it may trail the JSON by a moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let state = std::fs::read_to_string(f.dir.join("transparency-state.json")).unwrap_or_default();
        if state.contains("adult.test") || Instant::now() > deadline {
            break state;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(state.contains("\"blocklist\"") && state.contains("adult.test"), "{state}");
}

/// `serve` refuses to start with a broken list, saying where.
#[test]
fn serve_refuses_a_broken_list_at_start() {
    let dir = unique_dir("broken");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("hosts"), "0.0.0.0 ok.test\n0.0.0.0 bad..test\n").expect("list");
    let config = "version = 1\n[web]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n\
                  [[policy.source]]\nname = \"h\"\npath = \"hosts\"\nformat = \"hosts\"\n";
    std::fs::write(dir.join("onedot.toml"), config).expect("config");
    let out = Command::new(onedot()).args(["serve", "--config"]).arg(dir.join("onedot.toml")).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("hosts:2: empty label"), "{err}");
    let out = Command::new(onedot()).args(["lists", "--config"]).arg(dir.join("onedot.toml")).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("hosts:2"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP re-reads every source at once, whatever the intervals say.
#[test]
fn sighup_rereads_the_sources() {
    let files = [("block.txt", "malware.test\n")];
    let policy = r#"
[policy]
watch_interval_s = 3600
reload_interval_s = 3600
[[policy.source]]
name = "blocklist"
path = "block.txt"
format = "domains"
[[policy.profile]]
name = "filtered"
sources = ["blocklist"]
listen = ["127.0.0.1:0"]
"#;
    let f = Fixture::start("hup", &files, policy);
    assert_eq!(rcode(&f.ask("filtered", "malware.test", rtype::A).expect("answer")), NX);
    f.write("block.txt", "adult.test\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rcode(&f.ask("filtered", "malware.test", rtype::A).expect("answer")), NX, "no reload before SIGHUP");
    let status = Command::new("kill").args(["-HUP", &f.serve.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let m = f.wait_for("filtered", "malware.test", |m| rcode(m) == 0);
    assert_eq!(addrs(&m), ["203.0.113.251"]);
    assert_eq!(rcode(&f.ask("filtered", "adult.test", rtype::A).expect("answer")), NX);
}

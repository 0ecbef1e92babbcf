//! Keyless edges end to end: `onedot keyserver` holds the door's private
//! key, `onedot serve` has only the public chain, and real clients (kdig
//! over TLS, curl over HTTP/2, dnspython over HTTP/3 and QUIC, Python's
//! ssl resuming a session) talk to the edge. The key server is stopped and
//! started again under it, the certificate is swapped for one with another
//! key type, and the edge is revoked.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::filtering::{Fixture, ask, unique_dir};
use crate::onedot;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// A self-signed door certificate for 127.0.0.1 with a new key of `kind`
/// (`openssl req -newkey` syntax); the key goes to `key`, mode 600.
fn door_certificate(kind: &[&str], cert: &Path, key: &Path) {
    run(Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "30", "-subj", "/CN=dns.example", "-addext"])
        .arg("subjectAltName=DNS:dns.example,IP:127.0.0.1")
        .args(kind)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Starts `onedot keyserver`; returns it and its metrics address.
pub(crate) fn start_key_server(config: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(onedot())
        .args(["keyserver", "--config"])
        .arg(config)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keyserver starts");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
        if let Some(m) = line.strip_prefix("keyserver: metrics ") {
            // Keep draining, so logging never blocks the key server.
            std::thread::spawn(move || while rx.recv().is_ok() {});
            return (child, m.trim().parse().expect("metrics address"));
        }
        seen.push_str(&line);
        seen.push('\n');
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("keyserver did not start:\n{seen}");
}

pub(crate) fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

pub(crate) fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn kdig_tls(port: u16) -> String {
    let out = Command::new("kdig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+tls", "www.example.test", "+short", "+retry=0", "+time=3"])
        .output()
        .expect("kdig runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits (at most 15 s) until the DoT door at `port` presents a
/// certificate whose key `openssl s_client` describes with `shown`.
fn served_key(port: u16, shown: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-alpn", "dot"])
            .stdin(Stdio::null())
            .output()
            .expect("openssl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains(shown) {
            return;
        }
        assert!(Instant::now() < deadline, "waiting for {shown:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A port from the serve log's `KEY=127.0.0.1:PORT`.
pub(crate) fn logged_port(log: &str, key: &str) -> u16 {
    log.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("no {key} in the log:\n{log}"))
}

/// DoT with Python's ssl: a query on a first connection, whose TLS session
/// is kept; on each line read from stdin, a query on a connection resuming
/// that session, then one on a fresh connection (a full handshake).
const PY_DOT: &str = r#"
import socket, ssl, struct, sys, pickle
port, mode = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["dot"])
q = bytes.fromhex("abcd0100000100000000000003777777076578616d706c6504746573740000010001")
def ask(session=None):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), session=session)
    s.sendall(struct.pack("!H", len(q)) + q)
    n = struct.unpack("!H", s.recv(2))[0]
    r = b""
    while len(r) < n:
        r += s.recv(n - len(r))
    return s, r
if mode == "first":
    s, r = ask()
    print("answered", len(r), "reused", s.session_reused)
    sess = s.session
    sys.stdout.flush()
    # The test stops the key server, then says go on.
    line = sys.stdin.readline()
    try:
        s2, r2 = ask(sess)
        print("second answered", len(r2), "reused", s2.session_reused)
    except Exception as e:
        print("second failed", type(e).__name__, e)
    sys.stdout.flush()
    line = sys.stdin.readline()
    try:
        s3, r3 = ask()
        print("fresh answered", len(r3))
    except Exception as e:
        print("fresh failed", type(e).__name__)
    sys.stdout.flush()
"#;

/// A key server's files: its state directory (edge CA, registry), the
/// door's keys (P-256 in force, RSA-2048 spare), an edge `ams1` in region
/// `eu`, its config on a fixed free port.
pub(crate) struct KeyServerSetup {
    pub(crate) dir: PathBuf,
    state: PathBuf,
    keys: PathBuf,
    edge: PathBuf,
    /// The door's certificate as the edge has it.
    cert: PathBuf,
    /// An RSA certificate to swap in.
    rsa_cert: PathBuf,
    pub(crate) config: PathBuf,
    port: u16,
}

impl KeyServerSetup {
    pub(crate) fn new(tag: &str) -> KeyServerSetup {
        let dir = unique_dir(tag);
        let (state, keys, edge) = (dir.join("state"), dir.join("keys"), dir.join("edge"));
        for d in [&keys, &edge] {
            std::fs::create_dir_all(d).expect("dir");
        }
        run(Command::new(onedot())
            .args(["keyserver", "init", "--state-dir"])
            .arg(&state)
            .args(["--name", "127.0.0.1"]));
        let cert = edge.join("door.pem");
        door_certificate(&["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"], &cert, &keys.join("p256.key"));
        let rsa_cert = dir.join("rsa.pem");
        door_certificate(&["-newkey", "rsa:2048"], &rsa_cert, &keys.join("rsa.key"));
        let port = free_port();
        let config = dir.join("keyserver.toml");
        std::fs::write(
            &config,
            format!(
                "listen = [\"127.0.0.1:{port}\"]\nmetrics_listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\
                 [[key]]\npath = \"{}\"\nregions = [\"eu\"]\n[[key]]\npath = \"{}\"\n",
                state.display(),
                keys.join("p256.key").display(),
                keys.join("rsa.key").display()
            ),
        )
        .expect("keyserver config");
        run(Command::new(onedot())
            .args(["keyserver", "--config"])
            .arg(&config)
            .args(["issue-edge", "ams1", "--region", "eu", "--out"])
            .arg(&edge));
        KeyServerSetup { dir, state, keys, edge, cert, rsa_cert, config, port }
    }

    /// The `[server]` lines of a keyless edge with every encrypted door.
    pub(crate) fn edge_server(&self) -> String {
        let p = |p: PathBuf| p.display().to_string();
        format!(
            "tls_certificate = \"{}\"\ndot_listen = [\"127.0.0.1:0\"]\ndoh_listen = [\"127.0.0.1:0\"]\n\
             doq_listen = [\"127.0.0.1:0\"]\nkeyless = {{ servers = [\"127.0.0.1:{}\"], ca_file = \"{}\", \
             edge_certificate = \"{}\", edge_key = \"{}\", deadline_ms = 1000 }}",
            p(self.cert.clone()),
            self.port,
            p(self.state.join("ca.pem")),
            p(self.edge.join("ams1.pem")),
            p(self.edge.join("ams1.key"))
        )
    }
}

#[test]
fn a_keyless_edge_serves_every_encrypted_door_and_fails_closed() {
    let ks_setup = KeyServerSetup::new("keyless");
    let KeyServerSetup { dir, keys, edge, cert, rsa_cert, config: ks_config, .. } = &ks_setup;
    let (mut ks, ks_metrics) = start_key_server(ks_config);
    let server = ks_setup.edge_server();
    let f = Fixture::start_with("keyless-edge", &[], &server, "");
    let log = f.log.lock().expect("log").clone();
    let (dot, doh, doq) = (logged_port(&log, "dot="), logged_port(&log, "doh="), logged_port(&log, "doq="));
    let do53 = f.door("unfiltered");

    // No private key of the door anywhere in the edge's files or config.
    let door_key = std::fs::read_to_string(keys.join("p256.key")).expect("key");
    let body: String = door_key.lines().filter(|l| !l.starts_with("-----")).collect();
    for d in [edge, &f.dir] {
        for entry in std::fs::read_dir(d).expect("dir").map_while(Result::ok) {
            let text: String = std::fs::read_to_string(entry.path()).unwrap_or_default().lines().collect();
            assert!(!text.contains(&body), "{} holds the door's key", entry.path().display());
        }
    }
    let config = std::fs::read_to_string(f.dir.join("onedot.toml")).expect("config");
    assert!(!config.contains("tls_private_key"), "{config}");

    // Every door completes handshakes signed by the key server.
    assert_eq!(kdig_tls(dot), "192.0.2.10", "kdig +tls\n{}", f.log.lock().expect("log"));
    let query = dir.join("q.bin");
    std::fs::write(
        &query,
        [
            0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e',
            4, b't', b'e', b's', b't', 0, 0, 1, 0, 1,
        ],
    )
    .expect("query");
    let url = format!("https://127.0.0.1:{doh}/dns-query");
    let curl = run(Command::new("curl")
        .args(["-sk", "--http2", "-H", "content-type: application/dns-message", "--data-binary"])
        .arg(format!("@{}", query.display()))
        .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}", &url]));
    assert_eq!(curl.trim(), "200 2", "curl over HTTP/2");
    let script = r#"
import sys, dns.message, dns.query
doh, doq = int(sys.argv[1]), int(sys.argv[2])
q = dns.message.make_query("www.example.test", "A")
r = dns.query.quic(q, "127.0.0.1", port=doq, verify=False, timeout=5)
print("doq", r.rcode(), r.answer[0][0])
r = dns.query.https(q, f"https://127.0.0.1:{doh}/dns-query", verify=False, timeout=5,
                    http_version=dns.query.HTTPVersion.H3)
print("h3", r.rcode(), r.answer[0][0])
"#;
    let py = run(Command::new("python3").args(["-c", script, &doh.to_string(), &doq.to_string()]));
    assert!(py.contains("doq 0 192.0.2.10") && py.contains("h3 0 192.0.2.10"), "{py}");
    let metrics = f.get("/metrics");
    assert!(metrics.contains("onedot_keyless_signatures_total{result=\"ok\"}"), "{metrics}");
    assert!(!metrics.contains("onedot_keyless_signatures_total{result=\"ok\"} 0\n"), "{metrics}");
    let ks_text = http_get(ks_metrics, "/metrics");
    assert!(ks_text.contains("edge=\"ams1\"") && ks_text.contains("result=\"signed\""), "{ks_text}");

    // The key server stops: a session resumed from before still works, a
    // full handshake fails within the deadline, Do53 answers.
    let mut py = Command::new("python3")
        .args(["-c", PY_DOT, &dot.to_string(), "first"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut py_out = BufReader::new(py.stdout.take().expect("stdout"));
    let mut line = String::new();
    py_out.read_line(&mut line).expect("first line");
    assert!(line.starts_with("answered"), "{line}");
    stop(&mut ks);
    let mut py_in = py.stdin.take().expect("stdin");
    use std::io::Write;
    writeln!(py_in).expect("go on");
    line.clear();
    py_out.read_line(&mut line).expect("second line");
    assert!(line.starts_with("second answered") && line.contains("reused True"), "resumed session: {line}");
    let t = Instant::now();
    writeln!(py_in).expect("go on");
    line.clear();
    py_out.read_line(&mut line).expect("third line");
    assert!(line.starts_with("fresh failed"), "a full handshake without the key server: {line}");
    assert!(t.elapsed() < Duration::from_secs(4), "failed within the deadline: {:?}", t.elapsed());
    let _ = py.wait();
    assert!(ask(do53, "www.example.test", 1, false).is_some_and(|m| m.rcode() == 0), "Do53 keeps answering");
    assert_eq!(kdig_tls(dot), "", "no full handshake without a key server");
    assert!(f.get("/metrics").contains("onedot_keyless_unavailable 1"));

    // It comes back: handshakes succeed again without restarting the edge.
    let (mut ks, _) = start_key_server(ks_config);
    let deadline = Instant::now() + Duration::from_secs(10);
    while kdig_tls(dot) != "192.0.2.10" {
        assert!(Instant::now() < deadline, "handshakes resume\n{}", f.log.lock().expect("log"));
        std::thread::sleep(Duration::from_millis(200));
    }

    // The chain changes to an RSA certificate: picked up without a restart,
    // signed by the key server with the RSA key.
    std::fs::copy(rsa_cert, cert).expect("swap certificate");
    served_key(dot, "Server public key is 2048 bit");
    assert_eq!(kdig_tls(dot), "192.0.2.10", "an RSA handshake through the key server");

    // The key server takes new keys on SIGHUP (P-384, Ed25519); the edge's
    // chain moves to each in turn and kdig completes a handshake with it.
    let mut ks_text = std::fs::read_to_string(ks_config).expect("config");
    let mut spares = Vec::new();
    for (name, kind) in [
        ("p384", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        ("ed25519", ["-newkey", "ed25519", "", ""]),
    ] {
        let kind: Vec<&str> = kind.into_iter().filter(|a| !a.is_empty()).collect();
        let spare = dir.join(format!("{name}.pem"));
        door_certificate(&kind, &spare, &keys.join(format!("{name}.key")));
        ks_text.push_str(&format!("[[key]]\npath = \"{}\"\n", keys.join(format!("{name}.key")).display()));
        spares.push(spare);
    }
    std::fs::write(ks_config, ks_text).expect("config");
    run(Command::new("kill").args(["-HUP", &ks.id().to_string()]));
    for (spare, shown) in spares.iter().zip(["Server public key is 384 bit", "Peer signature type: ed25519"]) {
        std::fs::copy(spare, cert).expect("swap certificate");
        served_key(dot, shown);
        assert_eq!(kdig_tls(dot), "192.0.2.10", "{shown}: a handshake through the key server");
    }

    // Revoked: the next handshake fails, at once, on the open connection.
    run(Command::new(onedot()).args(["keyserver", "--config"]).arg(ks_config).args(["revoke", "ams1"]));
    assert_eq!(kdig_tls(dot), "", "a revoked edge gets no signature");
    assert!(ask(do53, "www.example.test", 1, false).is_some());
    stop(&mut ks);
    drop(f);
    let _ = std::fs::remove_dir_all(dir);
}

/// Asks `name` A from `source` (a loopback address of the client's own).
fn ask_from(source: &str, server: SocketAddr, name: &str) -> bool {
    let Ok(sock) = std::net::UdpSocket::bind((source, 0)) else { return false };
    let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
    let mut q = Vec::new();
    let qname = proto::Name::from_ascii(name).expect("name");
    proto::build::build_query(&mut q, 0x5eed, qname.as_wire(), 1, true, Some(1232), false);
    let mut buf = [0u8; 1500];
    sock.send_to(&q, server).is_ok() && sock.recv(&mut buf).is_ok()
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn a_keyless_edge_seals_its_disk_and_a_kill_leaves_nothing_readable() {
    let ks_setup = KeyServerSetup::new("sealed");
    let (mut ks, _) = start_key_server(&ks_setup.config);
    let data = ks_setup.dir.join("data");
    let telemetry = format!(
        "[telemetry]\ndata_dir = \"{}\"\nquery_log = true\nsample_rate = 1.0\n[policy]\nstate_file = \"{}\"\n\
         [cache]\nsnapshot_file = \"{}\"\n",
        data.display(),
        data.join("transparency.json").display(),
        data.join("cache.snapshot").display()
    );
    let mut f = Fixture::start_with("sealed-edge", &[], &ks_setup.edge_server(), &telemetry);
    let do53 = f.door("unfiltered");
    let clients = ["127.0.0.2", "127.0.0.3", "127.9.8.7"];
    let names = ["www.example.test", "secretname.example.test", "mail.example.test"];
    for c in clients {
        for n in names {
            assert!(ask_from(c, do53, n), "{n} from {c}");
        }
    }
    // The writer flushes every 200 ms; then the power goes.
    std::thread::sleep(Duration::from_millis(1500));
    let _ = f.serve.kill();
    let _ = f.serve.wait();
    let mut files = Vec::new();
    files_under(&data, &mut files);
    assert!(files.iter().any(|p| p.ends_with("sample.sqlite")), "the stores exist: {files:?}");
    let mut needles: Vec<Vec<u8>> = clients.iter().map(|c| c.as_bytes().to_vec()).collect();
    needles.push(b"127.0.0.0".to_vec()); // the query log's truncated network
    needles.push(b"127.9.8.0".to_vec());
    needles.push(b"secretname".to_vec()); // the name, as text and inside the wire form
    needles.push(b"example.test".to_vec());
    for file in &files {
        let bytes = std::fs::read(file).expect("read");
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{} holds {:?} in clear",
                file.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    // The audit, given the data keys by the key server, opens every row.
    let config = f.dir.join("onedot.toml");
    let audit = || {
        let out = Command::new(onedot())
            .args(["audit", "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("audit runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = audit();
    assert!(text.contains("PASS  on a keyless edge, nothing on disk is readable without the key server"), "{text}");
    assert!(text.contains("PASS  every sealed record opens with the edge's data keys"), "{text}");
    let opened: u64 = text
        .lines()
        .filter(|l| l.contains("rows open"))
        .filter_map(|l| l.split_whitespace().rev().nth(2).and_then(|n| n.parse::<u64>().ok()))
        .sum();
    assert!(opened >= 18, "9 queries in the log and 9 in the sample: {opened}\n{text}");
    // Without the key server the audit cannot open them (and says so).
    stop(&mut ks);
    let text = audit();
    assert!(text.contains("records not opened"), "{text}");
    // A restart with the key server up: the stores open and are written again.
    let (mut ks, _) = start_key_server(&ks_setup.config);
    drop(f);
    let f = Fixture::start_with("sealed-edge", &[], &ks_setup.edge_server(), &telemetry);
    assert!(ask_from("127.0.0.2", f.door("unfiltered"), "again.example.test"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f.log.lock().expect("log").contains("data keys held") {
        assert!(Instant::now() < deadline, "{}", f.log.lock().expect("log"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // The cache snapshot written at SIGTERM is sealed, and the next start
    // opens it with the data keys.
    let mut f = f;
    f.stop();
    let snapshot = std::fs::read(data.join("cache.snapshot")).expect("snapshot written");
    assert!(seal::is_sealed_file(&snapshot), "the cache snapshot is sealed");
    assert!(!snapshot.windows(7).any(|w| w == b"example"), "a name in clear in the sealed snapshot");
    drop(f);
    // The fixture's lab is a new one on another port, so the snapshot is
    // foreign to the new node: saying so means it was opened with the data
    // keys and its fingerprint read (a file it could not open would be
    // refused before that).
    let f = Fixture::start_with("sealed-edge", &[], &ks_setup.edge_server(), &telemetry);
    let log = f.log.lock().expect("log").clone();
    assert!(log.contains("cache snapshot ignored") && log.contains("written under another configuration"), "{log}");
    drop(f);
    stop(&mut ks);
    let _ = std::fs::remove_dir_all(&ks_setup.dir);
}

//! List feeds by URL against a local HTTPS server that serves, changes,
//! breaks, serves an error page with 200, sends too much, and hangs: the
//! last good copy always keeps blocking, each failure is in the
//! transparency log, conditional requests are used, a sha256 pin is
//! enforced, and a restart with the server gone serves the copy.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::rtype;

use crate::filtering::Fixture;

const SERVER: &str = r#"
import hashlib, http.server, ssl, sys, time, os
root = sys.argv[1]
def state():
    with open(os.path.join(root, "mode")) as f:
        return f.read().strip()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        mode = state()
        with open(os.path.join(root, "requests.log"), "a") as log:
            log.write("%s inm=%s ims=%s\n" % (self.path, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")))
        if mode == "hang":
            time.sleep(30)
            return
        if mode == "break":
            self.send_response(500); self.send_header("Content-Length", "0"); self.end_headers(); return
        if mode == "garbage":
            body = b"<html><body>Service temporarily unavailable</body></html>\n"
        elif mode == "huge":
            body = b"".join(b"n%d.huge.test\n" % i for i in range(5000))
        else:
            with open(os.path.join(root, "list-" + mode + ".txt"), "rb") as f:
                body = f.read()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304); self.send_header("ETag", etag); self.end_headers()
            with open(os.path.join(root, "requests.log"), "a") as log:
                log.write("304\n")
            return
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", "Sat, 05 Dec 2026 10:00:00 GMT")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(root, "cert.pem"), os.path.join(root, "key.pem"))
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(root: &Path) -> (Server, u16) {
    std::fs::write(root.join("server.py"), SERVER).expect("script");
    let mut child = Command::new("python3")
        .arg(root.join("server.py"))
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port");
    let port = line.trim().parse().unwrap_or_else(|_| panic!("no port: {line:?}"));
    (Server(child), port)
}

fn transparency(f: &Fixture) -> serde_json::Value {
    let page = f.get("/transparency.json");
    let body = &page[page.find("\r\n\r\n").expect("body") + 4..];
    serde_json::from_str(body).expect("JSON")
}

fn source<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["sources"].as_array().expect("sources").iter().find(|s| s["name"] == name).expect("source")
}

/// Waits until the feed's last error contains `needle`.
fn wait_error(f: &Fixture, name: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = transparency(f);
        let err = source(&v, name)["last_error"]["error"].as_str().unwrap_or("").to_string();
        if err.contains(needle) {
            return err;
        }
        assert!(Instant::now() < deadline, "no error with {needle:?} for {name}: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn blocked(f: &Fixture, name: &str) -> bool {
    f.ask("filtered", name, rtype::A).is_some_and(|m| m.rcode() == proto::Rcode::NxDomain as u16)
}

#[test]
fn a_feed_is_fetched_conditionally_and_its_last_good_copy_survives_every_failure() {
    let root = crate::filtering::unique_dir("feed-server");
    std::fs::create_dir_all(&root).expect("dir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("cert");
    std::fs::write(root.join("cert.pem"), cert.cert.pem()).expect("cert");
    std::fs::write(root.join("key.pem"), cert.signing_key.serialize_pem()).expect("key");
    std::fs::write(root.join("list-v1.txt"), "malware.test\n").expect("v1");
    std::fs::write(root.join("list-v2.txt"), "adult.test\n").expect("v2");
    std::fs::write(root.join("mode"), "v1").expect("mode");
    let (_server, port) = start_server(&root);
    // Written beside and renamed, so the server never reads half a mode.
    let set = |mode: &str| {
        std::fs::write(root.join("mode.new"), mode).expect("mode");
        std::fs::rename(root.join("mode.new"), root.join("mode")).expect("mode");
    };
    let policy = format!(
        r#"
[policy]
watch_interval_s = 1
reload_interval_s = 1
[[policy.source]]
name = "feed"
path = "feeds/feed.txt"
url = "https://127.0.0.1:{port}/list.txt"
ca_file = "{ca}"
format = "domains"
category = "malware"
max_bytes = 20000
timeout_s = 2
[[policy.source]]
name = "pinned"
path = "feeds/pinned.txt"
url = "https://127.0.0.1:{port}/pinned.txt"
ca_file = "{ca}"
sha256 = "{zeros}"
format = "domains"
category = "malware"
[[policy.profile]]
name = "filtered"
sources = ["feed", "pinned"]
listen = ["127.0.0.1:0"]
"#,
        ca = root.join("cert.pem").display(),
        zeros = "0".repeat(64)
    );
    let mut f = Fixture::start("feed", &[], &policy);
    // Fetched before the lists loaded: it blocks from the first query.
    assert!(blocked(&f, "malware.test"));
    assert!(!blocked(&f, "adult.test"));
    assert!(f.dir.join("feeds/feed.txt").exists() && f.dir.join("feeds/feed.txt.feed.json").exists());
    // The pinned feed's content does not hash to its pin: refused, named,
    // and the node serves without it.
    let err = wait_error(&f, "pinned", "does not match the pinned");
    assert!(!f.dir.join("feeds/pinned.txt").exists(), "{err}");

    // Unchanged: later fetches are conditional and answered 304.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(root.join("requests.log")).unwrap_or_default();
        if log.lines().any(|l| l.starts_with("/list.txt inm=\"")) && log.contains("304") {
            assert!(log.contains("ims=Sat, 05 Dec 2026 10:00:00 GMT"), "{log}");
            break;
        }
        assert!(Instant::now() < deadline, "no conditional request: {log}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Changed: the new list replaces the old one.
    set("v2");
    let m = f.wait_for("filtered", "adult.test", |m| m.rcode() == proto::Rcode::NxDomain as u16);
    assert_eq!(m.rcode(), proto::Rcode::NxDomain as u16);
    assert!(!blocked(&f, "malware.test"));

    // Every failure keeps the last good copy and is public.
    for (mode, says) in [
        ("break", "HTTP status 500"),
        ("garbage", "not a usable list"),
        ("huge", "larger than max_bytes"),
        ("hang", "no complete answer within 2 s"),
    ] {
        set(mode);
        let err = wait_error(&f, "feed", says);
        assert!(err.contains("the last good copy serves"), "{err}");
        assert!(blocked(&f, "adult.test"), "{mode}: the last good copy still blocks");
        assert_eq!(std::fs::read_to_string(f.dir.join("feeds/feed.txt")).expect("copy"), "adult.test\n");
    }
    let log = f.log.lock().expect("log").clone();
    assert!(log.contains("list feed not fetched"), "{log}");

    // A restart with the server gone: the copy serves at once.
    drop(_server);
    f.stop();
    let config = f.dir.join("onedot.toml");
    let again = crate::restart::Serve::start(&config, &[]);
    let door: std::net::SocketAddr = again
        .log()
        .split_whitespace()
        .filter(|w| w.starts_with("udp="))
        .nth(1)
        .and_then(|w| w.trim_start_matches("udp=").parse().ok())
        .unwrap_or_else(|| panic!("no filtered door: {}", again.log()));
    let m = crate::filtering::ask(door, "adult.test", rtype::A, false).expect("answer");
    assert_eq!(m.rcode(), proto::Rcode::NxDomain as u16, "the copy blocks after a restart");
    drop(again);
    let _ = std::fs::remove_dir_all(&root);
}

//! Restarts without loss: `serve --takeover` under dnsperf load (no query
//! lost, the cache as warm in the first second as before), the cache
//! snapshot written at SIGTERM and read at start, and a damaged snapshot
//! ignored with a warning.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::rtype;
use serde_json::Value;

use crate::filtering::{ask, unique_dir};
use crate::onedot;

/// A `onedot serve` and what it logged.
pub(crate) struct Serve {
    child: Child,
    log: Arc<Mutex<String>>,
}

/// Runs `onedot serve --config CONFIG EXTRA...` with its log kept (and
/// each line also sent, for a caller waiting for one).
pub(crate) fn spawn_serve(
    config: &Path,
    extra: &[&str],
) -> (Child, Arc<Mutex<String>>, std::sync::mpsc::Receiver<String>) {
    spawn_serve_in(None, config, extra)
}

/// [`spawn_serve`] in the network namespace `netns`, if given.
pub(crate) fn spawn_serve_in(
    netns: Option<&str>,
    config: &Path,
    extra: &[&str],
) -> (Child, Arc<Mutex<String>>, std::sync::mpsc::Receiver<String>) {
    let mut child = crate::in_netns(netns, onedot())
        .args(["serve", "--config"])
        .arg(config)
        .args(extra)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().expect("log").push_str(&format!("{line}\n"));
            let _ = tx.send(line);
        }
    });
    (child, log, rx)
}

impl Serve {
    /// Starts `serve` (with `extra` arguments) and waits for its web
    /// listener, the last door it opens.
    pub(crate) fn start(config: &Path, extra: &[&str]) -> Serve {
        Serve::start_in(None, config, extra)
    }

    /// [`Serve::start`] in the network namespace `netns`, if given.
    pub(crate) fn start_in(netns: Option<&str>, config: &Path, extra: &[&str]) -> Serve {
        let (child, log, rx) = spawn_serve_in(netns, config, extra);
        let serve = Serve { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "serve did not come up: {}", serve.log());
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
                && line.contains(" web=")
            {
                return serve;
            }
        }
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    /// Waits for the process to exit; its status.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "serve did not exit: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and waits.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.wait(Duration::from_secs(20))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (the config needs fixed
/// ports: a takeover hands over the sockets of the addresses it names).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn ctl(config: &Path, args: &[&str]) -> Value {
    let out =
        Command::new(onedot()).args(["ctl", "--json", "--config"]).arg(config).args(args).output().expect("ctl runs");
    assert!(out.status.success(), "ctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// (cache hits, queries) so far, over every door.
fn counters(config: &Path) -> (f64, f64) {
    let stats = ctl(config, &["stats"]);
    let sum = |prefix: &str| {
        stats
            .as_object()
            .expect("object")
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .filter_map(|(_, v)| v.as_f64())
            .sum()
    };
    (sum("onedot_cache_hits_total{"), sum("onedot_queries_total{"))
}

fn questions(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(crate::repo().join("crates/lab/zones/questions.txt")).expect("questions");
    let lines: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split_whitespace().count() == 2)
        .map(|l| format!("{l}\n"))
        .collect();
    let path = dir.join("queries.txt");
    std::fs::write(&path, lines).expect("queries");
    path
}

fn dnsperf(port: u16, queries: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("dnsperf");
    c.args(["-s", "127.0.0.1", "-p", &port.to_string(), "-d"]).arg(queries).args(args);
    c
}

fn field(report: &str, label: &str) -> u64 {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in dnsperf's report:\n{report}"))
}

#[test]
fn a_takeover_under_load_loses_no_query_and_starts_warm() {
    let dir = unique_dir("restart");
    std::fs::create_dir_all(&dir).expect("dir");
    let (mut lab, lab_port) = crate::start_lab(None);
    let (port, web) = (free_port(), free_port());
    let config = dir.join("onedot.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[web]\nlisten = \"127.0.0.1:{web}\"\n[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 2\n\
             [resolver]\nroot_hints = [\"127.53.0.1\"]\nupstream_port = {lab_port}\ndo_not_query_localhost = false\n\
             answer_special_use_locally = false\n[dnssec]\nvalidate = false\n\
             [limits]\nrate_limit = false\nflood_per_second = 0\n[cache]\nsnapshot_file = \"{}\"\n\
             [control]\nsocket = \"{}\"\n",
            dir.join("cache.snapshot").display(),
            dir.join("ctl.sock").display()
        ),
    )
    .expect("config");
    let queries = questions(&dir);
    let mut old = Serve::start(&config, &[]);
    let warm = dnsperf(port, &queries, &["-n", "1", "-q", "20", "-t", "5"]).output().expect("dnsperf runs");
    assert!(warm.status.success(), "dnsperf: {}", String::from_utf8_lossy(&warm.stderr));

    // A successor that fails before it is ready (a listener it cannot
    // bind): the old process serves on, its control socket still there.
    let broken = dir.join("broken.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&broken, text.replace("listen = [\"127.0.0.1:", "listen = [\"192.0.2.1:53\", \"127.0.0.1:"))
        .expect("broken config");
    let failed = Command::new(onedot())
        .args(["serve", "--takeover", "--config"])
        .arg(&broken)
        .env("NO_COLOR", "1")
        .output()
        .expect("serve runs");
    assert!(!failed.status.success(), "{}", String::from_utf8_lossy(&failed.stderr));
    let udp: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert!(ask(udp, "www.example.test", rtype::A, false).is_some(), "the old process serves on");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !old.log().contains("serving on") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(old.log().contains("the successor did not say ready; serving on"), "{}", old.log());
    assert!(ctl(&config, &["status"])["uptime_s"].is_u64());

    // Load for eight seconds; the takeover three seconds in.
    let load = dnsperf(port, &queries, &["-l", "8", "-Q", "3000", "-q", "100", "-t", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dnsperf runs");
    std::thread::sleep(Duration::from_secs(1));
    let a0 = counters(&config);
    std::thread::sleep(Duration::from_secs(2));
    let a1 = counters(&config);
    let before = (a1.0 - a0.0) / (a1.1 - a0.1).max(1.0);
    let old_pid = old.child.id();
    let mut new = Serve::start(&config, &["--takeover"]);
    let b0 = counters(&config);
    std::thread::sleep(Duration::from_secs(1));
    let b1 = counters(&config);
    let after = (b1.0 - b0.0) / (b1.1 - b0.1).max(1.0);
    let status = old.wait(Duration::from_secs(20));
    assert!(status.success(), "the old process exits 0 after a takeover: {status:?}\n{}", old.log());
    assert!(old.log().contains("a successor took the sockets over"), "{}", old.log());
    let out = load.wait_with_output().expect("dnsperf ends");
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    let (sent, lost) = (field(&report, "Queries sent:"), field(&report, "Queries lost:"));
    eprintln!(
        "takeover under load: {sent} sent, {lost} lost; hit rate {:.3} in the 2 s before, {:.3} in the first second after ({} queries)",
        before,
        after,
        b1.1 - b0.1
    );
    assert!(sent > 10_000, "{report}");
    assert_eq!(lost, 0, "no query lost through the takeover:\n{report}\nold:\n{}\nnew:\n{}", old.log(), new.log());
    assert!(before > 0.5, "the cache was warm before: {before}");
    assert!(b1.1 - b0.1 > 300.0, "the new process served in its first second: {b0:?} {b1:?}");
    assert!(after >= 0.9 * before, "hit rate in the first second {after:.3} against {before:.3} before");
    let log = new.log();
    assert!(log.contains("taking over from the running onedot") && log.contains("cache snapshot loaded"), "{log}");
    assert!(!dir.join("ctl.sock").with_extension("takeover-cache").exists());
    let status = ctl(&config, &["status"]);
    assert!(status["uptime_s"].as_u64() < Some(30), "the control socket is the new process's: {status}");
    assert_ne!(new.child.id(), old_pid);

    // SIGTERM writes the snapshot (0600); a plain start reads it, aged.
    assert!(new.stop().success());
    use std::os::unix::fs::PermissionsExt;
    let snapshot = dir.join("cache.snapshot");
    let mode = std::fs::metadata(&snapshot).expect("snapshot written at SIGTERM").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut third = Serve::start(&config, &[]);
    assert!(third.log().contains("cache snapshot loaded"), "{}", third.log());
    let (h0, _) = counters(&config);
    assert!(ask(udp, "www.example.test", rtype::A, false).is_some());
    let (h1, _) = counters(&config);
    assert_eq!(h1 - h0, 1.0, "the first query after a restart is a cache hit");
    assert!(third.stop().success());

    // A damaged snapshot is named and ignored; the node serves.
    let mut bytes = std::fs::read(&snapshot).expect("snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&snapshot, &bytes).expect("damage");
    let fourth = Serve::start(&config, &[]);
    let log = fourth.log();
    assert!(log.contains("cache snapshot ignored") && log.contains("checksum"), "{log}");
    assert_eq!(ctl(&config, &["status"])["answer_cache"]["entries"].as_u64(), Some(0));
    assert!(ask(udp, "www.example.test", rtype::A, false).is_some());
    drop(fourth);
    let _ = lab.kill();
    let _ = lab.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Socket activation: systemd's own tool (`systemd-socket-activate`, as a
/// `.socket` unit would) binds the UDP port and starts onedot on the first
/// datagram; onedot answers it on the socket it was given (no SO_REUSEPORT
/// there, so no sockets are added beside it) and binds the TCP twin itself.
#[test]
fn socket_activation_serves_the_sockets_systemd_passes() {
    let dir = unique_dir("activation");
    std::fs::create_dir_all(&dir).expect("dir");
    let (mut lab, lab_port) = crate::start_lab(None);
    let port = free_port();
    let config = dir.join("onedot.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[web]\nlisten = \"\"\n[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 2\n\
             [resolver]\nroot_hints = [\"127.53.0.1\"]\nupstream_port = {lab_port}\ndo_not_query_localhost = false\n\
             answer_special_use_locally = false\n[dnssec]\nvalidate = false\n"
        ),
    )
    .expect("config");
    let log = dir.join("serve.log");
    let mut activator = Command::new("systemd-socket-activate")
        .args(["--datagram", "-l", &format!("127.0.0.1:{port}"), "-E", "RUST_LOG=info", "-E", "NO_COLOR=1"])
        .arg("sh")
        .arg("-c")
        .arg(format!("exec {} serve --config {} 2>{}", onedot(), config.display(), log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate runs (Debian package systemd)");
    let udp: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    // Bound when our own bind fails.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::UdpSocket::bind(udp).is_ok() {
        assert!(Instant::now() < deadline, "systemd-socket-activate did not bind {udp}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The first datagram starts onedot, which then answers it.
    let answered = ask(udp, "www.example.test", rtype::A, false);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = activator.kill();
    let _ = activator.wait();
    assert!(answered.is_some(), "no answer through the activated socket: {text}");
    assert!(text.contains("socket from systemd") && text.contains(&format!("addr=127.0.0.1:{port}")), "{text}");
    assert!(ask(udp, "www.example.test", rtype::A, true).is_none(), "onedot is gone, TCP with it");
    let _ = lab.kill();
    let _ = lab.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

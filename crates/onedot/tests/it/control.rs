//! `onedot ctl` against a running onedot: every command over the control
//! socket, its errors as one line, and the socket's mode.

use std::process::Command;

use proto::rtype;
use serde_json::Value;

use crate::filtering::{Fixture, ask};
use crate::onedot;

fn ctl(f: &Fixture, args: &[&str]) -> (bool, String) {
    let out = Command::new(onedot())
        .args(["ctl", "--config"])
        .arg(f.dir.join("onedot.toml"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("ctl runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn json(f: &Fixture, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (ok, out) = ctl(f, &all);
    assert!(ok, "ctl {args:?}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {out}"))
}

#[test]
fn every_ctl_command_works_against_a_running_onedot() {
    let mut f = Fixture::start("ctl", &[], "[control]\nsocket = \"ctl.sock\"\n");
    let socket = f.dir.join("ctl.sock");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is for its owner only");
    let udp = f.door("unfiltered");

    let (ok, status) = ctl(&f, &["status"]);
    assert!(ok && status.contains("version: ") && status.contains("answer_cache.entries: "), "{status}");
    for name in ["www.example.test", "mail.example.test", "nope.example.test"] {
        assert!(ask(udp, name, rtype::A, false).is_some());
    }
    let stats = json(&f, &["stats"]);
    let answered = stats["onedot_queries_total{door=\"udp\",profile=\"unfiltered\",qtype=\"A\",rcode=\"NOERROR\"}"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(answered >= 2.0, "{stats}");

    // flush NAME TYPE: the answer and its RRset go; a second flush finds nothing.
    let flushed = json(&f, &["flush", "www.example.test", "A"]);
    assert!(flushed["answers"].as_u64() >= Some(1) && flushed["rrsets"].as_u64() >= Some(1), "{flushed}");
    let again = json(&f, &["flush", "WWW.Example.Test."]);
    assert_eq!(again["answers"].as_u64(), Some(0), "{again}");
    // flush-zone takes what is below the name.
    let zone = json(&f, &["flush-zone", "example.test"]);
    assert!(zone["answers"].as_u64() >= Some(2), "mail. and nope.example.test: {zone}");
    // flush-negative takes the NXDOMAIN answer, not the positive one.
    assert!(ask(udp, "nope.example.test", rtype::A, false).is_some());
    assert!(ask(udp, "www.example.test", rtype::A, false).is_some());
    let negative = json(&f, &["flush-negative"]);
    assert!(negative["answers"].as_u64() >= Some(1), "{negative}");
    assert_eq!(
        json(&f, &["flush", "www.example.test", "A"])["answers"].as_u64(),
        Some(1),
        "the positive answer stayed"
    );
    let bogus = json(&f, &["flush-bogus"]);
    assert!(bogus["answers"].is_u64() && bogus["rrsets"].is_u64(), "{bogus}");
    assert!(ask(udp, "www.example.test", rtype::A, false).is_some());
    let all = json(&f, &["flush-all"]);
    assert!(all["answers"].as_u64() >= Some(1), "{all}");
    assert_eq!(json(&f, &["status"])["answer_cache"]["entries"].as_u64(), Some(0));

    let lists = json(&f, &["lists-reload"]);
    assert!(lists["changed"].is_array() && lists["failed"].is_array(), "{lists}");
    let (ok, out) = ctl(&f, &["log-level", "debug"]);
    assert!(ok, "{out}");
    // The line reaches the log reader thread a moment after ctl returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !f.log.lock().expect("log").contains("log filter set by onedot ctl") {
        assert!(std::time::Instant::now() < deadline, "no log line for the new filter");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (ok, out) = ctl(&f, &["log-level", "info"]);
    assert!(ok, "{out}");
    let inflight = json(&f, &["inflight"]);
    assert!(inflight["queries_in_flight"].is_u64() && inflight["resolving"].is_array(), "{inflight}");
    // This server does not validate: an NTA has nothing to except.
    let (ok, out) = ctl(&f, &["nta", "add", "bogus.test"]);
    assert!(!ok && out.contains("validation is off"), "{out}");
    // dump-cache / load-cache: what was dumped comes back after flush-all.
    assert!(ask(udp, "www.example.test", rtype::A, false).is_some());
    let file = f.dir.join("snap.bin");
    let file_arg = file.display().to_string();
    let dumped = json(&f, &["dump-cache", &file_arg]);
    assert!(dumped["answers"].as_u64() >= Some(1) && dumped["rrsets"].as_u64() >= Some(1), "{dumped}");
    json(&f, &["flush-all"]);
    let loaded = json(&f, &["load-cache", &file_arg]);
    assert_eq!(
        (loaded["answers"].as_u64(), loaded["rrsets"].as_u64()),
        (dumped["answers"].as_u64(), dumped["rrsets"].as_u64())
    );
    assert!(json(&f, &["status"])["answer_cache"]["entries"].as_u64() >= Some(1));
    std::fs::write(&file, b"not a snapshot").expect("overwrite");
    let (ok, out) = ctl(&f, &["load-cache", &file_arg]);
    assert!(!ok && out.contains("not a onedot cache snapshot"), "{out}");
    // reload: nothing changed, then a key that needs a restart, then a
    // config that does not load (the running one stays).
    let same = json(&f, &["reload"]);
    assert_eq!(same["needs_restart"], serde_json::json!([]), "{same}");
    assert!(same["applied"].to_string().contains("filter sources re-read"), "{same}");
    let path = f.dir.join("onedot.toml");
    let text = std::fs::read_to_string(&path).expect("config");
    std::fs::write(&path, format!("{text}\n[cache]\nmax_ttl = 600\n")).expect("config");
    let changed = json(&f, &["reload"]);
    assert_eq!(changed["needs_restart"], serde_json::json!(["cache.max_ttl"]), "{changed}");
    std::fs::write(&path, format!("{text}\n[cache]\nmax_ttl = \"soon\"\n")).expect("config");
    // (`ctl --config` would read the broken file itself: name the socket.)
    let out = Command::new(onedot())
        .args(["ctl", "--socket"])
        .arg(&socket)
        .arg("reload")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("ctl");
    let (ok, out) = (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string());
    assert!(!ok && out.contains("max_ttl") && out.contains("unchanged"), "{out}");
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    std::fs::write(&path, &text).expect("config");
    let (ok, help) = ctl(&f, &["help"]);
    assert!(ok && help.contains("flush-zone NAME"), "{help}");

    // Errors: one clear line each, and a failing exit.
    for (args, says) in [
        (&["reboot"][..], "unknown command \"reboot\""),
        (&["flush"][..], "flush needs a NAME"),
        (&["flush", "www.example.test", "NOTATYPE"][..], "is not a record type"),
        (&["log-level", "onedot=[bad"][..], "onedot=[bad"),
        (&["dump-cache"][..], "cache.snapshot_file is not set"),
        (&["load-cache", "/nonexistent/snap"][..], "no such file"),
    ] {
        let (ok, out) = ctl(&f, args);
        assert!(!ok && out.contains(says), "ctl {args:?}: {out}");
        assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    }

    // A second onedot on the same control socket stops instead of taking
    // it (without --takeover).
    let second = Command::new(onedot())
        .args(["serve", "--config"])
        .arg(f.dir.join("onedot.toml"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("serve runs");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && err.contains("another onedot is serving there"), "{err}");
    assert!(ctl(&f, &["status"]).0, "the first one still has its socket");

    // A graceful stop removes the socket; then ctl says it cannot reach it.
    f.stop();
    assert!(!socket.exists(), "the socket outlived the server");
    let (ok, out) = ctl(&f, &["status"]);
    assert!(!ok && out.contains("cannot reach the control socket"), "{out}");
}

#[test]
fn the_tcp_control_port_takes_only_requests_with_its_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::filtering::unique_dir("ctl-tcp");
    std::fs::create_dir_all(&dir).expect("dir");
    let key = dir.join("ctl.key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef-onedot\n").expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (mut lab, port) = crate::start_lab(None);
    let config = dir.join("onedot.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[web]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n[resolver]\n\
             root_hints = [\"127.53.0.1\"]\nupstream_port = {port}\ndo_not_query_localhost = false\n\
             [dnssec]\nvalidate = false\n[control]\ntcp = \"127.0.0.1:0\"\nkey_file = \"ctl.key\"\n"
        ),
    )
    .expect("config");
    let serve = crate::restart::Serve::start(&config, &[]);
    let log = serve.log();
    let addr = log
        .split_whitespace()
        .find_map(|w| w.strip_prefix("control_tcp="))
        .unwrap_or_else(|| panic!("no control port: {log}"))
        .to_string();
    let run = |key: &std::path::Path, cmd: &str| {
        let out = Command::new(onedot())
            .args(["ctl", "--json", "--tcp", &addr, "--key-file"])
            .arg(key)
            .arg(cmd)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("ctl runs");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, out) = run(&key, "status");
    assert!(ok && out.contains("\"uptime_s\""), "{out}");
    let wrong = dir.join("wrong.key");
    std::fs::write(&wrong, "fedcba9876543210fedcba9876543210-other\n").expect("key");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (ok, out) = run(&wrong, "status");
    assert!(!ok && out.contains("wrong or missing control key"), "{out}");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, out) = run(&wrong, "status");
    assert!(!ok && out.contains("readable by others"), "{out}");
    let (ok, out) = run(&key, "takeover");
    assert!(!ok && out.contains("needs the Unix control socket"), "{out}");
    // Off loopback, or without a key, the config does not load.
    for (extra, says) in
        [("tcp = \"0.0.0.0:8953\"\nkey_file = \"k\"", "loopback only"), ("tcp = \"127.0.0.1:8953\"", "key_file")]
    {
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, format!("version = 1\n[control]\n{extra}\n")).expect("config");
        let out = Command::new(onedot()).args(["config", "--config"]).arg(&bad).output().expect("config runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{err}");
    }
    drop(serve);
    let _ = lab.kill();
    let _ = lab.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `nta add|list|remove` through ctl on a validating onedot: a bogus zone
/// answers (without AD) while it has a negative trust anchor, and fails
/// again once it is removed.
#[test]
fn negative_trust_anchors_through_ctl_on_a_validating_onedot() {
    let dir = crate::filtering::unique_dir("ctl-nta");
    std::fs::create_dir_all(&dir).expect("dir");
    let anchor = dir.join("lab-root.key");
    let (mut lab, port) = crate::start_lab(Some(&anchor));
    let config = dir.join("onedot.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[web]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n[resolver]\n\
             root_hints = [\"127.53.0.1\"]\nupstream_port = {port}\ndo_not_query_localhost = false\n\
             answer_special_use_locally = false\n[dnssec]\nbuiltin_root_anchor = false\ntrust_anchor_files = [{:?}]\n\
             [control]\nsocket = \"ctl.sock\"\n",
            anchor.display().to_string()
        ),
    )
    .expect("config");
    let serve = crate::restart::Serve::start(&config, &[]);
    let log = serve.log();
    let udp: std::net::SocketAddr = log
        .split_whitespace()
        .find_map(|w| w.strip_prefix("udp="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no door: {log}"));
    let nta = |args: &[&str]| -> Value {
        let out = Command::new(onedot())
            .args(["ctl", "--json", "--socket"])
            .arg(dir.join("ctl.sock"))
            .arg("nta")
            .args(args)
            .output()
            .expect("ctl runs");
        assert!(out.status.success(), "nta {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let rcode = || ask(udp, "www.bogus.test", rtype::A, false).expect("answer").rcode();
    assert_eq!(rcode(), proto::Rcode::ServFail as u16, "bogus without an exception");
    assert_eq!(nta(&["add", "bogus.test"])["added"], true);
    let m = ask(udp, "www.bogus.test", rtype::A, false).expect("answer");
    assert_eq!(m.rcode(), proto::Rcode::NoError as u16, "answered under the negative trust anchor");
    assert!(!m.has_flag(proto::flags::AD), "never AD below a negative trust anchor");
    assert_eq!(nta(&["list"])["added"], serde_json::json!(["bogus.test."]));
    assert_eq!(nta(&["remove", "bogus.test"])["removed"], true);
    assert_eq!(rcode(), proto::Rcode::ServFail as u16, "bogus again once the exception is gone");
    assert_eq!(nta(&["list"])["added"], serde_json::json!([]));
    drop(serve);
    let _ = lab.kill();
    let _ = lab.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

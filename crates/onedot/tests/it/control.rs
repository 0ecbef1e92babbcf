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
    assert!(f.log.lock().expect("log").contains("log filter set by onedot ctl"));
    let (ok, out) = ctl(&f, &["log-level", "info"]);
    assert!(ok, "{out}");
    let inflight = json(&f, &["inflight"]);
    assert!(inflight["queries_in_flight"].is_u64() && inflight["resolving"].is_array(), "{inflight}");
    // This server does not validate: an NTA has nothing to except.
    let (ok, out) = ctl(&f, &["nta", "add", "bogus.test"]);
    assert!(!ok && out.contains("validation is off"), "{out}");
    let (ok, help) = ctl(&f, &["help"]);
    assert!(ok && help.contains("flush-zone NAME"), "{help}");

    // Errors: one clear line each, and a failing exit.
    for (args, says) in [
        (&["reboot"][..], "unknown command \"reboot\""),
        (&["flush"][..], "flush needs a NAME"),
        (&["flush", "www.example.test", "NOTATYPE"][..], "is not a record type"),
        (&["log-level", "onedot=[bad"][..], "onedot=[bad"),
    ] {
        let (ok, out) = ctl(&f, args);
        assert!(!ok && out.contains(says), "ctl {args:?}: {out}");
        assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
    }

    // A graceful stop removes the socket; then ctl says it cannot reach it.
    f.stop();
    assert!(!socket.exists(), "the socket outlived the server");
    let (ok, out) = ctl(&f, &["status"]);
    assert!(!ok && out.contains("cannot reach the control socket"), "{out}");
}

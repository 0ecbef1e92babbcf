//! Real peers: the lab served by NSD, and a differential test against
//! Unbound. Both bind port 53 on 127.53.x.y, so nextest runs them one at a
//! time (the `port53` test group in .config/nextest.toml).

use std::process::Command;

use crate::{onedot, repo};

/// `cargo test` runs tests as threads of one process: serialise them here
/// too (nextest runs each in its own process, serialised by test group).
static PORT53: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_script(script: &str, extra: &[&str]) {
    let _guard = PORT53.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("python3")
        .arg(repo().join("tests/peers").join(script))
        .arg("--onedot")
        .arg(onedot())
        .args(extra)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "{script} failed ({})", out.status);
    let last = stdout.lines().rev().find(|l| l.contains(" passed, ")).unwrap_or_default();
    assert!(last.ends_with(" 0 failed"), "summary: {last}");
}

#[test]
fn nsd_serves_the_lab_and_onedot_resolves_through_it() {
    run_script("nsd_lab.py", &[]);
}

#[test]
fn differential_against_unbound() {
    let questions = repo().join("crates/lab/zones/questions.txt");
    run_script("differential_unbound.py", &["--questions", questions.to_str().expect("utf-8 path"), "--min", "300"]);
}

/// Both resolvers validate from the lab's root key (exported by
/// `onedot lab --trust-anchor-out`); rcode, answers and the AD bit must
/// agree. Unbound is then an independent check of the lab's signer and of
/// our validator.
#[test]
fn differential_against_validating_unbound() {
    let questions = repo().join("crates/lab/zones/questions.txt");
    run_script(
        "differential_unbound.py",
        &["--questions", questions.to_str().expect("utf-8 path"), "--min", "300", "--validate"],
    );
}

//! Command-line behaviour: config errors, `onedot config`.

use std::process::Command;

use crate::{onedot, repo};

#[test]
fn serve_refuses_a_broken_config_and_says_where() {
    let dir = std::env::temp_dir().join(format!("onedot-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "version = 1\n[server]\nlisten = [\"127.0.0.1:0\"]\nlisten_typo = 1\n").expect("write");
    let out = Command::new(onedot()).args(["serve", "--config"]).arg(&path).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("listen_typo") && err.contains("line 4"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_prints_the_effective_config() {
    let example = repo().join("examples/onedot.toml");
    let out = Command::new(onedot()).args(["config", "--config"]).arg(&example).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("qname_minimisation = true") && text.contains("corp.example."), "{text}");
}

#[test]
fn the_example_lists_load() {
    let example = repo().join("examples/onedot.toml");
    let out = Command::new(onedot()).args(["lists", "--config"]).arg(&example).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("local-rpz: 7 entries") && text.contains("family: 3 entries"), "{text}");
}

#[test]
fn lab_export_writes_zones_and_server_map() {
    let dir = std::env::temp_dir().join(format!("onedot-export-{}", std::process::id()));
    let out = Command::new(onedot()).args(["lab", "--export"]).arg(&dir).output().expect("runs");
    assert!(out.status.success());
    let json = std::fs::read_to_string(dir.join("servers.json")).expect("servers.json");
    assert!(json.contains("\"127.53.0.1\"") && json.contains("root.zone"));
    assert!(dir.join("example.test.zone").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve` with `trust_anchor_state` probes the anchored DNSKEY set at
/// start-up and writes the RFC 5011 state file.
#[test]
fn serve_keeps_rfc5011_state_on_disk() {
    use std::process::Stdio;
    let dir = std::env::temp_dir().join(format!("onedot-serve-5011-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let anchor = dir.join("lab-root.key");
    let (mut lab, port) = crate::start_lab(Some(&anchor));
    let state = dir.join("anchors.state");
    let config = format!(
        "version = 1\n[web]\nlisten = \"127.0.0.1:0\"\n[server]\nlisten = [\"127.0.0.1:0\"]\n[resolver]\nroot_hints = [\"127.53.0.1\"]\nupstream_port = {port}\n\
         do_not_query_localhost = false\nanswer_special_use_locally = false\n[dnssec]\nbuiltin_root_anchor = false\n\
         trust_anchor_files = [{:?}]\ntrust_anchor_state = {:?}\n",
        anchor.display().to_string(),
        state.display().to_string()
    );
    std::fs::write(dir.join("onedot.toml"), config).expect("config");
    let mut serve = Command::new(onedot())
        .args(["serve", "--config"])
        .arg(dir.join("onedot.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = std::fs::read_to_string(&state).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = serve.kill();
    let _ = serve.wait();
    let _ = lab.kill();
    let _ = lab.wait();
    assert!(text.lines().any(|l| l.starts_with(". valid ")), "state file: {text:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

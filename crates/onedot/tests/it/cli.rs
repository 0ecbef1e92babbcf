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
fn lab_export_writes_zones_and_server_map() {
    let dir = std::env::temp_dir().join(format!("onedot-export-{}", std::process::id()));
    let out = Command::new(onedot()).args(["lab", "--export"]).arg(&dir).output().expect("runs");
    assert!(out.status.success());
    let json = std::fs::read_to_string(dir.join("servers.json")).expect("servers.json");
    assert!(json.contains("\"127.53.0.1\"") && json.contains("root.zone"));
    assert!(dir.join("example.test.zone").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

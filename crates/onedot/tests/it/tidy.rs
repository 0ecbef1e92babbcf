//! House rules checked as tests.

use crate::repo;

/// Every crate under crates/ appears in ARCHITECTURE.md's code map.
#[test]
fn architecture_code_map_names_every_crate() {
    let arch = std::fs::read_to_string(repo().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    for e in std::fs::read_dir(repo().join("crates")).expect("crates dir") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            arch.contains(&format!("| `{name}` |")),
            "crate {name} is missing from the code map in ARCHITECTURE.md"
        );
    }
}

/// Every crate root starts with a crate-level doc comment.
#[test]
fn every_crate_documents_what_it_owns() {
    for e in std::fs::read_dir(repo().join("crates")).expect("crates dir") {
        let dir = e.expect("entry").path();
        let root = if dir.join("src/lib.rs").exists() { dir.join("src/lib.rs") } else { dir.join("src/main.rs") };
        let text = std::fs::read_to_string(&root).expect("crate root");
        assert!(text.starts_with("//!"), "{} has no crate-level doc comment", root.display());
    }
}

/// Nothing in tests, examples or the lab names a non-loopback server
/// address that would be contacted (answer data uses documentation ranges).
#[test]
fn lab_servers_are_loopback_only() {
    let lab = lab::LabData::builtin().expect("lab");
    for addr in lab.servers.keys() {
        assert!(addr.is_loopback(), "lab server {addr} is not on loopback");
    }
}

/// PRIVACY.md is generated from the inventory in the code and the example
/// config; it never drifts from them.
#[test]
fn privacy_md_is_generated_from_the_inventory() {
    let out = std::process::Command::new(crate::onedot())
        .args(["privacy", "--config"])
        .arg(repo().join("examples/onedot.toml"))
        .output()
        .expect("runs");
    assert!(out.status.success());
    let generated = String::from_utf8_lossy(&out.stdout);
    let committed = std::fs::read_to_string(repo().join("PRIVACY.md")).expect("PRIVACY.md");
    assert!(
        committed == generated,
        "PRIVACY.md is stale: run `cargo run -p onedot -- privacy --config examples/onedot.toml > PRIVACY.md`"
    );
}

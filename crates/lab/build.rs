//! Embeds the lab's zone files, behaviours and questions into the crate so
//! `onedot demo` works from any directory.

use std::fmt::Write;
use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").expect("manifest dir")).join("zones");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("zones directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".zone") || n == "lab.toml" || n == "dnssec.toml" || n == "questions.txt")
        .collect();
    names.sort();
    let mut out =
        String::from("/// Embedded lab files: (file name, contents).\npub static FILES: &[(&str, &str)] = &[\n");
    for n in names {
        let path = dir.join(&n);
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(out, "    ({n:?}, include_str!({:?})),", path.display().to_string()).expect("write");
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("out dir")).join("files.rs");
    fs::write(dest, out).expect("write files.rs");
}

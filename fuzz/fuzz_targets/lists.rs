//! The filter-list parsers of `policy` (crates/policy/src/source.rs): hosts,
//! plain domains, the AdBlock subset and RPZ, on the same arbitrary text.
//!
//! The per-format line parsers (`hosts_line`, `domains_line`,
//! `adblock_line`, `RpzState::line`) and their `Sink` are private; the only
//! public way in is `policy::load(&SourceSpec, counter)` (or
//! `Policy::reload`, which calls it), and both read the source from disk.
//! So the text is written to one file in a per-process temporary directory
//! and every format reads that file. A `Policy` with one source per format
//! (the hosts one under a legal basis, to reach that branch) is then asked
//! about names and addresses taken from the text.
//!
//! Input: the list text (lossy UTF-8, as the loader rejects non-UTF-8
//! lines). The spec flags (`subdomains`, block or allow kind) come from the
//! input's length modulo 4, so that list files are seeds as they are.

#![no_main]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use policy::{Format, Kind, Legal, Policy, ProfileSpec, SourceSpec, Verdict};
use proto::Name;

fn list_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("onedot-fuzz-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("list")
    })
}

fn spec(name: &str, format: Format, flags: u8) -> SourceSpec {
    SourceSpec {
        kind: if flags & 2 != 0 { Kind::Allow } else { Kind::Block },
        legal_basis: (format == Format::Hosts).then(|| Legal {
            authority: "fuzz court".into(),
            reference: "F-1".into(),
            url: None,
        }),
        subdomains: flags & 1 != 0,
        ..SourceSpec::new(name, list_path().clone(), format, "fuzz")
    }
}

fuzz_target!(|data: &[u8]| {
    let flags = (data.len() % 4) as u8;
    let text = String::from_utf8_lossy(data);
    std::fs::write(list_path(), text.as_bytes()).expect("write list");

    // Each format alone, through the public loader.
    for (i, format) in [Format::Hosts, Format::Domains, Format::Adblock, Format::Rpz].into_iter().enumerate() {
        match policy::load(&spec(&format!("s{i}"), format, flags), Default::default()) {
            Ok(src) => {
                let _ = (src.entries(), src.heap_bytes(), src.unsupported);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    // All four in one profile, then lookups.
    let sources = vec![
        spec("hosts", Format::Hosts, flags),
        spec("domains", Format::Domains, flags),
        spec("adblock", Format::Adblock, flags),
        spec("rpz", Format::Rpz, flags),
    ];
    let mut profile = ProfileSpec::named("p");
    profile.sources = sources.iter().map(|s| s.name.clone()).collect();
    let policy = Policy::new(vec![profile], sources).expect("static policy is valid");
    let report = policy.reload(1, true);
    for (_, e) in &report.failed {
        let _ = e.to_string();
    }
    let p = policy.profile(0);
    let _ = (p.is_empty(), p.has_address_rules(), policy.heap_bytes(), policy.generation(0));
    for word in text.split(|c: char| c.is_whitespace() || "|^@$#!;,()\"".contains(c)).filter(|w| !w.is_empty()).take(64)
    {
        let word = word.trim_start_matches("*.");
        if let Ok(name) = Name::from_ascii(word) {
            for n in [Some(name.clone()), name.prepend(b"x").ok(), name.parent()].into_iter().flatten() {
                if let Verdict::Block(b) = p.check_name(n.as_wire()) {
                    let _ = (b.ede.code, b.ttl);
                }
            }
        }
        if let Ok(addr) = word.parse::<IpAddr>() {
            let _ = p.check_address(addr);
        }
    }
    let _ = policy.transparency(1);
});

//! The configuration file parser: `onedot::config::Config::parse(text)`
//! (serde + toml, then `validate`), and on success the derived settings
//! (`policy`, `recursor`, `service`, `local_records`, `root_hints`,
//! `limits.admission/tcp/upstream`, `telemetry.commitments`,
//! `web.address`, `server.proxy_networks`, profile specs, forward-zone
//! transports) and `toml::to_string` of the result.
//!
//! NEEDS AN EXPOSURE (feature `onedot-lib`): `onedot` is binary-only
//! (src/main.rs declares `mod config;`). Proposed: a `[lib]` target,
//! crates/onedot/src/lib.rs with `pub mod config; mod root_hints;` (config
//! uses `crate::root_hints::builtin()`), and main.rs replacing
//! `mod config; mod root_hints;` by `use onedot::config;` (the other
//! modules' `crate::config::...` paths then still resolve).
//!
//! File access: `validate` reads `resolver.root_hints_file` (and
//! `recursor()` reads `dnssec.trust_anchor_files`). A fuzzed path such as
//! `/dev/zero` or `/dev/stdin` would hang or exhaust memory in the harness,
//! not in onedot's parsing, so inputs naming such files are decoded first
//! with plain `toml::from_str::<Config>` and skipped.

#![no_main]

use libfuzzer_sys::fuzz_target;
use onedot::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Same deserialisation as Config::parse's first step, to look at the
    // file paths before anything reads them.
    match toml::from_str::<Config>(&text) {
        Ok(pre) if pre.resolver.root_hints_file.is_some() => return,
        Ok(_) => {}
        Err(_) => {
            // Config::parse fails at the same step, before any file access.
            assert!(Config::parse(&text).is_err(), "toml rejected what Config::parse accepted");
            return;
        }
    }
    let Ok(c) = Config::parse(&text) else { return };

    let _ = c.policy().map(|p| p.profile_names());
    let _ = c.local_records();
    let _ = c.root_hints();
    if c.dnssec.trust_anchor_files.is_empty() {
        let _ = c.recursor();
        let _ = c.trust_anchors();
    }
    let _ = c.service();
    let _ = c.ttl_policy();
    let _ = c.limits.admission(c.server.max_udp_payload);
    let _ = c.limits.tcp();
    let _ = c.limits.upstream();
    let _ = c.telemetry.commitments();
    let _ = c.web.address();
    let _ = c.server.proxy_networks();
    for p in &c.policy.profiles {
        let _ = p.spec();
    }
    for z in c.forward_zones.iter().chain(&c.stub_zones) {
        let _ = z.encrypted();
    }
    // Serialising never panics. (No round-trip assertion: `web.listen = ""`
    // deserialises to None, which serialises as an absent key, which
    // deserialises to the default listener.)
    let _ = toml::to_string(&c);
});

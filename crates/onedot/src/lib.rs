//! The part of the `onedot` binary that other targets of the repository
//! use: the configuration file (`config`, parsed and checked as `serve`
//! loads it) and the IANA root hints it falls back on. It exists so that
//! the config parser can be fuzzed (`fuzz/fuzz_targets/config.rs`); it is
//! the binary's, not a library for others, and keeps the binary's
//! `anyhow` errors.

pub mod config;
pub mod root_hints;

//! End-to-end tests of the `onedot` binary.

mod cli;
mod demo;
mod peers;
mod tidy;

use std::path::{Path, PathBuf};

/// The built binary.
pub fn onedot() -> &'static str {
    env!("CARGO_BIN_EXE_onedot")
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

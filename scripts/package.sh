#!/usr/bin/env bash
# Builds onedot's Debian package with cargo-deb:
#
#   scripts/package.sh [PROFILE]      (release by default; the test uses dev)
#
# The binary is built with PROFILE, its man pages and shell completions are
# written by `onedot docs target/dist` (clap_mangen, clap_complete; the
# pages gzipped), and `cargo deb` packs them with the hardened systemd
# units of dist/systemd/ and the config of dist/debian/ (see
# [package.metadata.deb] in crates/onedot/Cargo.toml). Prints the .deb's
# path last. Installs cargo-deb when it is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${1:-release}"
case "$PROFILE" in
    dev) DIR=debug ;;
    *) DIR="$PROFILE" ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb" >&2
    cargo install cargo-deb --version 3.8.0 --locked >&2
fi
cargo build -p onedot --profile "$PROFILE" --locked >&2
rm -rf target/dist
"target/$DIR/onedot" docs target/dist
gzip -9n target/dist/man/*.1
cargo deb -p onedot --no-build --profile "$PROFILE" --locked >&2
ls -t target/debian/onedot_*.deb | head -n 1

#!/usr/bin/env bash
# The project's test command: `scripts/test.sh` (CI runs it through .ci/run).
#
# On a fresh Debian 12 machine with the Rust toolchain, python3 and pip it
# installs what the tests need (only what is missing), then runs, in order and
# stopping at the first failure: rustfmt, clippy, nextest, doctests, rustdoc,
# a short run of every fuzz target (scripts/fuzz.sh installs cargo-fuzz), and
# the Debian package's test (scripts/package-test.sh installs cargo-deb).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEB_PACKAGES=(unbound nsd iproute2 dnsutils knot-dnsutils dnsperf ldnsutils curl openssl chromium clickhouse-server prometheus man-db systemd fstrm-bin dnstap-ldns)

banner() {
    printf '\n==================== %s ====================\n' "$*"
}

die() {
    printf 'scripts/test.sh: error: %s\n' "$*" >&2
    exit 1
}

if [[ "${CI:-}" == "true" ]]; then
    export CARGO_INCREMENTAL=0
    export CARGO_TERM_COLOR=never
fi

source "$ROOT/scripts/packages.sh"
trap policy_restore EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

banner "Checking system packages"
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    if ! deb_installed "$pkg"; then
        missing+=("$pkg")
    fi
done
if ! python3 -m pip --version >/dev/null 2>&1; then
    missing+=(python3-pip)
fi
if [[ "${#missing[@]}" -gt 0 ]]; then
    echo "installing: ${missing[*]}"
    apt_install "${missing[@]}"
else
    echo "all present: ${DEB_PACKAGES[*]}"
fi

# ---------------------------------------------------------------- python
banner "Checking dnspython (>= 2.6, with its DoH and DoQ clients)"
ensure_dnspython

# ---------------------------------------------------------------- web assets
banner "Checking the dashboard's chart library (uPlot, from the npm registry)"
bash "$ROOT/scripts/assets.sh"

# ---------------------------------------------------------------- cargo tools
banner "Checking cargo-nextest"
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi
cargo nextest --version
for component in rustfmt clippy; do
    sub="${component/rustfmt/fmt}"
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            rustup component add "$component" ||
                die "cargo $sub is missing and 'rustup component add $component' failed"
        else
            die "cargo $sub is missing (rustup component '$component')"
        fi
    fi
done

banner "Tool versions"
rustc --version
cargo --version
unbound -V 2>/dev/null | head -n 1 || true
nsd -v 2>&1 | head -n 1 || true
python3 --version

# ---------------------------------------------------------------- checks
banner "1/7 cargo fmt --all -- --check"
cargo fmt --all -- --check

banner "2/7 cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

banner "3/7 cargo nextest run --workspace --locked --no-fail-fast"
cargo nextest run --workspace --locked --no-fail-fast

banner "4/7 cargo test --workspace --doc --locked"
# `cargo test --doc` is an error when no package has a library target.
metadata="$(cargo metadata --no-deps --format-version 1 --locked)"
if python3 -c 'import json, sys; m = json.load(sys.stdin); sys.exit(0 if any(k in ("lib", "rlib", "dylib", "proc-macro") for p in m["packages"] for t in p["targets"] for k in t["kind"]) else 1)' <<<"$metadata"; then
    cargo test --workspace --doc --locked
else
    echo "skipped: the workspace has no library target, so there are no doctests"
fi

banner "5/7 RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --locked"
RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --locked

banner "6/7 fuzz smoke: scripts/fuzz.sh 20 (every cargo-fuzz target 20 s on its corpus)"
# A crash, hang or out-of-memory input in any target fails the run; the
# input is left in fuzz/artifacts/<target>/.
FUZZ_TIMEOUT=10 bash scripts/fuzz.sh 20

banner "7/7 package: scripts/package-test.sh (cargo deb, dpkg -i, systemd-analyze verify, man onedot)"
bash scripts/package-test.sh

banner "All checks passed"

#!/usr/bin/env bash
# The project's test command: `scripts/test.sh` (CI runs it through .ci/run).
#
# On a fresh Debian 12 machine with the Rust toolchain, python3 and pip it
# installs what the tests need (only what is missing), then runs, in order and
# stopping at the first failure: rustfmt, clippy, nextest, doctests, rustdoc.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DEB_PACKAGES=(unbound nsd dnsutils knot-dnsutils dnsperf ldnsutils curl)
POLICY_RC_D=/usr/sbin/policy-rc.d

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

# ---------------------------------------------------------------- privileges
# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        if [[ -t 0 ]]; then
            sudo "$@"
        else
            # No terminal to type a password into: fail instead of hanging.
            sudo -n "$@"
        fi
    else
        die "installing system packages needs root, and this user ($(id -un)) is not root and sudo is not installed; install them by hand: ${DEB_PACKAGES[*]}"
    fi
}

# ---------------------------------------------------------------- policy-rc.d
# While apt installs daemons (unbound, nsd) none of them may be started: a
# policy-rc.d that exits 101 forbids it. Whatever was there before is put back.
POLICY_STATE=untouched # untouched | created | replaced
POLICY_BACKUP=""

policy_install() {
    if [[ -e "$POLICY_RC_D" ]]; then
        local rc=0
        "$POLICY_RC_D" >/dev/null 2>&1 || rc=$?
        if [[ "$rc" -eq 101 ]]; then
            return 0
        fi
        POLICY_BACKUP="$(as_root mktemp)"
        as_root cp -p "$POLICY_RC_D" "$POLICY_BACKUP"
        POLICY_STATE=replaced
    else
        POLICY_STATE=created
    fi
    printf '#!/bin/sh\n# Written by onedot scripts/test.sh while installing packages.\nexit 101\n' |
        as_root tee "$POLICY_RC_D" >/dev/null
    as_root chmod 0755 "$POLICY_RC_D"
}

policy_restore() {
    case "$POLICY_STATE" in
        created)
            as_root rm -f "$POLICY_RC_D" || true
            ;;
        replaced)
            as_root mv -f "$POLICY_BACKUP" "$POLICY_RC_D" || true
            ;;
    esac
    POLICY_STATE=untouched
}

trap policy_restore EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- apt
deb_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

APT_UPDATED=0
apt_install() {
    policy_install
    if [[ "$APT_UPDATED" -eq 0 ]]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "$@"
    policy_restore
}

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
have_dnspython() {
    python3 - <<'EOF' >/dev/null 2>&1
import sys
import dns.version
import aioquic, h2  # DoQ, and DoH over HTTP/2
try:
    import httpx
except ImportError:
    import httpx2
sys.exit(0 if (dns.version.MAJOR, dns.version.MINOR) >= (2, 6) else 1)
EOF
}
if have_dnspython; then
    python3 -c 'import dns.version; print("dnspython", dns.version.version)'
else
    pip_log="$(mktemp)"
    if ! python3 -m pip install --quiet 'dnspython[doh,doq]>=2.6' >"$pip_log" 2>&1; then
        if grep -qi 'externally-managed' "$pip_log"; then
            echo "pip refused (externally-managed environment); retrying with --break-system-packages"
            python3 -m pip install --quiet --break-system-packages 'dnspython[doh,doq]>=2.6'
        else
            cat "$pip_log" >&2
            rm -f "$pip_log"
            die "pip could not install dnspython"
        fi
    fi
    rm -f "$pip_log"
    have_dnspython || die "dnspython >= 2.6 still not importable by python3 after pip install"
    python3 -c 'import dns.version; print("installed dnspython", dns.version.version)'
fi

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
banner "1/5 cargo fmt --all -- --check"
cargo fmt --all -- --check

banner "2/5 cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

banner "3/5 cargo nextest run --workspace --locked --no-fail-fast"
cargo nextest run --workspace --locked --no-fail-fast

banner "4/5 cargo test --workspace --doc --locked"
# `cargo test --doc` is an error when no package has a library target.
metadata="$(cargo metadata --no-deps --format-version 1 --locked)"
if python3 -c 'import json, sys; m = json.load(sys.stdin); sys.exit(0 if any(k in ("lib", "rlib", "dylib", "proc-macro") for p in m["packages"] for t in p["targets"] for k in t["kind"]) else 1)' <<<"$metadata"; then
    cargo test --workspace --doc --locked
else
    echo "skipped: the workspace has no library target, so there are no doctests"
fi

banner "5/5 RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --locked"
RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps --locked

banner "All checks passed"

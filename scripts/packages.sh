# Installing what the tests and the benchmarks need, sourced by
# scripts/test.sh and bench/lib.sh (not run): Debian packages with a
# policy-rc.d that keeps their daemons from starting (whatever was there
# before is put back), and dnspython. The caller defines `die`.

POLICY_RC_D=/usr/sbin/policy-rc.d

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
        die "installing system packages needs root, and this user ($(id -un)) is not root and sudo is not installed; run this as root or install the missing packages by hand"
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

# ---------------------------------------------------------------- python
# dnspython >= 2.6 with its DoH and DoQ clients (which bring cryptography).
have_dnspython() {
    python3 - <<'PY' >/dev/null 2>&1
import sys
import dns.version
import aioquic, h2  # DoQ, and DoH over HTTP/2
try:
    import httpx
except ImportError:
    import httpx2
sys.exit(0 if (dns.version.MAJOR, dns.version.MINOR) >= (2, 6) else 1)
PY
}

ensure_dnspython() {
    if have_dnspython; then
        python3 -c 'import dns.version; print("dnspython", dns.version.version)'
        return 0
    fi
    local pip_log
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
}

# ---------------------------------------------------------------- commands
# install_commands COMMAND:PACKAGE...: installs the packages whose command
# is missing.
install_commands() {
    local need=() c
    for c in "$@"; do command -v "${c%%:*}" >/dev/null || need+=("${c##*:}"); done
    if [[ "${#need[@]}" -gt 0 ]]; then
        echo "installing: ${need[*]}"
        apt_install "${need[@]}"
    fi
}

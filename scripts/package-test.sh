#!/usr/bin/env bash
# The package's test (scripts/test.sh runs it as its last step): builds the
# .deb (dev profile, so no release build is needed), installs it with
# `dpkg -i` under a policy-rc.d that keeps the service from starting,
# checks the units with `systemd-analyze verify`, that `man onedot` and
# `man onedot-serve` show their pages, that the packaged config loads and
# the completions are in place; then purges the package.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
die() {
    printf 'scripts/package-test.sh: error: %s\n' "$*" >&2
    exit 1
}
source "$ROOT/scripts/packages.sh"
trap 'as_root dpkg --purge onedot >/dev/null 2>&1 || true; policy_restore' EXIT

deb="$(bash scripts/package.sh dev | tail -n 1)"
[[ -f "$deb" ]] || die "no package was built"
echo "built $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | grep -E '^ (Package|Version|Architecture|Depends):'
contents="$(dpkg-deb --contents "$deb")"
for path in ./usr/bin/onedot ./etc/onedot/onedot.toml ./usr/lib/systemd/system/onedot.service \
    ./usr/lib/systemd/system/onedot.socket ./usr/share/man/man1/onedot.1.gz ./usr/share/man/man1/onedot-serve.1.gz \
    ./usr/share/bash-completion/completions/onedot; do
    grep -q " $path\$" <<<"$contents" || die "the package lacks $path"
done

policy_install
as_root dpkg -i "$deb"
dpkg -s onedot | grep -q '^Status: install ok installed' || die "dpkg did not install onedot"
[[ "$(dpkg-query -W -f='${Conffiles}' onedot)" == *"/etc/onedot/onedot.toml"* ]] || die "the config is not a conffile"
/usr/bin/onedot --version
/usr/bin/onedot config --config /etc/onedot/onedot.toml >/dev/null || die "the packaged config does not load"

echo "systemd-analyze verify:"
out="$(systemd-analyze verify /usr/lib/systemd/system/onedot.service /usr/lib/systemd/system/onedot.socket 2>&1)" ||
    die "systemd-analyze verify failed: $out"
# Warnings about units of the host (not ours) are not ours to fix.
if grep -i 'onedot' <<<"$out"; then
    die "systemd-analyze verify complained about onedot's units"
fi
echo "  accepted"

page="$(MANPAGER=cat MANWIDTH=100 man onedot 2>&1)" || die "man onedot failed: $page"
grep -q 'onedot-serve(1)' <<<"$page" || die "man onedot does not list onedot-serve(1): $page"
serve_page="$(MANPAGER=cat MANWIDTH=100 man onedot-serve 2>&1)" || die "man onedot-serve failed"
grep -q -- '--takeover' <<<"$serve_page" || die "man onedot-serve does not document --takeover"
echo "man onedot: $(grep -c . <<<"$page") lines; man onedot-serve documents --takeover"
grep -q 'onedot' /usr/share/bash-completion/completions/onedot || die "no bash completion"

as_root dpkg --purge onedot
[[ ! -e /usr/bin/onedot ]] || die "purge left /usr/bin/onedot"
echo "package test passed"

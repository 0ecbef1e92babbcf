#!/usr/bin/env bash
# Fetches the observatory dashboard's chart library from the npm registry:
# uPlot (MIT), its IIFE build and stylesheet, into DIR (default
# target/web-assets), for `observatory.assets_dir`. The dashboard never
# loads anything from a CDN; without these files its pages show tables and
# event lists only.
#
#   scripts/assets.sh [DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/target/web-assets}"
VERSION=1.6.32
if [[ -f "$DIR/uPlot.iife.min.js" && -f "$DIR/uPlot.min.css" ]]; then
    exit 0
fi
command -v npm >/dev/null || { echo "scripts/assets.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "uplot@$VERSION" --silent > /dev/null && tar xzf "uplot-$VERSION.tgz")
mkdir -p "$DIR"
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" "$DIR/"
echo "uPlot $VERSION in $DIR"

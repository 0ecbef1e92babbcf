#!/usr/bin/env bash
# The observatory's detector on the simulator, and what a node's minute
# rows cost on disk. No network at all.
#
#   bench/observatory.sh
#
# Runs `onedot observatory simulate` (release build): a 30-day month of
# synthetic minute counts for twelve countries with three networks each
# (daily and weekly cycles, hourly wobble, Poisson noise) with four
# injected events (a six-hour national shutdown, a forty-minute hijack of
# one network, a two-day censorship surge, a two-hour outage of one TLD),
# then a quiet month, each through the real aggregation, SQLite store and
# detector on a simulated clock. Prints recall, precision, each event's
# start and end errors and detection delay, the quiet month's events, and
# minute rows and bytes per node per day; writes
# bench/results/observatory.json. The micro-benchmark of the query path's
# cost is `cargo bench -p observatory`; its CPU per query against the
# observatory off is in bench/run.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release -p onedot --locked -q
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p bench/results
"$ROOT/target/release/onedot" observatory simulate --data-dir "$WORK/sim" > bench/results/observatory.json
python3 - <<'PY'
import json
d = json.load(open("bench/results/observatory.json"))
m, q = d["events_month"], d["quiet_month"]
s = m["score"]
print(f"events month: recall {s['recall']:.2f}, precision {s['precision']:.2f}, {s['reported']} reported, "
      f"simulated in {m['simulate_s']:.1f} s, judged in {m['detect_s']:.1f} s")
for e in s["per_event"]:
    print(f"  {e['event']:<28} found={e['found']} start {e['start_error_s']:+} s, end {e['end_error_s']:+} s, "
          f"delay {e['delay_s']} s" if e["found"] else f"  {e['event']:<28} MISSED")
print(f"quiet month: {len(q['events'])} events")
p = d["per_node_day"]
print(f"per node and day: {p['minute_rows']:,.0f} minute rows, {p['hour_rows']:,.0f} hour rows, "
      f"{p['sqlite_bytes'] / 1e6:.1f} MB of SQLite")
PY
echo "wrote bench/results/observatory.json"

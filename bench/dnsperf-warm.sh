#!/usr/bin/env bash
# Warm-cache load test of onedot on the lab internet, loopback only.
#
#   bench/dnsperf-warm.sh [SECONDS] [FILL_SECONDS]   (defaults 60 and 0)
#
# Starts the lab (unprivileged port 5300) and `onedot serve` (one worker,
# pinned to CPU 0, caches bounded at 32 MiB each) on 127.0.0.1:5400, warms the
# cache with every lab question once, then runs dnsperf (pinned to CPU 1)
# for SECONDS with 100 queries outstanding. Prints QPS, lost queries, server
# CPU microseconds per query (from /proc user+sys time over the run) and RSS,
# and writes bench/results/dnsperf-warm.json. Everything it starts it stops,
# by PID. With FILL_SECONDS > 0 it then asks unique names under a lab
# wildcard (every one a cache miss and a resolution) for that long, to show
# that memory stays within the cache bound while entries are evicted.
# Needs dnsperf (scripts/test.sh installs it).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_RUN="${1:-60}"
FILL_SECONDS="${2:-0}"
LAB_PORT=5300
PORT=5400
WORK="$(mktemp -d /tmp/onedot-bench-XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v dnsperf >/dev/null || { echo "dnsperf is missing: run scripts/test.sh first (it installs it)" >&2; exit 1; }
cargo build --release -p onedot --locked -q
BIN="$ROOT/target/release/onedot"

cat > "$WORK/onedot.toml" <<TOML
version = 1
[web]
listen = "127.0.0.1:0"
[server]
listen = ["127.0.0.1:$PORT"]
workers = 1
[resolver]
root_hints = ["127.53.0.1", "127.53.0.2"]
upstream_port = $LAB_PORT
do_not_query_localhost = false
answer_special_use_locally = false
[cache]
answer_max_bytes = 33554432
rrset_max_bytes = 33554432
[dnssec]
validate = true
builtin_root_anchor = false
trust_anchor_files = ["$WORK/lab-root.key"]
TOML

# The question mix: every lab question (about 5 % of them NXDOMAIN).
grep -v '^#' crates/lab/zones/questions.txt | awk 'NF==2 {print $1, $2}' > "$WORK/queries.txt"
NQ=$(wc -l < "$WORK/queries.txt")

"$BIN" lab --port "$LAB_PORT" --trust-anchor-out "$WORK/lab-root.key" > "$WORK/lab.log" 2>&1 &
for _ in $(seq 50); do [ -s "$WORK/lab-root.key" ] && break; sleep 0.1; done
PIDS+=($!)
taskset -c 0 "$BIN" serve --config "$WORK/onedot.toml" > "$WORK/onedot.log" 2>&1 &
SERVER=$!
PIDS+=($SERVER)
for _ in $(seq 50); do
    dig +tries=1 +time=1 @127.0.0.1 -p "$PORT" . NS > /dev/null 2>&1 && break
    sleep 0.2
done

# Warm: every question once (resolution through the lab).
dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > "$WORK/warm.txt" 2>&1

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
TICK=$(getconf CLK_TCK)
before=$(cpu_ticks)
taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -l "$SECONDS_RUN" -q 100 -t 2 > "$WORK/run.txt" 2>&1
after=$(cpu_ticks)
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status")

completed=$(awk '/Queries completed:/ {print $3}' "$WORK/run.txt")
lost=$(awk '/Queries lost:/ {print $3}' "$WORK/run.txt")
qps=$(awk '/Queries per second:/ {print $4}' "$WORK/run.txt")
mean_ms=$(awk '/Average Latency/ {gsub("s","",$4); print $4 * 1000}' "$WORK/run.txt")
cpu_us=$(awk -v a="$after" -v b="$before" -v t="$TICK" -v n="$completed" 'BEGIN { printf "%.2f", (a - b) / t * 1e6 / n }')
rss_mib=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')

cat "$WORK/run.txt" | sed -n '/Statistics/,$p'
echo
printf '%-10s %-6s %12s %10s %8s %14s %9s\n' resolver mode qps mean_ms lost cpu_us_per_q rss_mib
printf '%-10s %-6s %12s %10s %8s %14s %9s\n' onedot warm "$qps" "$mean_ms" "$lost" "$cpu_us" "$rss_mib"
echo "($NQ distinct questions, ${SECONDS_RUN}s, 100 outstanding, 1 worker on CPU 0, dnsperf on CPU 1; cache bound 2 x 32 MiB)"
fill_json=""
if [ "$FILL_SECONDS" -gt 0 ]; then
    seq 1 3000000 | awk '{print "u" $1 ".wild.z005.test A"}' > "$WORK/unique.txt"
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/unique.txt" -l "$FILL_SECONDS" -q 200 -t 3 > "$WORK/fill.txt" 2>&1
    fill_done=$(awk '/Queries completed:/ {print $3}' "$WORK/fill.txt")
    fill_qps=$(awk '/Queries per second:/ {print $4}' "$WORK/fill.txt")
    fill_rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status")
    echo "fill: $fill_done unique names resolved in ${FILL_SECONDS}s ($fill_qps QPS); RSS after: $fill_rss MiB (cache bound 64 MiB)"
    fill_json=", {\"resolver\": \"onedot\", \"mode\": \"fill-unique\", \"seconds\": $FILL_SECONDS, \"completed\": $fill_done, \"qps\": $fill_qps, \"rss_mib\": $fill_rss, \"cache_bound_mib\": 64}"
fi
mkdir -p bench/results
cat > bench/results/dnsperf-warm.json <<JSON
{"machine": {"cpus": $(nproc), "model": "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)", "kernel": "$(uname -r)"},
 "results": [{"resolver": "onedot", "mode": "warm", "seconds": $SECONDS_RUN, "qps": $qps, "completed": $completed, "lost": $lost, "mean_ms": $mean_ms, "cpu_us_per_query": $cpu_us, "rss_mib": $rss_mib, "cache_bound_mib": 64}$fill_json]}
JSON

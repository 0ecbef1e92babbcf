#!/usr/bin/env bash
# Where onedot spends its time on cache hits, loopback only.
#
#   bench/profile.sh [SECONDS]   (default 10)
#
# Starts the lab and `onedot serve` (one worker on CPU 0) as
# bench/dnsperf-warm.sh does, warms the cache, then samples onedot with
# `perf record -g` while dnsperf (CPU 1) sends the warm question mix for
# SECONDS, and writes the flat profile (self time per symbol) to
# bench/results/profile.txt. Installs perf (linux-perf) and dnsperf if missing.
SECONDS_RUN="${1:-10}"
PORT=5400
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_commands perf:linux-perf

warm_config "$PORT"
start_lab
start_onedot "$WORK/onedot.toml" "$PORT"
dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > /dev/null 2>&1 || true
perf record -g -o "$WORK/perf.data" -p "$SERVER" -- sleep "$SECONDS_RUN" > /dev/null 2>&1 &
REC=$!
taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -l "$SECONDS_RUN" -q 100 -t 2 > "$WORK/run.txt" 2>&1 || true
wait "$REC" || true
mkdir -p bench/results
{
    echo "# onedot on a warm cache: self time per symbol (perf record -g, ${SECONDS_RUN}s of dnsperf, 100 outstanding)"
    grep -E "Queries per second" "$WORK/run.txt" || true
    echo "# where the samples fall, by object (the onedot binary is our code and the crates it links):"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort dso 2>/dev/null | grep -E "^ +[0-9]" | sed -E "s/ +- +- *$//" | head -6
    echo "# by symbol, 1 % and above:"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort symbol --percent-limit 1 2>/dev/null | grep -E "^ +[0-9]" | sed -E "s/ +- +- *$//" | head -40
} > bench/results/profile.txt
cat bench/results/profile.txt

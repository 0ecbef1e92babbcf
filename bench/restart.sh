#!/usr/bin/env bash
# A restart under load: how many queries a takeover loses and how warm the
# new process's cache is in its first second. Loopback only.
#
#   bench/restart.sh [RATE] [SECONDS] [RESTARTS]   (defaults 20000, 20, 3)
#
# Starts the lab and `onedot serve` (release build, validating, Do53 on
# 127.0.0.1:5420, control socket and cache snapshot in a temporary
# directory), warms the cache with every lab question, then runs dnsperf
# at RATE queries a second (at most 200 outstanding) for SECONDS while
# RESTARTS new processes take over from the running one with `serve
# --takeover`, spaced evenly. For each takeover it reads the cache hit rate
# (onedot_cache_hits_total over onedot_queries_total) in the second before
# and in the first second after, from `onedot ctl stats`; at the end,
# dnsperf's sent and lost counts. Writes bench/results/restart.json. Every
# process it starts it stops, by PID; the run stops by itself.
RATE="${1:-20000}"
SECONDS_RUN="${2:-20}"
RESTARTS="${3:-3}"
PORT=5420
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cat > "$WORK/onedot.toml" <<TOML
version = 1
[server]
listen = ["127.0.0.1:$PORT"]
workers = 1
[web]
listen = ""
[control]
socket = "$WORK/ctl.sock"
$(lab_config | sed "s|^\[cache\]\$|[cache]\nsnapshot_file = \"$WORK/cache.snapshot\"|")
TOML

start_lab
start_onedot "$WORK/onedot.toml" "$PORT"
dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > "$WORK/warm.txt" 2>&1

counters() {
    "$BIN" ctl --json --socket "$WORK/ctl.sock" stats | python3 -c '
import json, sys
s = json.load(sys.stdin)
hits = sum(v for k, v in s.items() if k.startswith("onedot_cache_hits_total{"))
queries = sum(v for k, v in s.items() if k.startswith("onedot_queries_total{"))
print(int(hits), int(queries))'
}
ratio() { awk -v h0="$1" -v q0="$2" -v h1="$3" -v q1="$4" 'BEGIN { printf "%.4f", (q1 > q0) ? (h1 - h0) / (q1 - q0) : 0 }'; }

taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/queries.txt" -l "$SECONDS_RUN" -Q "$RATE" -q 200 -t 5 \
    > "$WORK/run.txt" 2>&1 &
LOAD=$!
PIDS+=($LOAD)
gap=$(awk -v s="$SECONDS_RUN" -v n="$RESTARTS" 'BEGIN { printf "%.1f", s / (n + 1) }')
rows=""
for i in $(seq "$RESTARTS"); do
    sleep "$(awk -v g="$gap" 'BEGIN { print g - 1 }')"
    read -r h0 q0 < <(counters)
    sleep 1
    read -r h1 q1 < <(counters)
    old=$SERVER
    started=$(date +%s.%N)
    taskset -c 0 "$BIN" serve --config "$WORK/onedot.toml" --takeover > "$WORK/onedot-$i.log" 2>&1 &
    SERVER=$!
    PIDS+=($SERVER)
    for _ in $(seq 200); do
        grep -q "serving; the old process" "$WORK/onedot-$i.log" && break
        sleep 0.02
    done
    ready=$(date +%s.%N)
    read -r h2 q2 < <(counters)
    sleep 1
    read -r h3 q3 < <(counters)
    wait "$old"
    exit_code=$?
    before=$(ratio "$h0" "$q0" "$h1" "$q1")
    after=$(ratio "$h2" "$q2" "$h3" "$q3")
    takeover_ms=$(awk -v a="$started" -v b="$ready" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
    echo "takeover $i: ready in ${takeover_ms} ms, old exited $exit_code; hit rate $before before, $after in the first second after"
    rows="$rows${rows:+, }{\"takeover\": $i, \"ready_ms\": $takeover_ms, \"old_exit\": $exit_code, \"hit_rate_before\": $before, \"hit_rate_first_second_after\": $after}"
done
wait "$LOAD"
sent=$(awk '/Queries sent:/ {print $3}' "$WORK/run.txt")
lost=$(awk '/Queries lost:/ {print $3}' "$WORK/run.txt")
qps=$(awk '/Queries per second:/ {print $4}' "$WORK/run.txt")
echo "dnsperf: $sent sent at $RATE/s for ${SECONDS_RUN}s through $RESTARTS takeovers: $lost lost ($qps answered per second)"
mkdir -p bench/results
cat > bench/results/restart.json <<JSON
{"machine": $(machine_json),
 "rate": $RATE, "seconds": $SECONDS_RUN, "sent": $sent, "lost": $lost, "qps": $qps,
 "takeovers": [$rows]}
JSON

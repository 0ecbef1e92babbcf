#!/usr/bin/env bash
# Side by side: onedot, Unbound, Knot Resolver and PowerDNS Recursor on the
# same lab hierarchy, loopback only, one worker thread each.
#
#   bench/run.sh [SECONDS]   (default 20; the whole run takes about 6.5
#                             minutes at 20 and stays under 15 minutes up to 40)
#
# The lab (onedot's built-in authoritative servers, signed, on port 53:
# Unbound, Knot Resolver and PowerDNS Recursor cannot reach authorities on
# another port) serves the hierarchy; every resolver validates from the
# lab's root key. Each resolver in turn, started fresh, pinned to CPU 0,
# with dnsperf (or h2load) pinned to CPU 1:
#   cold  time to resolve every lab question once on a fresh start (20 outstanding)
#   warm  dnsperf over the question mix (about 5 % NXDOMAIN) for SECONDS, 100 outstanding
#   p99   the same mix at a fixed 20,000 QPS: mean and 99th percentile latency, median of five 5 s runs
#   tcp   dnsperf -m tcp, 4 connections, 100 outstanding, SECONDS
# then DoT (dnsperf -m dot) and DoH (h2load; dnsperf 2.10's DoH mode loses
# queries, DNS-OARC/dnsperf 240 and 272) for onedot and for dnsdist in front
# of Unbound, and the machine's ceiling: `limit`, a canned UDP responder with
# onedot's socket strategy (crates/doors/examples/limit_responder.rs).
# Server CPU per query is the servers' own user+sys time from /proc over the
# run; RSS is read after it. Prints one table and writes
# bench/results/latest.json. Installs what is missing (dnsperf,
# dnsutils, unbound, knot-resolver, pdns-recursor, dnsdist, nghttp2-client)
# with daemons kept from starting, and dnspython. Needs root (port 53).
# `python3 bench/readme.py` then writes the README's tables from the JSON.
# Then onedot alone, warm, with the observatory off and on, alternated
# three times, written to bench/results/observatory-ab.json as well;
# ONLY_OBSERVATORY=1 runs just that part (and leaves latest.json alone).
# Last, bench/xdp.sh (AF_XDP on a veth pair, bench/results/xdp.json, about
# 5 minutes) and bench/cold.sh (cold resolution over realistic round trips,
# bench/results/cold.json, about 10 minutes) run; SKIP_XDP=1 or SKIP_COLD=1
# leaves either out.
SECONDS_RUN="${1:-20}"
LAB_PORT=53
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_commands unbound:unbound kresd:knot-resolver pdns_recursor:pdns-recursor dnsdist:dnsdist h2load:nghttp2-client
cargo build --release -p doors --example limit_responder --locked -q
LIMIT="$ROOT/target/release/examples/limit_responder"

start_lab
peer_files
peer_configs

TICK=$(getconf CLK_TCK)
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
rss_of() { local t=0; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; awk -v k="$t" 'BEGIN { printf "%.1f", k / 1024 }'; }
cpu_per() { awk -v a="$2" -v b="$1" -v t="$TICK" -v n="$3" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / t * 1e6 / n; else print "null" }'; }
field() { awk -v k="$2" 'index($0, k) { s = substr($0, index($0, k) + length(k)); gsub(/^[ \t]+/, "", s); split(s, a, /[ (]/); print a[1]; exit }' "$1"; }

rows=()
row() { # resolver mode qps cpu mean p99 lost rss [seconds]
    printf '%-16s %-5s %12s %8s %9s %9s %8s %8s %s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "${9:-}"
    local extra=""
    [ -n "${9:-}" ] && extra=", \"seconds\": $9"
    rows+=("{\"resolver\": \"$1\", \"mode\": \"$2\", \"qps\": ${3:-null}, \"cpu_us_per_query\": ${4:-null}, \"mean_ms\": ${5:-null}, \"p99_ms\": ${6:-null}, \"lost\": ${7:-null}, \"rss_mib\": ${8:-null}$extra}")
}

# dnsperf_run FILE MODE PORT SECONDS OUTSTANDING [extra...]
dnsperf_run() {
    local f=$1 mode=$2 port=$3 secs=$4 q=$5; shift 5
    local conns=()
    [ "$mode" != udp ] && conns=(-c 4)
    taskset -c 1 dnsperf -m "$mode" "${conns[@]}" -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -l "$secs" -q "$q" -t 3 "$@" > "$f" 2>&1 || true
}

measure() { # NAME: cold, warm, p99, tcp for a freshly started resolver
    local name=$1 f before after done
    start "$name" || { row "$name" cold null null null null null null; return; }
    f="$WORK/$name-cold.txt"
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT_NOW" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > "$f" 2>&1 || true
    row "$name" cold null null "$(field "$f" 'Average Latency (s):' | awk '{print $1 * 1000}')" null "$(field "$f" 'Queries lost:')" "$(rss_of "${PIDS_NOW[@]}")" "$(field "$f" 'Run time (s):')"
    for mode in warm tcp; do
        f="$WORK/$name-$mode.txt"
        before=$(ticks "${PIDS_NOW[@]}")
        dnsperf_run "$f" "$([ $mode = warm ] && echo udp || echo tcp)" "$PORT_NOW" "$SECONDS_RUN" 100
        after=$(ticks "${PIDS_NOW[@]}")
        done=$(field "$f" 'Queries completed:')
        row "$name" "$mode" "$(field "$f" 'Queries per second:')" "$(cpu_per "$before" "$after" "${done:-0}")" \
            "$(field "$f" 'Average Latency (s):' | awk '{print $1 * 1000}')" null "$(field "$f" 'Queries lost:')" "$(rss_of "${PIDS_NOW[@]}")"
    done
    if [ "$name" = onedot ]; then
        # What the RRset cache is charged per entry after the warm run.
        curl -s http://127.0.0.1:5409/metrics > "$WORK/metrics.txt" || true
        RRSETS=$(awk -F' ' '/^onedot_cache_entries\{cache="rrset"\}/ {print $2}' "$WORK/metrics.txt")
        RRSET_BYTES=$(awk -F' ' '/^onedot_cache_bytes\{cache="rrset"\}/ {print $2}' "$WORK/metrics.txt")
        BYTES_PER_RRSET=$(awk -v b="${RRSET_BYTES:-0}" -v n="${RRSETS:-0}" 'BEGIN { if (n > 0) printf "%.0f", b / n; else print "null" }')
    fi
    # p99 at a fixed, moderate rate: the median of five 5 s runs (one run's
    # tail moves by half between identical runs on this VM).
    local p99 mean i p99s=() means=() lost=0
    for i in 1 2 3 4 5; do
        f="$WORK/$name-p99-$i.txt"
        taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT_NOW" -d "$WORK/queries.txt" -l 5 -Q 20000 -q 200 -t 3 -v > "$f" 2>&1 || true
        p99s+=("$(awk '$1 == ">" {print $NF}' "$f" | sort -g | awk '{a[NR] = $1} END { if (NR) printf "%.3f", a[int(NR * 0.99)] * 1000; else print "null" }')")
        means+=("$(awk '$1 == ">" {s += $NF; n++} END { if (n) printf "%.3f", s / n * 1000; else print "null" }' "$f")")
        lost=$((lost + $(field "$f" 'Queries lost:' | grep -E '^[0-9]+$' || echo 0)))
    done
    p99=$(printf '%s\n' "${p99s[@]}" | sort -g | sed -n 3p)
    mean=$(printf '%s\n' "${means[@]}" | sort -g | sed -n 3p)
    echo "  ($name p99 runs: ${p99s[*]} ms)"
    row "$name" p99 "$(field "$f" 'Queries per second:')" null "$mean" "$p99" "$lost" "$(rss_of "${PIDS_NOW[@]}")"
    stop
}

printf '%-16s %-5s %12s %8s %9s %9s %8s %8s %s\n' resolver mode qps cpu_us mean_ms p99_ms lost rss_mib seconds
if [ -z "${ONLY_OBSERVATORY:-}" ]; then
for r in onedot unbound kresd pdns-recursor; do
    measure "$r"
done
fi

# The observatory's cost: onedot's warm run with it off (the config above)
# and on (the lab's MaxMind database, telemetry.data_dir, nothing else
# written), alternated three times, each on a fresh start warmed by one
# pass over the questions. dnsperf asks from one address, so the lookup is
# the per-network cache's hit (the steady state of a busy node; the
# database lookup itself is crates/observatory/benches/observatory.rs).
"$BIN" observatory lab-geo "$WORK/lab-geo.mmdb" > /dev/null
sed '/^\[web\]/i [telemetry]\ndata_dir = "'"$WORK"'/obs-data"\nsample_rate = 0.0\n[observatory]\nenabled = true\ncountry_db = "'"$WORK"'/lab-geo.mmdb"\nasn_db = "'"$WORK"'/lab-geo.mmdb"\n' \
    "$WORK/onedot.toml" > "$WORK/onedot-obs.toml"
cp "$WORK/onedot.toml" "$WORK/onedot-plain.toml"
for round in 1 2 3; do
    for obs in off on; do
        if [ $obs = on ]; then cp "$WORK/onedot-obs.toml" "$WORK/onedot.toml"; else cp "$WORK/onedot-plain.toml" "$WORK/onedot.toml"; fi
        start onedot || continue
        taskset -c 1 dnsperf -s 127.0.0.1 -p 5401 -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > /dev/null 2>&1 || true
        f="$WORK/onedot-obs-$obs-$round.txt"
        before=$(ticks "${PIDS_NOW[@]}")
        dnsperf_run "$f" udp 5401 "$SECONDS_RUN" 100
        after=$(ticks "${PIDS_NOW[@]}")
        done=$(field "$f" 'Queries completed:')
        row "onedot-observatory-$obs" "warm-$round" "$(field "$f" 'Queries per second:')" "$(cpu_per "$before" "$after" "${done:-0}")" \
            "$(field "$f" 'Average Latency (s):' | awk '{print $1 * 1000}')" null "$(field "$f" 'Queries lost:')" "$(rss_of "${PIDS_NOW[@]}")"
        stop
    done
done
cp "$WORK/onedot-plain.toml" "$WORK/onedot.toml"
OBS_ROWS=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM minutes").fetchone()[0])' "$WORK/obs-data/observatory.sqlite" 2>/dev/null || echo null)
echo "observatory: $OBS_ROWS minute rows written over the three 'on' runs"
mkdir -p bench/results
{
    echo "{\"machine\": $(machine_json), \"date\": \"$(date -u +%F)\", \"seconds\": $SECONDS_RUN, \"questions\": $NQ, \"minute_rows\": $OBS_ROWS,"
    echo " \"results\": [$(IFS=,; printf '%s\n' "${rows[@]}" | grep onedot-observatory | paste -sd,)]}"
} > bench/results/observatory-ab.json
echo "wrote bench/results/observatory-ab.json"
if [ -n "${ONLY_OBSERVATORY:-}" ]; then
    exit 0
fi

# Unbound's own account of its RRset cache holding the same set: one pass
# over the questions, then its extended statistics (kept out of the timed
# runs, where they would cost it time on every query).
taskset -c 0 unbound -d -c "$WORK/unbound-stats.conf" > "$WORK/unbound-stats.log" 2>&1 &
PIDS_NOW=($!)
PIDS+=("${PIDS_NOW[@]}")
for _ in $(seq 100); do dig +tries=1 +time=1 @127.0.0.1 -p 5410 . NS > /dev/null 2>&1 && break; sleep 0.2; done
unbound-control -c "$WORK/unbound-stats.conf" stats_noreset > "$WORK/unbound-stats-empty.txt" 2>&1 || true
taskset -c 1 dnsperf -s 127.0.0.1 -p 5410 -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > /dev/null 2>&1 || true
unbound-control -c "$WORK/unbound-stats.conf" stats_noreset > "$WORK/unbound-stats.txt" 2>&1 || true
stop
U_RRSETS=$(awk -F= '$1 == "rrset.cache.count" {print $2}' "$WORK/unbound-stats.txt")
# Bytes the entries added (the empty cache's tables left out, as onedot's
# figure leaves out its empty table).
U_RRSET_BYTES=$(awk -F= '$1 == "mem.cache.rrset" {n = $2} END {print n}' "$WORK/unbound-stats.txt")
U_RRSET_EMPTY=$(awk -F= '$1 == "mem.cache.rrset" {n = $2} END {print n}' "$WORK/unbound-stats-empty.txt")
[ -n "$U_RRSET_BYTES" ] && [ -n "$U_RRSET_EMPTY" ] && U_RRSET_BYTES=$((U_RRSET_BYTES - U_RRSET_EMPTY))
U_BYTES_PER_RRSET=$(awk -v b="${U_RRSET_BYTES:-0}" -v n="${U_RRSETS:-0}" 'BEGIN { if (n > 0) printf "%.0f", b / n; else print "null" }')
echo "onedot RRset cache: ${RRSETS:-?} entries, ${RRSET_BYTES:-?} bytes charged, ${BYTES_PER_RRSET} bytes per entry"
echo "Unbound RRset cache: ${U_RRSETS:-?} entries, ${U_RRSET_BYTES:-?} bytes, ${U_BYTES_PER_RRSET} bytes per entry"

# The encrypted doors: onedot, and dnsdist in front of Unbound.
encrypted() { # NAME DOT_PORT DOH_PORT PIDS...
    local name=$1 dot=$2 doh=$3 f before after done; shift 3
    f="$WORK/$name-dot.txt"
    taskset -c 1 dnsperf -m dot -c 4 -s 127.0.0.1 -p "$dot" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > /dev/null 2>&1 || true
    before=$(ticks "$@")
    dnsperf_run "$f" dot "$dot" "$SECONDS_RUN" 100
    after=$(ticks "$@")
    done=$(field "$f" 'Queries completed:')
    row "$name" dot "$(field "$f" 'Queries per second:')" "$(cpu_per "$before" "$after" "${done:-0}")" \
        "$(field "$f" 'Average Latency (s):' | awk '{print $1 * 1000}')" null "$(field "$f" 'Queries lost:')" "$(rss_of "$@")"
    f="$WORK/$name-doh.txt"
    local h2=(-c 4 -m 25 -d "$WORK/doh-body.bin" -H "content-type: application/dns-message" "https://127.0.0.1:$doh/dns-query")
    h2load -n 2000 "${h2[@]}" > /dev/null 2>&1 || true
    before=$(ticks "$@")
    taskset -c 1 h2load -D "$SECONDS_RUN" "${h2[@]}" > "$f" 2>&1 || true
    after=$(ticks "$@")
    done=$(awk '/^requests:/ {print $8; exit}' "$f")
    row "$name" doh "$(awk '/^finished in/ {print $4; exit}' "$f")" "$(cpu_per "$before" "$after" "${done:-0}")" \
        "$(awk '/^time for request:/ {v=$6; if (v ~ /ms$/) {sub("ms","",v); print v} else if (v ~ /us$/) {sub("us","",v); print v/1000} else {sub("s","",v); print v*1000}; exit}' "$f")" \
        null "$(awk '/^requests:/ {print $10 + $12 + $14; exit}' "$f")" "$(rss_of "$@")"
}
start onedot && { encrypted onedot 5402 5403 "${PIDS_NOW[@]}"; stop; }
if start unbound; then
    UNBOUND=("${PIDS_NOW[@]}")
    taskset -c 0 dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf" > "$WORK/dnsdist.log" 2>&1 &
    DNSDIST=$!
    PIDS+=($DNSDIST)
    for _ in $(seq 50); do dig +tries=1 +time=1 @127.0.0.1 -p 5411 . NS > /dev/null 2>&1 && break; sleep 0.2; done
    encrypted dnsdist+unbound 5412 5413 "$DNSDIST" "${UNBOUND[@]}"
    kill "$DNSDIST" 2>/dev/null; wait "$DNSDIST" 2>/dev/null || true
    stop
fi

# The ceiling: a canned responder with onedot's socket strategy.
if start limit; then
    f="$WORK/limit-warm.txt"
    before=$(ticks "${PIDS_NOW[@]}")
    dnsperf_run "$f" udp 5499 "$SECONDS_RUN" 100
    after=$(ticks "${PIDS_NOW[@]}")
    done=$(field "$f" 'Queries completed:')
    row limit warm "$(field "$f" 'Queries per second:')" "$(cpu_per "$before" "$after" "${done:-0}")" \
        "$(field "$f" 'Average Latency (s):' | awk '{print $1 * 1000}')" null "$(field "$f" 'Queries lost:')" "$(rss_of "${PIDS_NOW[@]}")"
    stop
fi

V_UNBOUND="Unbound $(unbound -V 2>/dev/null | awk '/^Version/ {print $2}')"
V_KRESD="Knot Resolver $(kresd --version 2>/dev/null | head -1 | awk '{print $NF}')"
V_PDNS="PowerDNS Recursor $(pdns_recursor --version 2>&1 | awk '/PowerDNS Recursor/ {print $6; exit}')"
V_DNSDIST="dnsdist $(dnsdist --version 2>/dev/null | head -1 | awk '{print $2}')"
echo "($NQ lab questions; one worker thread per resolver on CPU 0, the load generator on CPU 1; ${SECONDS_RUN}s runs;"
echo " $V_UNBOUND, $V_KRESD, $V_PDNS, $V_DNSDIST with its packet cache)"
mkdir -p bench/results
{
    echo "{\"machine\": $(machine_json), \"date\": \"$(date -u +%F)\", \"seconds\": $SECONDS_RUN, \"questions\": $NQ, "
    echo " \"versions\": {\"unbound\": \"$V_UNBOUND\", \"kresd\": \"$V_KRESD\", \"pdns-recursor\": \"$V_PDNS\", \"dnsdist\": \"$V_DNSDIST\"}, \"onedot_rrset_cache\": {\"entries\": ${RRSETS:-null}, \"bytes\": ${RRSET_BYTES:-null}, \"bytes_per_rrset\": ${BYTES_PER_RRSET:-null}}, \"unbound_rrset_cache\": {\"entries\": ${U_RRSETS:-null}, \"bytes\": ${U_RRSET_BYTES:-null}, \"bytes_per_rrset\": ${U_BYTES_PER_RRSET:-null}},"
    echo " \"results\": [$(IFS=,; echo "${rows[*]}")]}"
} > bench/results/latest.json
echo "wrote bench/results/latest.json"

# The second speed round's benches, each a script of its own with its own
# JSON: Do53 over AF_XDP on a veth pair between two namespaces (xdp.sh) and
# cold resolution over realistic round trips (cold.sh). What this script
# started is stopped first (the lab holds port 53). SKIP_XDP=1 and
# SKIP_COLD=1 leave them out; ONLY_OBSERVATORY=1 does too.
if [ -z "${ONLY_OBSERVATORY:-}" ]; then
    for p in "${PIDS[@]}"; do kill "$p" 2> /dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2> /dev/null || true; done
    PIDS=()
    [ -n "${SKIP_XDP:-}" ] || bash "$ROOT/bench/xdp.sh" "$SECONDS_RUN"
    [ -n "${SKIP_COLD:-}" ] || bash "$ROOT/bench/cold.sh"
fi

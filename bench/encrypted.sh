#!/usr/bin/env bash
# DoT and DoH load, onedot against dnsdist in front of Unbound, loopback only.
#
#   bench/encrypted.sh [SECONDS]   (default 20)
#
# Starts the lab on port 53 (Unbound cannot reach authorities elsewhere),
# onedot (one worker, DoT 5402, DoH 5403) and Unbound (one thread, 5410)
# behind dnsdist (DoT 5412, DoH 5413, packet cache on), all pinned to CPU 0,
# with one self-signed certificate; warms each with every lab question,
# then, pinned to CPU 1, for SECONDS each: DoT with dnsperf -m dot (the lab
# question mix, 4 connections, 100 queries outstanding), and DoH with
# h2load (HTTP/2 POSTs of one cached question, 4 connections x 25 streams)
# — dnsperf 2.10's DoH mode loses queries against every server tried here
# (DNS-OARC/dnsperf issues 240 and 272), so it is not used. Server CPU per
# query is the user+sys time of the server processes (onedot; dnsdist plus
# Unbound) over the run. Writes bench/results/encrypted.json. Installs
# what is missing of dnsperf, unbound, dnsdist and h2load (nghttp2-client)
# with daemons kept from starting, and dnspython; root for port 53.
SECONDS_RUN="${1:-20}"
LAB_PORT=53
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

install_commands unbound:unbound dnsdist:dnsdist h2load:nghttp2-client

peer_files



start_lab
start_onedot "$WORK/onedot.toml" 5401
ONEDOT=$SERVER
taskset -c 0 unbound -d -c "$WORK/unbound.conf" > "$WORK/unbound.log" 2>&1 &
UNBOUND=$!
PIDS+=($UNBOUND)
taskset -c 0 dnsdist --supervised --disable-syslog -C "$WORK/dnsdist.conf" > "$WORK/dnsdist.log" 2>&1 &
DNSDIST=$!
PIDS+=($DNSDIST)
for _ in $(seq 100); do
    dig +tries=1 +time=1 @127.0.0.1 -p 5411 . NS > /dev/null 2>&1 && break
    sleep 0.2
done

ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
TICK=$(getconf CLK_TCK)

# run NAME MODE PORT PIDS...: warm, then the timed run; prints a row.
rows=()
run() {
    local name=$1 mode=$2 port=$3; shift 3
    local f="$WORK/run-$name-$mode.txt" before after completed lost qps mean
    if [ "$mode" = dot ]; then
        local opts=(-m dot -s 127.0.0.1 -p "$port" -c 4)
        dnsperf "${opts[@]}" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > "$WORK/warm-$name.txt" 2>&1 || true
        before=$(ticks "$@")
        taskset -c 1 dnsperf "${opts[@]}" -d "$WORK/queries.txt" -l "$SECONDS_RUN" -q 100 -t 3 > "$f" 2>&1 || true
        after=$(ticks "$@")
        completed=$(awk '/Queries completed:/ {print $3; exit}' "$f")
        lost=$(awk '/Queries lost:/ {print $3; exit}' "$f")
        qps=$(awk '/Queries per second:/ {print $4; exit}' "$f")
        mean=$(awk '/Average Latency/ {gsub("s","",$4); print $4 * 1000; exit}' "$f")
    else
        local h2=(-c 4 -m 25 -d "$WORK/doh-body.bin" -H "content-type: application/dns-message" "https://127.0.0.1:$port/dns-query")
        h2load -n 2000 "${h2[@]}" > "$WORK/warm-$name-doh.txt" 2>&1 || true
        before=$(ticks "$@")
        taskset -c 1 h2load -D "$SECONDS_RUN" "${h2[@]}" > "$f" 2>&1 || true
        after=$(ticks "$@")
        completed=$(awk '/^requests:/ {print $8; exit}' "$f")
        lost=$(awk '/^requests:/ {print $10 + $12 + $14; exit}' "$f")
        qps=$(awk '/^finished in/ {print $4; exit}' "$f")
        mean=$(awk '/^time for request:/ {v=$6; if (v ~ /ms$/) {sub("ms","",v); print v} else if (v ~ /us$/) {sub("us","",v); print v/1000} else {sub("s","",v); print v*1000}; exit}' "$f")
    fi
    local cpu
    cpu=$(awk -v a="$after" -v b="$before" -v t="$TICK" -v n="${completed:-0}" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / t * 1e6 / n; else print "null" }')
    printf '%-24s %-4s %12s %10s %8s %14s\n' "$name" "$mode" "${qps:-0}" "${mean:-0}" "${lost:-0}" "$cpu"
    rows+=("{\"resolver\": \"$name\", \"mode\": \"$mode\", \"seconds\": $SECONDS_RUN, \"qps\": ${qps:-0}, \"lost\": ${lost:-0}, \"mean_ms\": ${mean:-0}, \"cpu_us_per_query\": $cpu}")
}

printf '%-24s %-4s %12s %10s %8s %14s\n' resolver mode qps mean_ms lost cpu_us_per_q
run onedot dot 5402 "$ONEDOT"
run onedot doh 5403 "$ONEDOT"
run dnsdist+unbound dot 5412 "$DNSDIST" "$UNBOUND"
run dnsdist+unbound doh 5413 "$DNSDIST" "$UNBOUND"
echo "(DoT: dnsperf, $NQ distinct questions, 4 connections, 100 outstanding; DoH: h2load, one cached question, 4 connections x 25 streams; ${SECONDS_RUN}s each; servers on CPU 0, load on CPU 1; dnsdist $(dnsdist --version 2>/dev/null | head -1 | awk '{print $2}') with its packet cache, Unbound $(unbound -V 2>/dev/null | awk '/Version/ {print $2}'))"
mkdir -p bench/results
{
    echo "{\"machine\": $(machine_json),"
    echo " \"results\": [$(IFS=,; echo "${rows[*]}")]}"
} > bench/results/encrypted.json

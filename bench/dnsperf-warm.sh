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
# wildcard (every one a cache miss, answered from the validated wildcard once
# it is known: RFC 8198 §5.3) for that long, to show that memory stays within
# the cache bound while entries are evicted, and how many a second are
# answered (NOERROR; the rest are SERVFAILs).
# Installs dnsperf if it is missing.
SECONDS_RUN="${1:-60}"
FILL_SECONDS="${2:-0}"
# FILL_ZONE: the wildcard the unique names are under: z005.test's is signed
# with NSEC (answered from the validated wildcard, no query), nsec3.test's
# with NSEC3 (each name asked upstream; its signatures are checked once and
# remembered). With UPSTREAM=unlimited the upstream limits are lifted.
FILL_ZONE="${FILL_ZONE:-wild.z005.test}"
PORT=5400
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

warm_config "$PORT"

start_lab
start_onedot "$WORK/onedot.toml" "$PORT"
measure 127.0.0.1 "$PORT" "$SECONDS_RUN"
cat "$WORK/run.txt" | sed -n '/Statistics/,$p'
echo
printf '%-10s %-6s %12s %10s %8s %14s %9s\n' resolver mode qps mean_ms lost cpu_us_per_q rss_mib
printf '%-10s %-6s %12s %10s %8s %14s %9s\n' onedot warm "$qps" "$mean_ms" "$lost" "$cpu_us" "$rss_mib"
echo "($NQ distinct questions, ${SECONDS_RUN}s, 100 outstanding, 1 worker on CPU 0, dnsperf on CPU 1; cache bound 2 x 32 MiB)"
fill_json=""
if [ "$FILL_SECONDS" -gt 0 ]; then
    seq 1 3000000 | awk -v z="$FILL_ZONE" '{print "u" $1 "." z " A"}' > "$WORK/unique.txt"
    fill_before=$(cpu_ticks)
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$PORT" -d "$WORK/unique.txt" -l "$FILL_SECONDS" -q 200 -t 3 > "$WORK/fill.txt" 2>&1
    fill_after=$(cpu_ticks)
    fill_done=$(awk '/Queries completed:/ {print $3}' "$WORK/fill.txt")
    fill_qps=$(awk '/Queries per second:/ {print $4}' "$WORK/fill.txt")
    fill_rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status")
    # Only answers count: a SERVFAIL (the upstream limit refusing to flood
    # the zone's servers) is not a name resolved.
    fill_noerror=$(awk '/Response codes:/ { for (i = 1; i < NF; i++) if ($i == "NOERROR") { print $(i + 1); exit } } END { }' "$WORK/fill.txt")
    fill_noerror=${fill_noerror:-0}
    fill_answered_qps=$(awk -v n="$fill_noerror" -v s="$FILL_SECONDS" 'BEGIN { printf "%.0f", n / s }')
    # Server CPU per name answered (resolution, validation, caching).
    fill_cpu=$(awk -v a="$fill_after" -v b="$fill_before" -v t="$(getconf CLK_TCK)" -v n="$fill_noerror" 'BEGIN { if (n > 0) printf "%.1f", (a - b) / t * 1e6 / n; else print "null" }')
    grep 'Response codes:' "$WORK/fill.txt" || true
    echo "fill: $fill_done unique names asked in ${FILL_SECONDS}s ($fill_qps QPS), $fill_noerror answered NOERROR ($fill_answered_qps a second, $fill_cpu µs of server CPU each); RSS after: $fill_rss MiB (cache bound 64 MiB)"
    fill_json=", {\"resolver\": \"onedot\", \"mode\": \"fill-unique\", \"zone\": \"$FILL_ZONE\", \"cpu_us_per_answer\": $fill_cpu, \"seconds\": $FILL_SECONDS, \"completed\": $fill_done, \"qps\": $fill_qps, \"noerror\": $fill_noerror, \"answered_per_second\": $fill_answered_qps, \"rss_mib\": $fill_rss, \"cache_bound_mib\": 64}"
fi
mkdir -p bench/results
cat > bench/results/dnsperf-warm.json <<JSON
{"machine": $(machine_json),
 "results": [{"resolver": "onedot", "mode": "warm", "seconds": $SECONDS_RUN, "qps": $qps, "completed": $completed, "lost": $lost, "mean_ms": $mean_ms, "cpu_us_per_query": $cpu_us, "rss_mib": $rss_mib, "cache_bound_mib": 64}$fill_json]}
JSON

#!/usr/bin/env bash
# Filtering at scale, loopback only.
#
#   bench/policy-scale.sh [SECONDS] [NAMES]   (defaults 30 and 2000000)
#
# Writes a domain list of NAMES distinct names, then measures:
#   1. `onedot lists`: load time, table bytes and RSS growth for the list;
#   2. `onedot serve` (one worker on CPU 0) with two doors on the lab
#      internet: 127.0.0.1:5410 unfiltered and 127.0.0.1:5411 with a
#      `family` profile holding the list; warm-cache dnsperf (CPU 1, 100
#      outstanding, SECONDS each) against each door in turn: QPS and server
#      CPU microseconds per query;
#   3. the policy lookup micro-benchmark (criterion, 2,000,000 names).
# Prints a table and writes bench/results/policy-scale.json.
SECONDS_RUN="${1:-30}"
NAMES="${2:-2000000}"
PLAIN_PORT=5410
FAMILY_PORT=5411
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Names shaped like real block-list entries: 2-4 labels, 15-35 octets.
awk -v n="$NAMES" 'BEGIN {
    split("ads track metrics cdn-x pixel login-secure update", w, " ");
    split("example com-example example-net", t, " ");
    for (i = 1; i <= n; i++) {
        if (i % 3 == 0) printf "%s%d.%s%d.%s\n", w[i % 7 + 1], i, w[(i / 7) % 7 + 1], i % 9973, t[i % 3 + 1];
        else printf "%s-%d.%s\n", w[i % 7 + 1], i, t[i % 3 + 1];
    }
}' > "$WORK/big.txt"
echo "list: $(wc -l < "$WORK/big.txt") names, $(du -m "$WORK/big.txt" | cut -f1) MiB"

cat > "$WORK/onedot.toml" <<TOML
version = 1
[web]
listen = "127.0.0.1:0"
[server]
listen = ["127.0.0.1:$PLAIN_PORT"]
workers = 1
$(lab_config)
[[policy.source]]
name = "big"
path = "$WORK/big.txt"
format = "domains"
category = "benchmark"
[[policy.profile]]
name = "family"
sources = ["big"]
listen = ["127.0.0.1:$FAMILY_PORT"]
TOML

lists=$("$BIN" lists --config "$WORK/onedot.toml")
echo "$lists"
load_ms=$(echo "$lists" | sed -n 's/.*loaded in \([0-9]*\) ms.*/\1/p')
table_mib=$(echo "$lists" | sed -n 's/.*tables \([0-9.]*\) MiB.*/\1/p')
rss_growth_mib=$(echo "$lists" | sed -n 's/.*RSS +\([0-9.]*\) MiB.*/\1/p')
bytes_per_name=$(awk -v m="$table_mib" -v n="$NAMES" 'BEGIN { printf "%.1f", m * 1048576 / n }')

start_lab
start_onedot "$WORK/onedot.toml" "$PLAIN_PORT"
measure 127.0.0.1 "$PLAIN_PORT" "$SECONDS_RUN"
plain=("$qps" "$cpu_us" "$lost" "$mean_ms")
measure 127.0.0.1 "$FAMILY_PORT" "$SECONDS_RUN"
family=("$qps" "$cpu_us" "$lost" "$mean_ms")
serve_rss="$rss_mib"

# The lookup itself (criterion; medians in ns).
cargo bench -p policy --bench lookup -q -- --warm-up-time 1 --measurement-time 3 > "$WORK/criterion.txt" 2>&1
ns() { awk -v id="$1" '$1 == id && $2 == "time:" {print $5 " " $6}' "$WORK/criterion.txt"; }
miss=$(ns policy_check_miss)
hit=$(ns policy_check_hit)

echo
printf '%-34s %s\n' "names" "$NAMES"
printf '%-34s %s ms\n' "load (onedot lists)" "$load_ms"
printf '%-34s %s MiB (%s bytes/name); RSS +%s MiB\n' "tables" "$table_mib" "$bytes_per_name" "$rss_growth_mib"
printf '%-34s %s\n' "lookup, name not listed" "$miss"
printf '%-34s %s\n' "lookup, subdomain of a listed name" "$hit"
printf '%-34s %s QPS, %s us CPU/query, lost %s\n' "warm cache, unfiltered door" "${plain[0]}" "${plain[1]}" "${plain[2]}"
printf '%-34s %s QPS, %s us CPU/query, lost %s\n' "warm cache, family door (list)" "${family[0]}" "${family[1]}" "${family[2]}"
printf '%-34s %s MiB\n' "serve RSS after both runs" "$serve_rss"
echo "($NQ distinct questions, ${SECONDS_RUN}s per door, 100 outstanding, 1 worker on CPU 0, dnsperf on CPU 1)"
mkdir -p bench/results
cat > bench/results/policy-scale.json <<JSON
{"machine": $(machine_json),
 "names": $NAMES, "load_ms": $load_ms, "table_mib": $table_mib, "bytes_per_name": $bytes_per_name, "rss_growth_mib": $rss_growth_mib,
 "lookup_miss": "$miss", "lookup_hit": "$hit", "serve_rss_mib": $serve_rss,
 "results": [{"resolver": "onedot", "mode": "warm", "profile": "unfiltered", "seconds": $SECONDS_RUN, "qps": ${plain[0]}, "cpu_us_per_query": ${plain[1]}, "lost": ${plain[2]}, "mean_ms": ${plain[3]}},
             {"resolver": "onedot", "mode": "warm", "profile": "family", "seconds": $SECONDS_RUN, "qps": ${family[0]}, "cpu_us_per_query": ${family[1]}, "lost": ${family[2]}, "mean_ms": ${family[3]}}]}
JSON

#!/usr/bin/env bash
# Cold resolution over realistic round trips: onedot, Unbound, Knot Resolver
# and PowerDNS Recursor on the same lab hierarchy, loopback only.
#
#   bench/cold.sh [CONCURRENCY]   (default 10; about 10 minutes; RESOLVERS="onedot
#                                  kresd" measures only those)
#
# The lab runs with `--internet-delays`: the roots answer after 20 ms, TLD
# servers after 10-60 ms, other servers after 5-150 ms (fixed per address),
# and in about one zone in three of those with several servers, one is dead
# for it or answers after 800 ms (57 and 52 of 302); the same internet every
# run. Each resolver in turn,
# started fresh (empty caches), pinned to CPU 0, validating from the lab's
# root key, is asked (bench/cold.py, CONCURRENCY at a time, each timed from
# send to answer, 10 s deadline, no retry):
#   cold        half of a mix of names from the 362 zones the lab's question
#               list uses (every owner name and type in their zone files,
#               CNAMEs, names under wildcards, names that do not exist)
#   infra-warm  the other half, different names in the same zones, right
#               after: the delegations and server addresses are cached, the
#               answers are not
# and reports median and 95th percentile time per name, SERVFAILs and
# timeouts, and the queries the lab counted per name; and the floor of the
# infra-warm pass (one round trip to each name's fastest live server). Writes
# bench/results/cold.json. Needs root (the lab on port 53, as bench/run.sh);
# installs what is missing.
CONCURRENCY="${1:-10}"
LAB_PORT=53
LAB_INTERNET=1
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_commands unbound:unbound kresd:knot-resolver pdns_recursor:pdns-recursor
LAB_COUNTS="$WORK/counts.json"

start_lab
peer_files
peer_configs
python3 bench/cold.py mix crates/lab/zones "$WORK/mix"

rows=()
printf '%-14s %-10s %6s %10s %8s %9s %8s %10s\n' resolver pass names median_ms p95_ms servfail timeouts upstream/name
for r in ${RESOLVERS:-onedot unbound kresd pdns-recursor}; do
    start "$r" || continue
    for pass in cold infra-warm; do
        file="$WORK/mix/$([ $pass = cold ] && echo cold || echo warm).txt"
        out=$(python3 bench/cold.py ask "$PORT_NOW" "$file" "$LAB_COUNTS" "$CONCURRENCY")
        python3 - "$r" "$pass" "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[3])
print(f"{sys.argv[1]:<14} {sys.argv[2]:<10} {r['names']:>6} {r['median_ms']:>10} {r['p95_ms']:>8} {r['servfail']:>9} {r['timeouts']:>8} {r['upstream_per_name']:>10}")
PY
        rows+=("{\"resolver\": \"$r\", \"pass\": \"$pass\", $(echo "$out" | sed 's/^{//; s/}$//')}")
    done
    stop
done
# The floor of the infra-warm pass: one round trip to each name's fastest
# live server.
"$BIN" lab --internet-delays --export "$WORK/lab-export" > /dev/null
floor=$(python3 bench/cold.py floor "$WORK/lab-export/servers.json" "$WORK/mix/warm.txt")
echo "floor (infra-warm): $floor"
rows+=("{\"resolver\": \"floor\", \"pass\": \"infra-warm\", $(echo "$floor" | sed 's/^{//; s/}$//')}")
mkdir -p bench/results
{
    echo "{\"machine\": $(machine_json), \"date\": \"$(date -u +%F)\", \"concurrency\": $CONCURRENCY,"
    echo " \"lab\": \"$(grep -m1 'internet delays' "$WORK/lab.log" || true)\","
    echo " \"results\": [$(IFS=,; echo "${rows[*]}")]}"
} > bench/results/cold.json
echo "wrote bench/results/cold.json"

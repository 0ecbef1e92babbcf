#!/usr/bin/env bash
# Overload and abuse, side by side: onedot with its default [limits] and
# Unbound with its rate limits on, each on the same lab, loopback only.
#
#   bench/overload.sh [SECONDS]   (default 10 per run; the whole script takes
#                                  about 9 minutes at 10, ROUNDS=3, with builds)
#
# Each resolver in turn, started fresh, one worker thread pinned to CPU 0
# and held to RESOLVER_CPU (0.2) of that core by a CFS quota in a cgroup of
# its own (1 ms in every 5, so the quota adds at most 4 ms to an answer): the
# load generator (crates/onedot/examples/loadgen.rs) and the lab share the
# machine's other core, which cannot send five times what a whole core of
# resolver answers, but can for a fifth of one. RESOLVER_CPU=1 runs without
# a quota. Capacity is each resolver's warm-cache QPS under its quota
# (dnsperf over the lab questions, 5 s, rate limits out of the way); the
# floods are sent at ATTACK_X (5) times the larger of the two capacities
# and the legitimate population at LEGIT_SHARE (0.2) of the smaller, so
# both resolvers face the same load. The population: LEGIT_CLIENTS
# addresses, each in its own /24 (127.100.0.0 and up), asking the lab
# question mix, a truncated answer asked again over TCP as stubs do. It
# runs alone, then beside each attack, one at a time, from 64 attacker
# networks (127.200.0.0/24 and up; 16 for the reflection flood):
#   water-unsigned  random names under unsigned.test
#   water-signed    random names under example.test (signed, NSEC)
#   reflect         DNSKEY, TXT and ANY of the lab's largest answers
#   connflood       2,000 TCP connections held open, half of them mid-message
#   misses          random names under the lab's 200 zNNN.test zones
# Reported per run: legitimate queries answered and answered within 100 ms
# (%), their p50 and p99 latency, queries per second that reached the
# victim zone's authoritative servers (counted by the lab itself), bytes
# sent back per byte of flood (amplification), the legitimate mix's cache
# hit rate once the run is over (every lab question asked again with RD=0,
# which both resolvers answer from their cache only), and the resolver's
# RSS after the run against its idle RSS. Last, the defences' cost on the
# ordinary warm-cache run (dnsperf, onedot with the defences on and off,
# alternating, ROUNDS=3 each, whole core, no quota). Writes
# bench/results/overload.json and prints one table.
# Needs root (the lab on port 53, which Unbound needs, and the cgroup).
SECONDS_RUN="${1:-10}"
ROUNDS="${ROUNDS:-3}"
LAB_PORT=53
LEGIT_CLIENTS="${LEGIT_CLIENTS:-300}"
RESOLVER_CPU="${RESOLVER_CPU:-0.2}"
ATTACK_X="${ATTACK_X:-5}"
LEGIT_SHARE="${LEGIT_SHARE:-0.2}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LAB_COUNTS="$WORK/lab-counts.json"

install_commands unbound:unbound
cargo build --release -p onedot --example loadgen --locked -q
LOADGEN="$ROOT/target/release/examples/loadgen"

start_lab
peer_files
"$BIN" lab --export "$WORK/export" > /dev/null

# The authoritative servers of a zone, from the lab's server map.
servers_of() {
    python3 - "$WORK/export/servers.json" "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
zone = sys.argv[2].rstrip(".") + "."
out = [s["address"] for s in m if any(z["name"] == zone for z in s["zones"])]
print(" ".join(out))
PY
}
VICTIM_UNSIGNED="$(servers_of unsigned.test)"
VICTIM_SIGNED="$(servers_of example.test)"
[ -n "$VICTIM_UNSIGNED" ] && [ -n "$VICTIM_SIGNED" ] || die "no servers found for the victim zones in servers.json"

lab_count() {
    python3 - "$LAB_COUNTS" "$@" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
print(sum(c.get(a, 0) for a in sys.argv[2:]))
PY
}

# Unbound's own defences: per-zone ratelimit (its anchor for onedot's
# zone_queries_per_second), per-client-address ip-ratelimit, and the rest
# of the peer config (lab hints and anchor); allow_snoop so that it answers
# the RD=0 probe from its cache, as onedot does.
sed -e 's/^server:$/server:\n    ratelimit: 500\n    ip-ratelimit: 2000\n    ip-ratelimit-factor: 2\n    ratelimit-factor: 0\n    outgoing-range: 4096\n    num-queries-per-thread: 4096\n    incoming-num-tcp: 1000/' \
    -e 's/access-control: 127.0.0.0\/8 allow$/access-control: 127.0.0.0\/8 allow_snoop/' \
    "$WORK/unbound.conf" > "$WORK/unbound-overload.conf"

RESULTS="$WORK/results.jsonl"
: > "$RESULTS"

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# The resolvers' cgroup: RESOLVER_CPU of one core, as 1 ms of CPU time (the
# kernel's smallest quota) in each period of 1/RESOLVER_CPU ms; cgroup v2
# (cpu.max) or v1 (the cpu controller's cfs files), whichever is here.
CGROUP_DIR=""
if [ "$RESOLVER_CPU" != 1 ]; then
    period=$(awk -v c="$RESOLVER_CPU" 'BEGIN { if (c > 0) printf "%d", 1000 / c; else print 0 }')
    [ "$period" -gt 1000 ] && [ "$period" -le 20000 ] || die "RESOLVER_CPU must be in [0.05, 1)"
    if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
        CGROUP_DIR=/sys/fs/cgroup/onedot-bench-$$
        grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
        mkdir "$CGROUP_DIR" && echo "1000 $period" > "$CGROUP_DIR/cpu.max"
    elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
        CGROUP_DIR=/sys/fs/cgroup/cpu/onedot-bench-$$
        mkdir "$CGROUP_DIR" && echo "$period" > "$CGROUP_DIR/cpu.cfs_period_us" && echo 1000 > "$CGROUP_DIR/cpu.cfs_quota_us"
    fi
    [ -n "$CGROUP_DIR" ] && [ -d "$CGROUP_DIR" ] || die "no cgroup cpu controller to hold the resolvers to RESOLVER_CPU=$RESOLVER_CPU (RESOLVER_CPU=1 runs without)"
fi
# confine PID: into the resolvers' cgroup, every thread of it.
confine() {
    [ -z "$CGROUP_DIR" ] || echo "$1" > "$CGROUP_DIR/cgroup.procs"
}

# run RESOLVER PID PORT ATTACK [loadgen attack args...]
run_one() {
    local resolver=$1 pid=$2 port=$3 attack=$4
    shift 4
    local victims=""
    case "$attack" in
        water-unsigned) victims="$VICTIM_UNSIGNED" ;;
        water-signed) victims="$VICTIM_SIGNED" ;;
    esac
    local before after rss
    before=$(lab_count $victims)
    taskset -c 1 "$LOADGEN" --server "127.0.0.1:$port" --seconds "$SECONDS_RUN" --names "$WORK/queries.txt" \
        --legit-clients "$LEGIT_CLIENTS" --legit-qps "$LEGIT_QPS" --probe "$@" > "$WORK/run.json"
    sleep 0.3
    after=$(lab_count $victims)
    rss=$(rss_kib "$pid")
    kill -0 "$pid" 2> /dev/null || die "$resolver died during $attack"
    python3 - "$WORK/run.json" "$resolver" "$attack" "$((after - before))" "$SECONDS_RUN" "$rss" "$IDLE_RSS" "$CAPACITY" >> "$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
resolver, attack, victim, secs, rss, idle, cap = sys.argv[2:9]
a = r["attack"]
out = {
    "resolver": resolver, "attack": attack,
    "legit_sent": r["legit"]["sent"],
    "legit_answered_pct": round(r["legit"]["answered_pct"], 2),
    "legit_within_100ms_pct": round(r["legit"]["within_100ms_pct"], 2),
    "legit_p50_ms": r["legit"]["p50_ms"], "legit_p99_ms": r["legit"]["p99_ms"],
    "legit_truncated": r["legit"]["truncated"], "legit_servfail": r["legit"]["servfail"],
    "attack_qps": round(a["sent_qps"]), "attack_x_capacity": round(a["sent_qps"] / float(cap), 2) if float(cap) else None,
    "connections": a["connections"],
    "victim_qps": round(int(victim) / float(secs), 1) if attack.startswith("water") else None,
    "amplification": round(a["amplification"], 3) if a["amplification"] is not None else None,
    "rss_mib": round(int(rss) / 1024, 1), "idle_rss_mib": round(int(idle) / 1024, 1),
    "legit_hit_pct": round(r["probe"]["hit_pct"], 2),
    "legit_within_100ms_pct_by_quarter_second": r["legit"]["timeline_within_100ms_pct"],
}
print(json.dumps(out))
PY
}

# capacity PORT: warm-cache QPS of what listens on PORT (dnsperf from one
# address, so measured with the rate limits out of the way), under the
# quota, into CAPACITY.
capacity() {
    dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > /dev/null 2>&1
    taskset -c 1 dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -l 5 -q 100 -t 2 > "$WORK/cap.txt" 2>&1
    CAPACITY=$(awk '/Queries per second:/ {printf "%d", $4}' "$WORK/cap.txt")
}

# start_unbound CONFIG: Unbound pinned to CPU 0 on port 5410; sets UNBOUND.
start_unbound() {
    taskset -c 0 unbound -d -c "$1" > "$WORK/unbound.log" 2>&1 &
    UNBOUND=$!
    PIDS+=($UNBOUND)
    confine "$UNBOUND"
    for _ in $(seq 100); do
        dig +tries=1 +time=1 @127.0.0.1 -p 5410 . NS > /dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "unbound did not start: $(head -5 "$WORK/unbound.log")"
}

# series RESOLVER PID PORT: the population alone, then beside each attack.
series() {
    local resolver=$1 pid=$2 port=$3
    dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > /dev/null 2>&1
    IDLE_RSS=$(rss_kib "$pid")
    echo "$resolver: warm capacity $CAPACITY QPS (limits off), idle RSS $((IDLE_RSS / 1024)) MiB" >&2
    run_one "$resolver" "$pid" "$port" none
    run_one "$resolver" "$pid" "$port" water-unsigned --attack water --zone unsigned.test --attack-qps "$ATTACK_QPS" --attack-prefixes 64
    run_one "$resolver" "$pid" "$port" water-signed --attack water --zone example.test --attack-qps "$ATTACK_QPS" --attack-prefixes 64
    run_one "$resolver" "$pid" "$port" reflect --attack reflect --attack-qps "$ATTACK_QPS" --attack-prefixes 16
    run_one "$resolver" "$pid" "$port" connflood --attack connflood --conns 1000 --attack-prefixes 64
    run_one "$resolver" "$pid" "$port" misses --attack misses --attack-qps "$ATTACK_QPS" --attack-prefixes 64
}

# Capacity with the limits out of the way (warm_config keeps the defences
# on at rates no load generator reaches; unbound.conf has no rate limits),
# each resolver under its quota; then the loads from the two capacities;
# then the series with the defaults on (LIMITS=default: no [limits]
# table), each resolver started fresh.
warm_config 5401
start_onedot "$WORK/onedot.toml" 5401
confine "$SERVER"
capacity 5401
CAP_ONEDOT=$CAPACITY
kill "$SERVER"; wait "$SERVER" 2> /dev/null || true
start_unbound "$WORK/unbound.conf"
capacity 5410
CAP_UNBOUND=$CAPACITY
kill "$UNBOUND"; wait "$UNBOUND" 2> /dev/null || true
[ "$CAP_ONEDOT" -gt 0 ] && [ "$CAP_UNBOUND" -gt 0 ] || die "no capacity measured (onedot $CAP_ONEDOT, Unbound $CAP_UNBOUND)"
CAP_MAX=$((CAP_ONEDOT > CAP_UNBOUND ? CAP_ONEDOT : CAP_UNBOUND))
CAP_MIN=$((CAP_ONEDOT < CAP_UNBOUND ? CAP_ONEDOT : CAP_UNBOUND))
ATTACK_QPS="${ATTACK_QPS:-$(awk -v c="$CAP_MAX" -v x="$ATTACK_X" 'BEGIN { printf "%d", c * x }')}"
LEGIT_QPS="${LEGIT_QPS:-$(awk -v c="$CAP_MIN" -v x="$LEGIT_SHARE" 'BEGIN { printf "%d", c * x }')}"
echo "capacity at $RESOLVER_CPU of a core: onedot $CAP_ONEDOT QPS, Unbound $CAP_UNBOUND; floods at $ATTACK_QPS QPS, population at $LEGIT_QPS" >&2

LIMITS=default warm_config 5401
start_onedot "$WORK/onedot.toml" 5401
confine "$SERVER"
CAPACITY=$CAP_ONEDOT
series onedot "$SERVER" 5401
kill "$SERVER"; wait "$SERVER" 2> /dev/null || true

start_unbound "$WORK/unbound-overload.conf"
CAPACITY=$CAP_UNBOUND
series unbound "$UNBOUND" 5410
kill "$UNBOUND"; wait "$UNBOUND" 2> /dev/null || true

# The defences' cost on the ordinary warm-cache run: dnsperf from one
# address (so the limits charge every query but never bite), defences on
# (cookies, rate limit at 2,000,000/s) against off, alternating, ROUNDS
# (3) each.
: > "$WORK/onoff.jsonl"
for i in $(seq "$ROUNDS"); do
    for mode in on off; do
        LIMITS=$mode warm_config 5401
        start_onedot "$WORK/onedot.toml" 5401
        measure 127.0.0.1 5401 "$SECONDS_RUN"
        kill "$SERVER"; wait "$SERVER" 2> /dev/null || true
        echo "{\"defences\": \"$mode\", \"qps\": $qps, \"cpu_us_per_query\": $cpu_us, \"lost\": $lost}" >> "$WORK/onoff.jsonl"
        echo "warm, defences $mode: $qps QPS, $cpu_us µs CPU per query" >&2
    done
done

mkdir -p "$ROOT/bench/results"
python3 - "$WORK/onoff.jsonl" "$RESULTS" "$ROOT/bench/results/overload.json" "$SECONDS_RUN" "$LEGIT_CLIENTS" "$LEGIT_QPS" "$(machine_json)" \
    "$(unbound -V 2> /dev/null | head -n 1)" "$RESOLVER_CPU" "$CAP_ONEDOT" "$CAP_UNBOUND" "$ATTACK_QPS" <<'PY'
import json, sys, datetime
onoff = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.argv.pop(1)
resolver_cpu, cap_onedot, cap_unbound, attack_qps = sys.argv[8:12]
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else None
warm = {m: {"qps": median([r["qps"] for r in onoff if r["defences"] == m]),
            "cpu_us_per_query": median([r["cpu_us_per_query"] for r in onoff if r["defences"] == m])} for m in ("on", "off")}
doc = {"machine": json.loads(sys.argv[6]), "date": datetime.date.today().isoformat(), "seconds": int(sys.argv[3]),
       "legit_clients": int(sys.argv[4]), "legit_qps": int(sys.argv[5]), "versions": {"unbound": sys.argv[7]},
       "resolver_cpu": float(resolver_cpu), "capacity": {"onedot": int(cap_onedot), "unbound": int(cap_unbound)},
       "attack_qps": int(attack_qps),
       "results": rows, "warm_defences": warm, "warm_runs": onoff}
json.dump(doc, open(sys.argv[2], "w"), indent=1)
hdr = ["resolver", "attack", "attack QPS (x cap)", "legit answered", "within 100 ms", "p50 ms", "p99 ms",
       "victim QPS", "amplif.", "legit hit %", "RSS MiB (idle)"]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for r in rows:
    att = "-" if r["attack"] == "none" else (f'{r["connections"]} conns' if r["attack"] == "connflood"
                                           else f'{r["attack_qps"]:,} ({r["attack_x_capacity"]})')
    cells = [r["resolver"], r["attack"], att, f'{r["legit_answered_pct"]} %', f'{r["legit_within_100ms_pct"]} %',
             f'{r["legit_p50_ms"]:.2f}', f'{r["legit_p99_ms"]:.2f}',
             "-" if r["victim_qps"] is None else f'{r["victim_qps"]:,}',
             "-" if r["amplification"] is None or r["attack"] in ("none", "connflood") else f'{r["amplification"]}',
             f'{r["legit_hit_pct"]} %', f'{r["rss_mib"]} ({r["idle_rss_mib"]})']
    print("| " + " | ".join(cells) + " |")
print(f'\nresolvers at {resolver_cpu} of a core: capacity onedot {int(cap_onedot):,} QPS, Unbound {int(cap_unbound):,}; '
      f'floods at {int(attack_qps):,} QPS')
on, off = warm["on"], warm["off"]
if on["qps"] and off["qps"]:
    print(f'\nwarm cache, defences on: {on["qps"]:,.0f} QPS, {on["cpu_us_per_query"]} µs CPU/query; off: '
          f'{off["qps"]:,.0f} QPS, {off["cpu_us_per_query"]} µs (medians of {len(onoff) // 2}; {100 * (on["qps"] / off["qps"] - 1):+.1f} %)')
PY

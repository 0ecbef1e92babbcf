#!/usr/bin/env bash
# Warm-cache Do53 over a veth pair: onedot with its AF_XDP fast path and
# on kernel sockets, Unbound, Knot Resolver (with its XDP mode when the
# Debian build has it) and PowerDNS Recursor, and the `limit` responder.
#
#   bench/xdp.sh [SECONDS]   (default 20; about 4 minutes at 20)
#
# Loopback has no XDP path, so the run makes two network namespaces joined
# by a veth pair (198.18.0.1 and 198.18.0.2, the benchmarking range of RFC
# 2544; 2001:2::/48 likewise for IPv6): dnsperf runs in one, pinned to CPU
# 1; the lab (on the namespace's own loopback) and each resolver in turn,
# started fresh, pinned to CPU 0, validating from the lab's root key, in
# the other. Each resolver is warmed with every lab question once, then
# dnsperf sends the question mix (about 5 % NXDOMAIN) for SECONDS with 100
# outstanding. Server CPU per query is the resolver's own user+sys time
# from /proc over the run: the softirq work of receiving (the XDP program,
# or the kernel's UDP path) runs on the sending CPU and is not in it, the
# same for every row. Writes bench/results/xdp.json; `python3
# bench/readme.py` puts it in the README. Needs root (namespaces, XDP);
# the namespaces are removed at exit, interrupted or not.
SECONDS_RUN="${1:-20}"
LAB_PORT=53
NS_C="odx-c-$$"
NS_R="odx-r-$$"
VETH_C="oxc$$"
VETH_R="oxr$$"
IN_NS="ip netns exec $NS_R"
LISTEN_ADDR=198.18.0.2
[ "$(id -u)" = 0 ] || { echo "bench/xdp.sh needs root (namespaces and XDP)" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

netns_down() {
    ip netns del "$NS_C" 2> /dev/null || true
    ip netns del "$NS_R" 2> /dev/null || true
}
trap 'cleanup; netns_down' EXIT
trap 'exit 130' INT TERM

install_commands unbound:unbound kresd:knot-resolver pdns_recursor:pdns-recursor ip:iproute2
cargo build --release -p doors --example limit_responder --locked -q
LIMIT="$ROOT/target/release/examples/limit_responder"

ip netns add "$NS_C"
ip netns add "$NS_R"
ip link add "$VETH_C" type veth peer name "$VETH_R"
ip link set "$VETH_C" netns "$NS_C"
ip link set "$VETH_R" netns "$NS_R"
ip -n "$NS_C" addr add 198.18.0.1/24 dev "$VETH_C"
ip -n "$NS_R" addr add 198.18.0.2/24 dev "$VETH_R"
ip -n "$NS_C" -6 addr add 2001:2::1/64 dev "$VETH_C" nodad
ip -n "$NS_R" -6 addr add 2001:2::2/64 dev "$VETH_R" nodad
for ns in "$NS_C" "$NS_R"; do ip -n "$ns" link set lo up; done
ip -n "$NS_C" link set "$VETH_C" up
ip -n "$NS_R" link set "$VETH_R" up
# A veth does a NIC's receive work on the sending CPU: receive packet
# steering puts each side's on its own core (the client's on CPU 1, the
# resolver's on CPU 0), as two machines would have it.
ip netns exec "$NS_C" sh -c "echo 2 > /sys/class/net/$VETH_C/queues/rx-0/rps_cpus"
ip netns exec "$NS_R" sh -c "echo 1 > /sys/class/net/$VETH_R/queues/rx-0/rps_cpus"

start_lab
peer_files
peer_configs
sed -i "s/^\( *\)interface: 127.0.0.1@/\1interface: $LISTEN_ADDR@/; s|^\( *\)access-control: 127.0.0.0/8 allow|&\n\1access-control: 198.18.0.0/15 allow|" "$WORK/unbound.conf"

# onedot's config on the veth address, with or without the fast path.
onedot_config() {
    cat > "$WORK/onedot.toml" <<TOML
version = 1
[web]
listen = "127.0.0.1:5409"
[server]
listen = ["$LISTEN_ADDR:5401"]
workers = 1
dot_listen = []
doh_listen = []
doq_listen = []
$(case $1 in xdp) printf '[server.xdp]\ninterface = "%s"\nmode = "native"\n' "$VETH_R" ;; xdp-generic) printf '[server.xdp]\ninterface = "%s"\nmode = "generic"\n' "$VETH_R" ;; esac)
$(lab_config)
TOML
}

# Knot Resolver's XDP mode (kresd 5 on libknot's XDP) on the veth, if this
# build has it: a second config, port 5421.
sed "s/net.listen('$LISTEN_ADDR', 5420, { kind = 'dns' })/net.listen('$LISTEN_ADDR', 5421, { kind = 'dns' })\nnet.listen('$VETH_R', 5421, { kind = 'xdp' })/" \
    "$WORK/kresd.conf" > "$WORK/kresd-xdp.conf"

TICK=$(getconf CLK_TCK)
# CPU 0's busy time (user, system, interrupts, softirq), in ticks: the
# resolver's process and the kernel's receive work for it together.
core_ticks() { awk -v c="cpu${1:-0}" '$1 == c {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
field() { awk -v k="$2" 'index($0, k) { s = substr($0, index($0, k) + length(k)); gsub(/^[ \t]+/, "", s); split(s, a, /[ (]/); print a[1]; exit }' "$1"; }

rows=()
row() { # resolver path qps cpu_us core_us mean_ms lost client_busy
    printf '%-16s %-12s %12s %8s %8s %9s %8s %8s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${8:-}"
    rows+=("{\"resolver\": \"$1\", \"path\": \"$2\", \"qps\": ${3:-null}, \"cpu_us_per_query\": ${4:-null}, \"core_us_per_query\": ${5:-null}, \"mean_ms\": ${6:-null}, \"lost\": ${7:-null}, \"client_core_busy\": ${8:-null}}")
}

# run NAME PATH PORT: warm, then the timed run against the started resolver.
run() {
    local f="$WORK/$1-$2.txt" before after core0 core1 client0 client1 done cpu core busy
    ip netns exec "$NS_C" dnsperf -s "$LISTEN_ADDR" -p "$3" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > "$WORK/warm-$1.txt" 2>&1 || true
    before=$(ticks "${PIDS_NOW[@]}")
    core0=$(core_ticks 0)
    client0=$(core_ticks 1)
    ip netns exec "$NS_C" taskset -c 1 dnsperf -s "$LISTEN_ADDR" -p "$3" -d "$WORK/queries.txt" -l "$SECONDS_RUN" -q 100 -t 3 > "$f" 2>&1 || true
    after=$(ticks "${PIDS_NOW[@]}")
    core1=$(core_ticks 0)
    client1=$(core_ticks 1)
    done=$(field "$f" 'Queries completed:')
    per() { awk -v a="$2" -v b="$1" -v t="$TICK" -v n="${done:-0}" 'BEGIN { if (n > 0) printf "%.2f", (a - b) / t * 1e6 / n; else print "null" }'; }
    cpu=$(per "$before" "$after")
    core=$(per "$core0" "$core1")
    # How busy the load generator's core was: near 1, it is the ceiling.
    busy=$(awk -v a="$client1" -v b="$client0" -v t="$TICK" -v s="$SECONDS_RUN" 'BEGIN { printf "%.2f", (a - b) / t / s }')
    row "$1" "$2" "$(field "$f" 'Queries per second:')" "$cpu" "$core" "$(field "$f" 'Average Latency (s):' | awk '{print $1 * 1000}')" "$(field "$f" 'Queries lost:')" "$busy"
}

printf '%-16s %-12s %12s %8s %8s %9s %8s %8s\n' resolver path qps cpu_us core_us mean_ms lost cpu1_busy
XDP_MODE=null
for path in xdp xdp-generic sockets; do
    onedot_config "$path"
    if start onedot; then
        if [ "$path" != sockets ]; then
            grep -q "AF_XDP fast path on" "$WORK/onedot.log" || { echo "onedot's fast path did not come up:" >&2; grep -i xdp "$WORK/onedot.log" >&2; stop; exit 1; }
            [ "$path" = xdp ] && XDP_MODE="\"$(sed -n 's/.*AF_XDP fast path on.*mode=\([A-Za-z]*\).*/\1/p' "$WORK/onedot.log" | head -1)\""
        fi
        run onedot "$path" 5401
        if [ "$path" != sockets ]; then
            $IN_NS curl -s http://127.0.0.1:5409/metrics | grep '^onedot_xdp_queries_total' | sed 's/^/  /'
        fi
        stop
    else
        row onedot "$path" null null null null null
    fi
done
for r in unbound kresd pdns-recursor limit; do
    if start "$r"; then
        run "$r" sockets "$PORT_NOW"
        stop
    else
        row "$r" sockets null null null null null
    fi
done
# Knot Resolver over XDP, when its build and this kernel allow it.
KRESD_XDP=false
KRESD_XDP_ERROR=""
rm -rf "$WORK/kresd/cache"
# libknot's XDP wants bpffs (mounted in this command's own mount namespace)
# and raises RLIMIT_MEMLOCK to infinity, which needs CAP_SYS_RESOURCE.
$IN_NS sh -c 'mount -t bpf bpf /sys/fs/bpf 2> /dev/null; exec taskset -c 0 kresd -n -q -c "$1" "$2"' sh \
    "$WORK/kresd-xdp.conf" "$WORK/kresd" > "$WORK/kresd-xdp.log" 2>&1 &
PIDS_NOW=($!)
PIDS+=("${PIDS_NOW[@]}")
for _ in $(seq 50); do
    $IN_NS dig +tries=1 +time=1 @"$LISTEN_ADDR" -p 5421 . NS > /dev/null 2>&1 && break
    sleep 0.2
done
if kill -0 "${PIDS_NOW[0]}" 2> /dev/null && ! grep -qi "error\|fail" "$WORK/kresd-xdp.log"; then
    KRESD_XDP=true
    run kresd xdp 5421
else
    KRESD_XDP_ERROR="$(grep -i 'xdp' "$WORK/kresd-xdp.log" | head -1 | tr -d '"\\')"
    (((0x$(awk '/^CapEff/ {print $2}' /proc/self/status) >> 24) & 1)) ||
        KRESD_XDP_ERROR="$KRESD_XDP_ERROR (this root lacks CAP_SYS_RESOURCE, which raising RLIMIT_MEMLOCK needs)"
    echo "  (Knot Resolver's XDP mode did not start here: $KRESD_XDP_ERROR)"
fi
stop

V_UNBOUND="Unbound $(unbound -V 2> /dev/null | awk '/^Version/ {print $2}')"
V_KRESD="$(kresd --version 2> /dev/null | head -1)"
V_PDNS="$(pdns_recursor --version 2>&1 | grep -o 'PowerDNS Recursor [0-9.]*' | head -1)"
mkdir -p bench/results
{
    echo "{"
    echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"seconds\": $SECONDS_RUN,"
    echo "  \"setup\": \"two network namespaces joined by a veth pair; dnsperf in one (CPU 1), the lab and one resolver at a time in the other (CPU 0); 100 outstanding; warm cache\","
    echo "  \"onedot_xdp_mode\": $XDP_MODE,"
    echo "  \"kresd_xdp\": $KRESD_XDP,"
    echo "  \"kresd_xdp_error\": \"$KRESD_XDP_ERROR\","
    echo "  \"machine\": $(machine_json),"
    echo "  \"versions\": {\"unbound\": \"$V_UNBOUND\", \"kresd\": \"$V_KRESD\", \"pdns\": \"$V_PDNS\"},"
    echo "  \"rows\": ["
    for i in "${!rows[@]}"; do
        sep=","
        [ "$i" = $((${#rows[@]} - 1)) ] && sep=""
        echo "    ${rows[$i]}$sep"
    done
    echo "  ]"
    echo "}"
} > bench/results/xdp.json
echo "wrote bench/results/xdp.json"

#!/usr/bin/env bash
# Keyless edges: what asking a key server for every handshake signature
# costs, against a key on the edge. Loopback only.
#
#   bench/keyless.sh [SECONDS]   (default 10)
#
# Starts the lab (port 5300), `onedot keyserver` (127.0.0.1:5420) and, in
# turn, `onedot serve` (one worker, Do53 5430, DoT 5431) with a local key
# and keyless, for an ECDSA P-256 and an RSA-2048 certificate. The edge and
# the key server share CPU 0 (so a keyless handshake has the same CPU as a
# local one); the load runs on CPU 1:
#   - handshake latency: `crates/onedot/examples/handshakes.rs`, one
#     client, TLS 1.3, resumption off, for SECONDS: p50 and p99 of connect +
#     full handshake, unloaded (what the key server adds to each);
#   - handshake rate: the same with 8 clients: handshakes per second, and
#     the server CPU per handshake (user+sys of the edge plus the key
#     server, from /proc): the load generator shares the machine, so the
#     rate it reaches is also bounded by its own CPU;
#   - steady state: dnsperf -m dot (4 connections kept open, 100 queries
#     outstanding, the lab question mix, warmed) for SECONDS: QPS.
# Writes bench/results/keyless.json. Everything it starts it stops, by PID.
SECONDS_RUN="${1:-10}"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_commands openssl:openssl
cargo build --release -p onedot --example handshakes --locked -q
HANDSHAKES="$ROOT/target/release/examples/handshakes"

start_lab

# The key server: an edge CA, one edge, the two door keys.
"$BIN" keyserver init --state-dir "$WORK/ks" --name 127.0.0.1 > /dev/null
mkdir -p "$WORK/keys" "$WORK/edge"
door() { # door NAME openssl-newkey-args...
    local name=$1; shift
    openssl req -x509 -nodes -days 30 -subj /CN=dns.example -addext subjectAltName=IP:127.0.0.1 "$@" \
        -keyout "$WORK/keys/$name.key" -out "$WORK/$name.pem" 2> /dev/null
    chmod 600 "$WORK/keys/$name.key"
}
door p256 -newkey ec -pkeyopt ec_paramgen_curve:P-256
door rsa2048 -newkey rsa:2048
cat > "$WORK/keyserver.toml" <<TOML
listen = ["127.0.0.1:5420"]
state_dir = "$WORK/ks"
[[key]]
path = "$WORK/keys/p256.key"
[[key]]
path = "$WORK/keys/rsa2048.key"
TOML
"$BIN" keyserver --config "$WORK/keyserver.toml" issue-edge bench --region lab --out "$WORK/edge" > /dev/null
taskset -c 0 "$BIN" keyserver --config "$WORK/keyserver.toml" > "$WORK/keyserver.log" 2>&1 &
KEYSERVER=$!
PIDS+=($KEYSERVER)
for _ in $(seq 50); do grep -q "keyserver: listening" "$WORK/keyserver.log" && break; sleep 0.1; done

# edge_config KEY MODE: onedot's config for certificate KEY, local or keyless.
edge_config() {
    local identity
    if [ "$2" = local ]; then
        identity="tls_private_key = \"$WORK/keys/$1.key\""
    else
        identity="keyless = { servers = [\"127.0.0.1:5420\"], ca_file = \"$WORK/ks/ca.pem\", edge_certificate = \"$WORK/edge/bench.pem\", edge_key = \"$WORK/edge/bench.key\" }"
    fi
    cat <<TOML
version = 1
[server]
listen = ["127.0.0.1:5430"]
dot_listen = ["127.0.0.1:5431"]
workers = 1
tls_certificate = "$WORK/$1.pem"
$identity
[web]
listen = ""
$(lab_config)
TOML
}

ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
TICK=$(getconf CLK_TCK)
rows=()
results=()
for key in p256 rsa2048; do
    for mode in local keyless; do
        edge_config "$key" "$mode" > "$WORK/onedot-$key-$mode.toml"
        start_onedot "$WORK/onedot-$key-$mode.toml" 5430
        lat=$(taskset -c 1 "$HANDSHAKES" 127.0.0.1:5431 "$SECONDS_RUN" 1 dot)
        before=$(ticks "$SERVER" "$KEYSERVER")
        hs=$(taskset -c 1 "$HANDSHAKES" 127.0.0.1:5431 "$SECONDS_RUN" 8 dot)
        after=$(ticks "$SERVER" "$KEYSERVER")
        field() { echo "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])"; }
        per_s=$(field "$hs" per_second)
        fails=$(( $(field "$hs" failures) + $(field "$lat" failures) ))
        p50=$(field "$lat" p50_us)
        p99=$(field "$lat" p99_us)
        cpu_us=$(awk -v a="$after" -v b="$before" -v t="$TICK" -v n="$(field "$hs" handshakes)" 'BEGIN { printf "%.0f", (a - b) / t * 1e6 / n }')
        dot_qps=null
        if [ "$key" = p256 ]; then
            opts=(-m dot -s 127.0.0.1 -p 5431 -c 4)
            dnsperf "${opts[@]}" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > /dev/null 2>&1 || true
            taskset -c 1 dnsperf "${opts[@]}" -d "$WORK/queries.txt" -l "$SECONDS_RUN" -q 100 -t 3 > "$WORK/dot-$mode.txt" 2>&1 || true
            dot_qps=$(awk '/Queries per second:/ {print $4; exit}' "$WORK/dot-$mode.txt")
        fi
        kill "$SERVER"; wait "$SERVER" 2> /dev/null || true
        rows+=("$(printf '%-8s %-8s %8s %8s %12s %12s %8s %12s' "$key" "$mode" "$p50" "$p99" "$per_s" "$cpu_us" "$fails" "$dot_qps")")
        results+=("{\"key\": \"$key\", \"mode\": \"$mode\", \"p50_us\": $p50, \"p99_us\": $p99, \"handshakes_per_second\": $per_s, \"server_cpu_us_per_handshake\": $cpu_us, \"failures\": $fails, \"dot_qps\": $dot_qps}")
    done
done

printf '%-8s %-8s %8s %8s %12s %12s %8s %12s\n' key mode p50_us p99_us handshakes/s cpu_us/hs failed dot_qps
printf '%s\n' "${rows[@]}"
echo "(${SECONDS_RUN}s each; edge (1 worker) and key server on CPU 0, load on CPU 1; latency: 1 client, rate: 8 clients, full TLS 1.3 handshakes; cpu_us/hs: edge + key server; DoT: dnsperf, 4 connections kept, 100 outstanding)"
signed=$(grep -c '"signed"\| signed' "$WORK/keyserver.log" || true)
echo "key server: $signed signing operations logged"
{
    echo "{\"machine\": $(machine_json), \"date\": \"$(date -u +%F)\", \"seconds\": $SECONDS_RUN, \"results\": ["
    (IFS=,; echo "${results[*]}")
    echo "]}"
} > bench/results/keyless.json

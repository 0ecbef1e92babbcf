# Shared pieces of the benchmark scripts (sourced, not run). Loopback only;
# everything started is stopped by PID on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LAB_PORT="${LAB_PORT:-5300}"
# IN_NS: a command prefix ("ip netns exec NS") the lab and the resolvers
# run under, and LISTEN_ADDR the address the resolvers listen on
# (bench/xdp.sh: a veth in a namespace); loopback by default.
IN_NS="${IN_NS:-}"
LISTEN_ADDR="${LISTEN_ADDR:-127.0.0.1}"
WORK="$(mktemp -d /tmp/onedot-bench-XXXXXX)"
PIDS=()
cleanup() {
    policy_restore
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${CGROUP_DIR:-}" ] && rmdir "$CGROUP_DIR" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "bench: $*" >&2; exit 1; }
source "$ROOT/scripts/packages.sh"
install_commands dnsperf:dnsperf dig:dnsutils curl:curl
ensure_dnspython > /dev/null
cargo build --release -p onedot --locked -q
# ONEDOT_BIN: another build of onedot to measure (an A/B against main).
BIN="${ONEDOT_BIN:-$ROOT/target/release/onedot}"

# The question mix: every lab question (about 5 % of them NXDOMAIN).
grep -v '^#' crates/lab/zones/questions.txt | awk 'NF==2 {print $1, $2}' > "$WORK/queries.txt"
NQ=$(wc -l < "$WORK/queries.txt")

# The [resolver]/[cache]/[dnssec] part of a config resolving through the lab.
lab_config() {
    cat <<TOML
$(limits_config)
[resolver]
root_hints = ["127.53.0.1", "127.53.0.2"]
upstream_port = $LAB_PORT
do_not_query_localhost = false
answer_special_use_locally = false
[cache]
answer_max_bytes = 33554432
rrset_max_bytes = 33554432
[dnssec]
validate = true
builtin_root_anchor = false
trust_anchor_files = ["$WORK/lab-root.key"]
TOML
}

# limits_config: the [limits] section of onedot's configs. The load here
# comes from one address, so the defences stay on (every bucket charged,
# cookies read) with rates no load generator reaches; LIMITS=off turns the
# rate limit off, for the defences-on-against-off comparison; LIMITS=default
# leaves the defaults (bench/overload.sh).
limits_config() {
    if [ "${LIMITS:-on}" = default ]; then
        return 0
    elif [ "${LIMITS:-on}" = off ]; then
        printf '[limits]\nrate_limit = false\ncookies = false\n'
    else
        printf '[limits]\nresponses_per_second = 2000000\nerrors_per_second = 2000000\nmisses_per_second = 2000000\nflood_per_second = 20000000\nmax_resolutions_per_prefix = 10000\n'
    fi
    # UPSTREAM=unlimited lifts the upstream protection as well, to measure
    # the resolution work itself (unique names under an NSEC3 wildcard are
    # each asked upstream; the per-zone limit would otherwise decide).
    if [ "${UPSTREAM:-}" = unlimited ] && [ "${LIMITS:-on}" != default ]; then
        printf 'zone_queries_per_second = 1000000\ntld_queries_per_second = 1000000\nzone_queries_in_flight = 100000\nserver_queries_per_second = 1000000\n'
    fi
}

# Starts the lab; waits for its trust anchor and its root to answer, and
# stops the run if it cannot (a port already taken, say): every figure
# after that would measure SERVFAILs.
start_lab() {
    $IN_NS "$BIN" lab --port "$LAB_PORT" --trust-anchor-out "$WORK/lab-root.key" ${LAB_COUNTS:+--counts-out "$LAB_COUNTS"} \
        ${LAB_INTERNET:+--internet-delays} \
        > "$WORK/lab.log" 2>&1 &
    local lab=$!
    PIDS+=($lab)
    for _ in $(seq 100); do
        [ -s "$WORK/lab-root.key" ] && $IN_NS dig +norec +tries=1 +time=1 @127.53.0.1 -p "$LAB_PORT" . SOA 2> /dev/null |
            grep -q "status: NOERROR" && return 0
        kill -0 "$lab" 2> /dev/null || break
        sleep 0.1
    done
    echo "the lab did not start on port $LAB_PORT:" >&2
    grep -v '^ ' "$WORK/lab.log" | head -5 >&2
    exit 1
}

# start_onedot CONFIG PORT: serve pinned to CPU 0; sets SERVER to its PID.
start_onedot() {
    taskset -c 0 "$BIN" serve --config "$1" > "$WORK/onedot.log" 2>&1 &
    SERVER=$!
    PIDS+=($SERVER)
    for _ in $(seq 100); do
        dig +tries=1 +time=1 @127.0.0.1 -p "$2" . NS > /dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "onedot did not start:" >&2; cat "$WORK/onedot.log" >&2; exit 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }

# measure SERVER_IP PORT SECONDS: warms with every question once, then runs
# dnsperf pinned to CPU 1 with 100 outstanding; sets qps, completed, lost,
# mean_ms, cpu_us (server user+sys per query) and rss_mib.
measure() {
    dnsperf -s "$1" -p "$2" -d "$WORK/queries.txt" -n 1 -q 20 -t 5 > "$WORK/warm.txt" 2>&1
    local tick before after
    tick=$(getconf CLK_TCK)
    before=$(cpu_ticks)
    taskset -c 1 dnsperf -s "$1" -p "$2" -d "$WORK/queries.txt" -l "$3" -q 100 -t 2 > "$WORK/run.txt" 2>&1
    after=$(cpu_ticks)
    completed=$(awk '/Queries completed:/ {print $3}' "$WORK/run.txt")
    lost=$(awk '/Queries lost:/ {print $3}' "$WORK/run.txt")
    qps=$(awk '/Queries per second:/ {print $4}' "$WORK/run.txt")
    mean_ms=$(awk '/Average Latency/ {gsub("s","",$4); print $4 * 1000}' "$WORK/run.txt")
    cpu_us=$(awk -v a="$after" -v b="$before" -v t="$tick" -v n="$completed" 'BEGIN { printf "%.2f", (a - b) / t * 1e6 / n }')
    rss_mib=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status")
}

machine_json() {
    echo "{\"cpus\": $(nproc), \"model\": \"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\", \"kernel\": \"$(uname -r)\"}"
}

# Writes into $WORK what the peer runs need: a self-signed certificate for
# localhost and 127.0.0.1 (cert.pem, key.pem, with Python's cryptography,
# which dnspython's DoQ extra brings), Unbound's config for port 5410 on the
# lab (unbound.conf, root.hints), a DoH request body (doh-body.bin),
# onedot's config (onedot.toml: Do53 5401, DoT 5402, DoH 5403, web 5409) and
# dnsdist's (dnsdist.conf: DoT 5412, DoH 5413, packet cache, in front of
# Unbound).
peer_files() {
    python3 - "$WORK" <<'PY'
import sys, datetime, ipaddress
from pathlib import Path
wd = Path(sys.argv[1])
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                       x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256()))
(wd / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
(wd / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
sys.path.insert(0, "tests/peers")
from differential_unbound import unbound_config, unbound_root_hints
(wd / "root.hints").write_text(unbound_root_hints())
conf = unbound_config(wd, 5410, wd / "root.hints", wd / "lab-root.key").replace("    verbosity: 1\n", "    verbosity: 0\n")
(wd / "unbound.conf").write_text(conf)
# A second configuration, for a separate run that only reads the cache sizes:
# extended statistics cost Unbound time on every query, so the timed runs
# go without them.
(wd / "unbound-stats.conf").write_text(
    conf.replace("server:\n", "server:\n    extended-statistics: yes\n", 1)
    + f"remote-control:\n    control-enable: yes\n    control-interface: {wd / 'unbound.ctl'}\n")
import dns.message
q = dns.message.make_query("www.example.test", "A")
q.id = 0
(wd / "doh-body.bin").write_bytes(q.to_wire())
PY
cat > "$WORK/onedot.toml" <<TOML
version = 1
[web]
listen = "127.0.0.1:5409"
[server]
listen = ["127.0.0.1:5401"]
workers = 1
dot_listen = ["127.0.0.1:5402"]
doh_listen = ["127.0.0.1:5403"]
doq_listen = []
doh3 = false
tls_certificate = "$WORK/cert.pem"
tls_private_key = "$WORK/key.pem"
$(lab_config)
TOML
cat > "$WORK/dnsdist.conf" <<LUA
setSecurityPollSuffix("")
addLocal("127.0.0.1:5411")
addTLSLocal("127.0.0.1:5412", "$WORK/cert.pem", "$WORK/key.pem", { provider = "openssl" })
addDOHLocal("127.0.0.1:5413", "$WORK/cert.pem", "$WORK/key.pem", "/dns-query")
newServer({ address = "127.0.0.1:5410", name = "unbound" })
pc = newPacketCache(100000, {})
getPool(""):setCache(pc)
LUA
}

# warm_config PORT: onedot's config for the single-resolver runs (one
# worker on 127.0.0.1:PORT, on the lab).
warm_config() {
cat > "$WORK/onedot.toml" <<TOML
version = 1
[web]
listen = "127.0.0.1:0"
[server]
listen = ["127.0.0.1:$1"]
workers = 1
$(lab_config)
TOML
}

# peer_configs: Knot Resolver (port 5420) and PowerDNS Recursor (5430) on
# the lab, validating from its root key, one thread each; call after
# peer_files (they use its root.hints).
peer_configs() {
    mkdir -p "$WORK/kresd"
    cat > "$WORK/kresd.conf" <<LUA
-- The lab lives on 127.53/16 and serves .test: allow both.
policy.add(policy.all(policy.FLAGS({'ALLOW_LOCAL'})))
policy.special_names = {}
net.listen('$LISTEN_ADDR', 5420, { kind = 'dns' })
modules.unload('ta_signal_query')
modules.unload('priming')
modules.unload('detect_time_skew')
trust_anchors.remove('.')
trust_anchors.add_file('$WORK/lab-root.key', true)
modules.load('hints > iterate')
hints.root_file('$WORK/root.hints')
cache.open(32 * MB, 'lmdb://$WORK/kresd/cache')
LUA
    mkdir -p "$WORK/pdns"
    cat > "$WORK/pdns/recursor.conf" <<CONF
local-address=$LISTEN_ADDR
local-port=5430
threads=1
pdns-distributes-queries=no
daemon=no
write-pid=no
disable-syslog=yes
loglevel=3
socket-dir=$WORK/pdns
hint-file=$WORK/root.hints
dont-query=
allow-from=127.0.0.0/8, 198.18.0.0/15
security-poll-suffix=
dnssec=validate
qname-minimization=yes
lua-config-file=$WORK/pdns/recursor.lua
CONF
    cat > "$WORK/pdns/recursor.lua" <<LUA
clearTA()
readTrustAnchorsFromFile("$WORK/lab-root.key", 0)
LUA
}

# start NAME: starts onedot, unbound, kresd, pdns-recursor or limit (the
# canned responder, $LIMIT) fresh, pinned to CPU 0, and waits for it to
# answer; sets PIDS_NOW and PORT_NOW. stop: stops what start started.
start() {
    case $1 in
        onedot) $IN_NS taskset -c 0 "$BIN" serve --config "$WORK/onedot.toml" > "$WORK/onedot.log" 2>&1 & PIDS_NOW=($!); PORT_NOW=5401 ;;
        unbound) $IN_NS taskset -c 0 unbound -d -c "$WORK/unbound.conf" > "$WORK/unbound.log" 2>&1 & PIDS_NOW=($!); PORT_NOW=5410 ;;
        kresd) rm -rf "$WORK/kresd/cache"; $IN_NS taskset -c 0 kresd -n -q -c "$WORK/kresd.conf" "$WORK/kresd" > "$WORK/kresd.log" 2>&1 & PIDS_NOW=($!); PORT_NOW=5420 ;;
        pdns-recursor) $IN_NS taskset -c 0 pdns_recursor --config-dir="$WORK/pdns" > "$WORK/pdns.log" 2>&1 & PIDS_NOW=($!); PORT_NOW=5430 ;;
        limit) $IN_NS taskset -c 0 "$LIMIT" "$LISTEN_ADDR:5499" 1 > "$WORK/limit.log" 2>&1 & PIDS_NOW=($!); PORT_NOW=5499 ;;
    esac
    PIDS+=("${PIDS_NOW[@]}")
    for _ in $(seq 100); do
        $IN_NS dig +tries=1 +time=1 @"$LISTEN_ADDR" -p "$PORT_NOW" . NS > /dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "$1 did not start" >&2
    return 1
}
stop() { for p in "${PIDS_NOW[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }

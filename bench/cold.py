"""Cold resolution over realistic round trips: the name mix, and the timing
client of bench/cold.sh.

    python3 bench/cold.py mix ZONES_DIR OUT_DIR
        Writes OUT_DIR/cold.txt and OUT_DIR/warm.txt: two disjoint halves of
        a mix of names from every zone the lab's question list uses (ZONES_DIR
        is crates/lab/zones; the list never touches a zone broken on purpose) (every
        owner name and type in the zone files, CNAMEs, names under
        wildcards, names that do not exist), shuffled with a fixed seed.

    python3 bench/cold.py ask PORT NAMES_FILE COUNTS_JSON [CONCURRENCY]
        Asks 127.0.0.1:PORT every (name, type) of NAMES_FILE once, at most
        CONCURRENCY (default 10) at a time, each with a 10 s deadline and no
        retry, timing each from send to answer. Prints one JSON object:
        names, answered, servfail, timeouts, median_ms, p95_ms, and
        upstream_per_name (the lab's counted queries over the run divided
        by the names; COUNTS_JSON is the file of `onedot lab --counts-out`).
        With COLD_FAILURES=FILE, appends each SERVFAIL (name, type, time,
        EDNS options) to FILE.

    python3 bench/cold.py floor SERVERS_JSON NAMES_FILE
        The least any resolver can take for NAMES_FILE once the
        infrastructure is cached: one round trip to the fastest server of
        each name's zone that answers (SERVERS_JSON from `onedot lab
        --internet-delays --export DIR`). Prints median_ms and p95_ms.

Loopback only. Needs dnspython.
"""

import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode

ASKED_TYPES = {"A", "AAAA", "MX", "TXT", "CNAME"}


def zone_of(name, apexes):
    """The deepest lab zone apex that `name` is in."""
    best = None
    for apex in apexes:
        if name == apex or name.endswith("." + apex) or apex == ".":
            if best is None or len(apex) > len(best):
                best = apex
    return best


def mix(zones_dir, out_dir):
    zones_dir, out_dir = Path(zones_dir), Path(out_dir)
    zones = {}
    for f in sorted(zones_dir.glob("*.zone")):
        lines = f.read_text().splitlines()
        apex = lines[0].split()[1]
        zones[apex] = lines
    apexes = list(zones)
    questions = (zones_dir / "questions.txt").read_text()
    used = set()
    for line in questions.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#"):
            name = parts[0] if parts[0].endswith(".") else parts[0] + "."
            z = zone_of(name, apexes)
            if z and z != ".":
                used.add(z)
    pairs = set()
    for apex in sorted(used):
        wildcard = False
        for line in zones[apex]:
            parts = line.split()
            if len(parts) < 5 or parts[0].startswith(("$", ";")):
                continue
            owner, rtype = parts[0], parts[3]
            if owner.startswith("*."):
                wildcard = True
                for i in range(4):
                    pairs.add((f"cold{i}{owner[1:]}", rtype))
                continue
            # Records below a delegation (glue) belong to the child.
            if rtype in ASKED_TYPES and zone_of(owner, apexes) == apex:
                pairs.add((owner, rtype))
        for i in range(4 if wildcard else 6):
            pairs.add((f"nx{i}-cold.{apex}", "A"))
    pairs = sorted(pairs)
    random.Random(7).shuffle(pairs)
    half = len(pairs) // 2
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("cold.txt", pairs[:half]), ("warm.txt", pairs[half:])):
        (out_dir / name).write_text("".join(f"{n} {t}\n" for n, t in part))
    print(f"{len(used)} zones, {len(pairs)} names: {half} cold, {len(pairs) - half} with the infrastructure warm")


def lab_queries(counts_json):
    # The lab rewrites the file every 100 ms: read until it parses.
    for _ in range(50):
        try:
            return sum(json.loads(Path(counts_json).read_text()).values())
        except (ValueError, OSError):
            time.sleep(0.02)
    return 0


async def ask_all(port, pairs, concurrency):
    times, failed, outcome = [], [], {"answered": 0, "servfail": 0, "timeouts": 0}
    queue = asyncio.Queue()
    for p in pairs:
        queue.put_nowait(p)

    async def worker():
        while not queue.empty():
            name, rtype = queue.get_nowait()
            q = dns.message.make_query(name, rtype, want_dnssec=True)
            start = time.perf_counter()
            try:
                r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=10, ignore_unexpected=True)
                if r.flags & dns.flags.TC:
                    r = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=10)
            except (dns.exception.Timeout, OSError):
                outcome["timeouts"] += 1
                continue
            elapsed = (time.perf_counter() - start) * 1000
            if r.rcode() == dns.rcode.SERVFAIL:
                outcome["servfail"] += 1
                failed.append(f"{name} {rtype} {elapsed:.0f}ms {' '.join(str(o) for o in r.options)}")
            else:
                outcome["answered"] += 1
            times.append(elapsed)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if os.environ.get("COLD_FAILURES"):
        with open(os.environ["COLD_FAILURES"], "a") as f:
            f.write("".join(line + "\n" for line in failed))
    return times, outcome


def ask(port, names_file, counts_json, concurrency=10):
    pairs = [tuple(l.split()[:2]) for l in Path(names_file).read_text().splitlines() if l.strip()]
    before = lab_queries(counts_json)
    t0 = time.perf_counter()
    times, outcome = asyncio.run(ask_all(int(port), pairs, int(concurrency)))
    wall = time.perf_counter() - t0
    time.sleep(0.3)
    upstream = lab_queries(counts_json) - before
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))] if times else None
    print(json.dumps({
        "names": len(pairs),
        **outcome,
        "median_ms": round(statistics.median(times), 2) if times else None,
        "p95_ms": round(p95, 2) if p95 is not None else None,
        "upstream_per_name": round(upstream / len(pairs), 2) if pairs else None,
        "wall_s": round(wall, 1),
    }))


def floor(servers_json, names_file):
    best = {}
    for server in json.loads(Path(servers_json).read_text()):
        if server["behaviour"] not in ("normal", "slow"):
            continue
        for z in server["zones"]:
            d = z.get("delay_ms")
            if d is not None:
                best[z["name"]] = min(best.get(z["name"], d), d)
    apexes = list(best)
    times = []
    for line in Path(names_file).read_text().splitlines():
        z = zone_of(line.split()[0], apexes)
        if z is not None:
            times.append(best[z])
    times.sort()
    print(json.dumps({
        "names": len(times),
        "median_ms": statistics.median(times),
        "p95_ms": times[min(len(times) - 1, int(len(times) * 0.95))],
    }))


if __name__ == "__main__":
    import dns.flags  # noqa: F401  (for TC above)
    if len(sys.argv) >= 4 and sys.argv[1] == "mix":
        mix(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "floor":
        floor(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 5 and sys.argv[1] == "ask":
        ask(*sys.argv[2:6])
    else:
        sys.exit(__doc__)

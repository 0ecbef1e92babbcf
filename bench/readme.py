#!/usr/bin/env python3
"""Writes the README's side-by-side tables from bench/results/latest.json.

    python3 bench/readme.py          # rewrites the block in README.md
    python3 bench/readme.py --print  # prints it instead

The block sits between `<!-- bench:begin -->` and `<!-- bench:end -->`, so
every figure in it is the one `bench/run.sh` wrote, never one typed by hand.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def rows(d):
    out = {}
    for r in d["results"]:
        out[(r["resolver"], r["mode"])] = r
    return out


def qps(r):
    return f"{r['qps']:,.0f}" if r and r.get("qps") else "—"


def cpu(r):
    return f"{r['cpu_us_per_query']:.2f}" if r and r.get("cpu_us_per_query") is not None else "—"


def render(d):
    res = rows(d)
    names = d.get("versions", {})
    label = {
        "onedot": "onedot",
        "unbound": names.get("unbound", "Unbound"),
        "pdns-recursor": names.get("pdns-recursor", "PowerDNS Recursor"),
        "kresd": names.get("kresd", "Knot Resolver"),
    }
    m = d["machine"]
    lines = [
        f"Run of {d.get('date', 'the latest run')} on a {m['cpus']}-core {m['model']} VM, kernel {m['kernel']}; "
        f"{d['seconds']} s per run, {d['questions']} lab questions:",
        "",
        "| resolver | warm QPS | CPU µs/query | TCP QPS (CPU µs) | p99 at 20k QPS | cold (all names once) | RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ["onedot", "unbound", "pdns-recursor", "kresd"]:
        warm, tcp, p99, cold = (res.get((key, mode)) for mode in ("warm", "tcp", "p99", "cold"))
        if not warm:
            continue
        p = f"{p99['p99_ms']:.3f} ms" if p99 and p99.get("p99_ms") is not None else "—"
        c = f"{cold['seconds']:.2f} s" if cold and cold.get("seconds") is not None else "—"
        lines.append(
            f"| {label[key]} | {qps(warm)} | {cpu(warm)} | {qps(tcp)} ({cpu(tcp)} µs) | {p} | {c} | {warm['rss_mib']} MiB |"
        )
    limit = res.get(("limit", "warm"))
    if limit:
        lines.append(
            f"| limit (canned UDP replies, onedot's sockets) | {qps(limit)} | {cpu(limit)} | | | | {limit['rss_mib']} MiB |"
        )
    lines += [
        "",
        f"| door | onedot | {names.get('dnsdist', 'dnsdist')} + {label['unbound']} |",
        "|---|---|---|",
    ]
    for mode, what in (("dot", "DoT (dnsperf -m dot)"), ("doh", "DoH, HTTP/2 (h2load)")):
        a, b = res.get(("onedot", mode)), res.get(("dnsdist+unbound", mode))
        lines.append(f"| {what} | {qps(a)} QPS, {cpu(a)} µs | {qps(b)} QPS, {cpu(b)} µs |")
    o, u = d.get("onedot_rrset_cache", {}), d.get("unbound_rrset_cache", {})
    lines += [
        "",
        "| RRset cache after the same questions | entries | bytes | per RRset |",
        "|---|---|---|---|",
        f"| onedot (what the cache charges itself, table slot included) | {o.get('entries', 0):,} | "
        f"{o.get('bytes', 0):,} | {o.get('bytes_per_rrset')} |",
        f"| {label['unbound']} (`mem.cache.rrset` over `rrset.cache.count`, empty cache subtracted) | "
        f"{u.get('entries', 0):,} | {u.get('bytes', 0):,} | {u.get('bytes_per_rrset')} |",
    ]
    return "\n".join(lines)


def main():
    d = json.loads((ROOT / "bench/results/latest.json").read_text())
    block = render(d)
    if "--print" in sys.argv:
        print(block)
        return
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"README.md has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")
    print("README.md: tables rewritten from bench/results/latest.json")


if __name__ == "__main__":
    main()

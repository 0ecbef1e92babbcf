#!/usr/bin/env python3
"""Writes the README's side-by-side tables from bench/results/latest.json,
bench/results/cold.json and bench/results/xdp.json.

    python3 bench/readme.py          # rewrites the blocks in README.md
    python3 bench/readme.py --print  # prints them instead

The blocks sit between `<!-- bench:begin -->` and `<!-- bench:end -->`
(bench/run.sh's figures), `<!-- cold:begin -->` and `<!-- cold:end -->`
(bench/cold.sh's) and `<!-- xdp:begin -->` and `<!-- xdp:end -->`
(bench/xdp.sh's), so every figure in them is one a script wrote, never one
typed by hand.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
COLD_BEGIN, COLD_END = "<!-- cold:begin -->", "<!-- cold:end -->"
XDP_BEGIN, XDP_END = "<!-- xdp:begin -->", "<!-- xdp:end -->"
LABELS = {
    "onedot": "onedot",
    "unbound": "Unbound",
    "kresd": "Knot Resolver",
    "pdns-recursor": "PowerDNS Recursor",
    "limit": "limit (canned UDP replies, onedot's sockets)",
}
PATHS = {"xdp": "AF_XDP, native", "xdp-generic": "AF_XDP, generic", "sockets": "kernel sockets"}


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


def render_cold(d):
    """The cold-resolution table, and each pass's ratios to the best peer."""
    m = d["machine"]
    lines = [
        f"Run of {d.get('date')} on a {m['cpus']}-core {m['model']} VM, kernel {m['kernel']}; "
        f"{d['concurrency']} names at a time:",
        "",
        "| resolver | pass | names | median | p95 | SERVFAIL | timeouts | upstream queries per name |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in d["results"]:
        if r["resolver"] == "floor":
            continue
        lines.append(
            f"| {LABELS.get(r['resolver'], r['resolver'])} | {r['pass']} | {r['names']:,} | {r['median_ms']} ms | "
            f"{r['p95_ms']} ms | {r['servfail']} | {r['timeouts']} | {r['upstream_per_name']} |"
        )
    for r in (r for r in d["results"] if r["resolver"] == "floor"):
        lines.append(
            f"| floor: one round trip to the fastest live server of each name's zone (a name not answerable from the cache costs at least that) | {r['pass']} | {r['names']:,} | "
            f"{r['median_ms']} ms | {r['p95_ms']} ms | | | |"
        )
    lines.append("")
    for p in ("cold", "infra-warm"):
        ours = next((r for r in d["results"] if r["resolver"] == "onedot" and r["pass"] == p), None)
        peers = [r for r in d["results"] if r["resolver"] not in ("onedot", "floor") and r["pass"] == p]
        if not ours or not peers:
            continue
        parts = []
        for key, what in (("median_ms", "median"), ("p95_ms", "p95"), ("upstream_per_name", "upstream queries")):
            best = min(peers, key=lambda r: r[key])
            parts.append(f"{what} {ours[key] / best[key]:.2f} × {LABELS.get(best['resolver'])}'s")
        lines.append(f"- {p}: onedot against the best peer: " + ", ".join(parts) + ".")
    return "\n".join(lines)


def render_xdp(d):
    """The veth run's table, and onedot over AF_XDP against the best peer."""
    m = d["machine"]
    lines = [
        f"Run of {d.get('date')} on a {m['cpus']}-core {m['model']} VM, kernel {m['kernel']}; "
        f"{d['seconds']} s per run, warm cache, 100 queries outstanding:",
        "",
        "| resolver | path | QPS | server CPU µs/query | CPU 0 µs/query | mean latency | lost | load generator's core busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in d["rows"]:
        label = LABELS.get(r["resolver"], r["resolver"])
        if r["resolver"] == "kresd" and r["path"] == "xdp":
            label, path = "Knot Resolver", "XDP (its own)"
        else:
            path = PATHS.get(r["path"], r["path"])
        mean = f"{r['mean_ms']} ms" if r.get("mean_ms") is not None else "—"
        core = f"{r['core_us_per_query']:.2f}" if r.get("core_us_per_query") is not None else "—"
        lost = r["lost"] if r.get("lost") is not None else "—"
        busy = f"{r['client_core_busy']:.0%}" if r.get("client_core_busy") is not None else "—"
        lines.append(f"| {label} | {path} | {qps(r)} | {cpu(r)} | {core} | {mean} | {lost} | {busy} |")
    lines.append("")
    peers = [r for r in d["rows"] if r["resolver"] not in ("onedot", "limit") and r.get("qps")]
    if not d.get("kresd_xdp"):
        why = d.get("kresd_xdp_error") or "see the run's log"
        lines.append(f"- Knot Resolver's XDP mode did not start in this set-up ({why}); its socket row stands.")
    for path in ("xdp", "xdp-generic"):
        ours = next((r for r in d["rows"] if r["resolver"] == "onedot" and r["path"] == path and r.get("qps")), None)
        if not ours or not peers:
            continue
        cpu_best = min(peers, key=lambda r: r["cpu_us_per_query"])
        core_best = min(peers, key=lambda r: r["core_us_per_query"])
        qps_best = max(peers, key=lambda r: r["qps"])
        lines.append(
            f"- onedot, {PATHS[path]}: server CPU {ours['cpu_us_per_query'] / cpu_best['cpu_us_per_query']:.2f} × "
            f"{LABELS[cpu_best['resolver']]}'s, CPU 0 {ours['core_us_per_query'] / core_best['core_us_per_query']:.2f} × "
            f"{LABELS[core_best['resolver']]}'s, QPS {ours['qps'] / qps_best['qps']:.2f} × {LABELS[qps_best['resolver']]}'s."
        )
    return "\n".join(lines)


def splice(text, begin, end, block):
    if begin not in text or end not in text:
        sys.exit(f"README.md has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def main():
    d = json.loads((ROOT / "bench/results/latest.json").read_text())
    block = render(d)
    cold = render_cold(json.loads((ROOT / "bench/results/cold.json").read_text()))
    xdp = render_xdp(json.loads((ROOT / "bench/results/xdp.json").read_text()))
    if "--print" in sys.argv:
        print(block)
        print()
        print(cold)
        print()
        print(xdp)
        return
    readme = ROOT / "README.md"
    text = splice(readme.read_text(), BEGIN, END, block)
    text = splice(text, COLD_BEGIN, COLD_END, cold)
    readme.write_text(splice(text, XDP_BEGIN, XDP_END, xdp))
    print("README.md: tables rewritten from bench/results/latest.json, cold.json and xdp.json")


if __name__ == "__main__":
    main()

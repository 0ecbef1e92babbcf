#!/usr/bin/env python3
"""Peer test: onedot resolving through real NSD authoritative servers.

    python3 nsd_lab.py --onedot PATH_TO_BINARY

Exports the lab's zones with `onedot lab --export DIR`, serves the zones of
every server whose behaviour is `normal` with NSD (one NSD instance per set
of addresses serving the same zones, on 127.53.x.y port 53), starts
`onedot serve` with the lab's root hints, and checks a handful of answers
through onedot, plus one question asked to NSD directly to prove NSD, not the
lab, is what answered.

Prints PASS/FAIL per check and then `N passed, M failed`. Exits 1 when a check
fails, 2 when the set-up fails.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Processes,
    assert_nothing_answers,
    first_part,
    follow_cnames,
    format_answer,
    free_port,
    install_sigterm_handler,
    log,
    query,
    rdatas,
    wait_for_dns,
    workdir,
)
from differential_unbound import (  # noqa: E402
    LAB_PORT,
    ROOT_HINTS,
    STARTUP_TIMEOUT_S,
    find_tool,
    onedot_config,
)

import dns.flags  # noqa: E402
import dns.name  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

NSD_IDENTITY = "onedot-peer-nsd"
EXPORT_TIMEOUT_S = 60


@dataclass
class Group:
    """Addresses that serve exactly the same zones: one NSD instance."""

    addresses: list[str]
    zones: list[tuple[str, str]]  # (zone name, file relative to the export dir)


def normalize_name(name: str) -> str:
    return dns.name.from_text(name).to_text().lower()


def load_groups(export_dir: Path) -> tuple[list[Group], list[dict]]:
    """Groups the `normal` servers of servers.json by their zone set.
    Returns (groups, all servers)."""
    servers = json.loads((export_dir / "servers.json").read_text())
    if not isinstance(servers, list):
        raise ValueError("servers.json is not a JSON list")
    by_zones: dict[frozenset, list[str]] = {}
    for s in servers:
        if s.get("behaviour") != "normal":
            continue
        zones = frozenset((normalize_name(z["name"]), z["file"]) for z in s.get("zones", []))
        if not zones:
            log(f"server {s['address']} is normal but serves no zone; skipped")
            continue
        by_zones.setdefault(zones, []).append(s["address"])
    groups = [
        Group(sorted(addrs, key=_addr_key), sorted(zones))
        for zones, addrs in by_zones.items()
    ]
    groups.sort(key=lambda g: _addr_key(g.addresses[0]))
    return groups, servers


def _addr_key(addr: str):
    return tuple(int(x) for x in addr.split(".")) if re.fullmatch(r"[0-9.]+", addr) else (999, addr)


def nsd_version() -> tuple[int, ...]:
    out = subprocess.run([find_tool("nsd"), "-v"], capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    m = re.search(r"NSD version (\d+)\.(\d+)\.(\d+)", text) or re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise RuntimeError(f"cannot read the NSD version from `nsd -v`: {text!r}")
    return tuple(int(x) for x in m.groups())


def nsd_config(
    group: Group, export_dir: Path, state_dir: Path, port: int, with_database: bool
) -> str:
    q = lambda p: '"' + str(p) + '"'  # noqa: E731
    server = [f"ip-address: {addr}" for addr in group.addresses]
    server += [
        f"port: {port}",
        "do-ip4: yes",
        "do-ip6: no",
        "server-count: 1",
        "reuseport: no",
        'username: ""',
        'chroot: ""',
        f"zonesdir: {q(export_dir)}",
        f"pidfile: {q(state_dir / 'nsd.pid')}",
    ]
    if with_database:
        server.append('database: ""')
    server += [
        f"xfrdfile: {q(state_dir / 'xfrd.state')}",
        f"zonelistfile: {q(state_dir / 'zone.list')}",
        f"xfrdir: {q(state_dir)}",
        f"logfile: {q(state_dir / 'nsd.log')}",
        "zonefiles-write: 0",
        "verbosity: 1",
        "hide-version: yes",
        "hide-identity: no",
        f"identity: {q(NSD_IDENTITY)}",
    ]
    text = "server:\n" + "".join(f"    {line}\n" for line in server)
    text += "remote-control:\n    control-enable: no\n"
    for name, zonefile in group.zones:
        text += f"zone:\n    name: {q(name)}\n    zonefile: {q(zonefile)}\n"
    return text


def write_checked_nsd_config(
    group: Group, export_dir: Path, state_dir: Path, port: int = LAB_PORT
) -> Path:
    """Writes nsd.conf and runs nsd-checkconf on it; if this NSD rejects
    `database: ""`, drops that line and checks again."""
    conf = state_dir / "nsd.conf"
    errors = []
    for with_database in (True, False):
        conf.write_text(nsd_config(group, export_dir, state_dir, port, with_database))
        r = subprocess.run(
            [find_tool("nsd-checkconf"), str(conf)], capture_output=True, text=True, timeout=60
        )
        if r.returncode == 0:
            if not with_database:
                log(f'this NSD rejects `database: ""`; {conf} goes without it')
            return conf
        errors.append(f"nsd-checkconf {conf} ({r.returncode}): {r.stdout}{r.stderr}")
    raise RuntimeError("\n".join(errors) + f"\n--- {conf}:\n{conf.read_text()}")


def check_zone(name: str, path: Path) -> None:
    """nsd-checkzone: NSD would otherwise skip a broken zone and keep going."""
    r = subprocess.run(
        [find_tool("nsd-checkzone"), name, str(path)], capture_output=True, text=True, timeout=60
    )
    if r.returncode != 0:
        raise RuntimeError(f"nsd-checkzone {name} {path} failed:\n{r.stdout}{r.stderr}")


# ------------------------------------------------------------------- checks


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def run(self, title: str, fn: Callable[[], str]) -> None:
        try:
            detail = fn()
        except AssertionError as e:
            self.failed += 1
            print(f"FAIL {title}: {e}")
        except Exception as e:  # timeouts, refused connections, bad answers
            self.failed += 1
            print(f"FAIL {title}: {type(e).__name__}: {e}")
        else:
            self.passed += 1
            print(f"PASS {title}" + (f": {detail}" if detail else ""))
        sys.stdout.flush()


def expect_rcode(msg, rcode: str) -> None:
    got = dns.rcode.to_text(msg.rcode())
    assert got == rcode, f"rcode {got}, expected {rcode}; answer {format_answer(msg)}"


def expect_exact(addr: str, port: int, qname: str, qtype: str, want: set[str]) -> Callable[[], str]:
    def check() -> str:
        msg, tcp = query(addr, port, qname, qtype)
        expect_rcode(msg, "NOERROR")
        got = rdatas(msg, qname, qtype)
        assert got == want, f"got {sorted(got)}, expected {sorted(want)}; answer {format_answer(msg)}"
        return format_answer(msg) + (" (over TCP)" if tcp else "")

    return check


def run_checks(onedot: tuple[str, int], nsd_direct: tuple[str, str] | None) -> Checks:
    addr, port = onedot
    checks = Checks()
    checks.run(
        "www.example.test A = 192.0.2.10",
        expect_exact(addr, port, "www.example.test.", "A", {"192.0.2.10"}),
    )

    def nxdomain() -> str:
        msg, _ = query(addr, port, "nope.example.test.", "A")
        expect_rcode(msg, "NXDOMAIN")
        return format_answer(msg)

    checks.run("nope.example.test A is NXDOMAIN", nxdomain)
    checks.run(
        "www.l4.l3.l2.l1.deep.test A = 192.0.2.44",
        expect_exact(addr, port, "www.l4.l3.l2.l1.deep.test.", "A", {"192.0.2.44"}),
    )

    def big_txt() -> str:
        msg, tcp = query(addr, port, "txt.big.test.", "TXT")
        expect_rcode(msg, "NOERROR")
        got = rdatas(msg, "txt.big.test.", "TXT")
        assert len(got) == 40, f"{len(got)} TXT records, expected 40; answer {format_answer(msg)}"
        return f"40 TXT records, {len(msg.to_wire())} bytes, client got them over {'TCP' if tcp else 'UDP'}"

    checks.run("txt.big.test TXT has 40 records", big_txt)

    def chain() -> str:
        msg, _ = query(addr, port, "c1.chain.test.", "A")
        expect_rcode(msg, "NOERROR")
        final, _owned = follow_cnames(msg, "c1.chain.test.")
        got = rdatas(msg, "c1.chain.test.", "A")
        assert "192.0.2.66" in got, (
            f"the CNAME chain from c1.chain.test ends at {final} with A {sorted(got)}, "
            f"expected 192.0.2.66; answer {format_answer(msg)}"
        )
        return f"chain ends at {final}: {format_answer(msg)}"

    checks.run("c1.chain.test A ends with 192.0.2.66", chain)
    checks.run(
        "www.glueless.test A = 192.0.2.50",
        expect_exact(addr, port, "www.glueless.test.", "A", {"192.0.2.50"}),
    )

    def direct() -> str:
        assert nsd_direct is not None, "no normal server in servers.json serves example.test."
        server, zone = nsd_direct
        msg, _ = query(server, LAB_PORT, zone, "SOA", rd=False)
        expect_rcode(msg, "NOERROR")
        assert msg.flags & dns.flags.AA, f"AA not set in {server}'s answer: {format_answer(msg)}"
        assert rdatas(msg, zone, "SOA"), f"no SOA for {zone} from {server}: {format_answer(msg)}"
        ident, _ = query(server, LAB_PORT, "id.server.", "TXT", rd=False, rdclass="CH")
        texts = {t.strip('"') for t in rdatas(ident, "id.server.", "TXT")}
        assert NSD_IDENTITY in texts, (
            f"{server} answered id.server CH TXT with {sorted(texts)}, not {NSD_IDENTITY!r}: "
            "something other than our NSD is answering"
        )
        return f"{server}#{LAB_PORT}: AA {format_answer(msg)}; id.server = {NSD_IDENTITY}"

    title = "NSD answers example.test. SOA directly, authoritatively"
    if nsd_direct:
        title = f"NSD at {nsd_direct[0]} answers {nsd_direct[1]} SOA directly, authoritatively"
    checks.run(title, direct)
    return checks


# --------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onedot", required=True, type=Path, help="path to the onedot binary")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    install_sigterm_handler()
    onedot_bin = args.onedot.resolve()
    if not onedot_bin.is_file():
        print(f"error: onedot binary {onedot_bin} does not exist", file=sys.stderr)
        return 2

    with workdir("onedot-nsd-", keep=args.keep) as wd, Processes(wd) as procs:
        try:
            version = nsd_version()
            log(f"NSD {'.'.join(map(str, version))}")

            export_dir = wd / "zones"
            export_dir.mkdir()
            r = subprocess.run(
                [str(onedot_bin), "lab", "--export", str(export_dir)],
                capture_output=True,
                text=True,
                timeout=EXPORT_TIMEOUT_S,
            )
            if r.returncode != 0:
                raise RuntimeError(
                    f"onedot lab --export failed ({r.returncode}):\n{r.stdout}{r.stderr}"
                )
            groups, _servers = load_groups(export_dir)
            if not groups:
                raise RuntimeError("servers.json lists no normal server with zones")

            nsd_direct = None
            for g in groups:
                for name, _ in g.zones:
                    if name == "example.test." and nsd_direct is None:
                        nsd_direct = (g.addresses[0], name)

            for addr in ROOT_HINTS:
                assert_nothing_answers(addr, LAB_PORT, timeout_s=0.3)

            checked = set()
            nsd = find_tool("nsd")
            for i, g in enumerate(groups):
                for name, zonefile in g.zones:
                    if (name, zonefile) not in checked:
                        check_zone(name, export_dir / zonefile)
                        checked.add((name, zonefile))
                state = wd / f"nsd-{i}"
                state.mkdir()
                conf = write_checked_nsd_config(g, export_dir, state)
                log(f"nsd-{i}: {', '.join(g.addresses)} serve {', '.join(n for n, _ in g.zones)}")
                procs.start(f"nsd-{i}", [nsd, "-d", "-c", conf], extra_logs=[state / "nsd.log"])
            for i, g in enumerate(groups):
                wait_for_dns(g.addresses[0], LAB_PORT, g.zones[0][0], STARTUP_TIMEOUT_S, procs)
            log(f"{len(groups)} NSD instances are up")

            onedot_port = free_port()
            onedot_conf = wd / "onedot.toml"
            onedot_conf.write_text(onedot_config(onedot_port))
            procs.start("onedot", [onedot_bin, "serve", "--config", onedot_conf])
            wait_for_dns("127.0.0.1", onedot_port, ".", STARTUP_TIMEOUT_S, procs)
            log("onedot is up")
        except Exception as e:
            print(f"error: set-up failed: {first_part(e)}", file=sys.stderr)
            procs.dump_logs()
            return 2

        checks = run_checks(("127.0.0.1", onedot_port), nsd_direct)
        try:
            procs.check_running()
        except RuntimeError as e:
            print(f"FAIL a process died during the checks: {e.args[0].splitlines()[0]}")
            checks.failed += 1
        print(f"{checks.passed} passed, {checks.failed} failed")
        sys.stdout.flush()
        if checks.failed:
            procs.dump_logs()
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Differential test: onedot against Unbound, both resolving through the lab.

    python3 differential_unbound.py --onedot PATH_TO_BINARY --questions PATH [--min 300]

Starts `onedot lab --port 53` (the simulated internet on 127.53.x.y:53),
`onedot serve` and an iterator-only Unbound, both recursing from the lab's
root servers 127.53.0.1 and 127.53.0.2. Asks both every question of the
questions file (lines `qname qtype`; `#` comments and blank lines ignored)
and compares, per question, the RCODE and the answer section as a set of
(owner, type, rdata), lowercased, TTL and order ignored.

Prints one line per mismatch and then `N passed, M failed`. Exits 1 when a
question fails (a mismatch not in ACCEPTED_DIFFERENCES, or no answer from
either side) or when fewer than --min questions were asked; 2 when the set-up
fails.
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    Processes,
    answer_set,
    assert_nothing_answers,
    first_part,
    format_answer,
    free_port,
    install_sigterm_handler,
    log,
    query,
    wait_for_dns,
    wait_for_line,
    workdir,
)

import dns.exception  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.rdatatype  # noqa: E402

# Differences that are expected, each with its reason:
#   ("www.example.test.", "A"): "why onedot and Unbound legitimately differ",
# Names are matched case-insensitively, with or without the trailing dot.
# These are reported but do not fail the test; a timeout still does.
ACCEPTED_DIFFERENCES: dict[tuple[str, str], str] = {}

ROOT_HINTS = ["127.53.0.1", "127.53.0.2"]
LAB_PORT = 53
QUERY_TIMEOUT_S = 5.0
QUERY_RETRIES = 1
STARTUP_TIMEOUT_S = 60.0

# Unbound's built-in locally served zones (unbound.conf(5), "default zones").
# onedot runs with answer_special_use_locally = false, so Unbound must recurse
# for these too instead of answering from its defaults.
UNBOUND_DEFAULT_ZONES = (
    ["localhost.", "127.in-addr.arpa.", "home.arpa.", "onion.", "test.", "invalid."]
    + ["1." + "0." * 31 + "ip6.arpa.", "0." * 32 + "ip6.arpa."]
    + ["10.in-addr.arpa.", "168.192.in-addr.arpa."]
    + [f"{i}.172.in-addr.arpa." for i in range(16, 32)]
    + [
        "0.in-addr.arpa.",
        "254.169.in-addr.arpa.",
        "2.0.192.in-addr.arpa.",
        "100.51.198.in-addr.arpa.",
        "113.0.203.in-addr.arpa.",
        "255.255.255.255.in-addr.arpa.",
    ]
    + [f"{i}.100.in-addr.arpa." for i in range(64, 128)]
    + ["d.f.ip6.arpa.", "8.e.f.ip6.arpa.", "9.e.f.ip6.arpa.", "a.e.f.ip6.arpa.", "b.e.f.ip6.arpa."]
    + ["8.b.d.0.1.0.0.2.ip6.arpa."]
)


def normalize_name(name: str) -> str:
    return dns.name.from_text(name).to_text().lower()


def normalize_key(qname: str, qtype: str) -> tuple[str, str]:
    return normalize_name(qname), dns.rdatatype.to_text(dns.rdatatype.from_text(qtype))


def accepted_differences() -> dict[tuple[str, str], str]:
    return {normalize_key(q, t): reason for (q, t), reason in ACCEPTED_DIFFERENCES.items()}


# ------------------------------------------------------------------ inputs


def load_questions(path: Path) -> list[tuple[str, str]]:
    """Lines `qname qtype`; `#` starts a comment; blank lines are ignored."""
    questions = []
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{lineno}: expected 'qname qtype', got {raw!r}")
        qname, qtype = fields
        try:
            questions.append(normalize_key(qname, qtype))
        except (dns.exception.DNSException, ValueError) as e:
            raise ValueError(f"{path}:{lineno}: {raw!r}: {e}") from None
    return questions


# ----------------------------------------------------------------- configs


# Set by --validate: both resolvers validate from the lab's root key and the
# AD bit is compared too.
VALIDATE = False


def onedot_config(listen_port: int, anchor_file: Optional[Path] = None) -> str:
    hints = ", ".join(f'"{h}"' for h in ROOT_HINTS)
    # Without the lab's key onedot cannot validate the lab (its default is to
    # validate from the IANA root anchors), so say so.
    dnssec = "[dnssec]\nvalidate = false\n"
    if anchor_file is not None:
        dnssec = (
            "[dnssec]\n"
            "validate = true\n"
            "builtin_root_anchor = false\n"
            f'trust_anchor_files = ["{anchor_file}"]\n'
        )
    return (
        "version = 1\n"
        "[web]\n"
        'listen = "127.0.0.1:0"\n'
        "[server]\n"
        f'listen = ["127.0.0.1:{listen_port}"]\n'
        "[resolver]\n"
        f"root_hints = [{hints}]\n"
        f"upstream_port = {LAB_PORT}\n"
        "do_not_query_localhost = false\n"
        "answer_special_use_locally = false\n"
    ) + dnssec


def unbound_root_hints() -> str:
    lines = [". 3600000 NS a.root-servers.test."]
    lines += [f". 3600000 NS {chr(ord('a') + i)}.root-servers.test." for i in range(1, len(ROOT_HINTS))]
    for i, addr in enumerate(ROOT_HINTS):
        lines.append(f"{chr(ord('a') + i)}.root-servers.test. 3600000 A {addr}")
    return "\n".join(lines) + "\n"


def non_loopback_ipv4_blocks() -> list[str]:
    """0.0.0.0/0 minus 127.0.0.0/8, as netblocks."""
    everything = ipaddress.ip_network("0.0.0.0/0")
    loopback = ipaddress.ip_network("127.0.0.0/8")
    return sorted(str(n) for n in everything.address_exclude(loopback))


def unbound_config(wd: Path, port: int, hints_file: Path, anchor_file: Optional[Path] = None) -> str:
    q = lambda p: '"' + str(p) + '"'  # noqa: E731
    server = [
        "num-threads: 1",
        "do-daemonize: no",
        'chroot: ""',
        'username: ""',
        f"directory: {q(wd)}",
        f"pidfile: {q(wd / 'unbound.pid')}",
        "use-syslog: no",
        'logfile: ""',
        "verbosity: 1",
        "log-time-ascii: yes",
        f"interface: 127.0.0.1@{port}",
        f"port: {port}",
        "interface-automatic: no",
        "do-ip4: yes",
        # The lab is IPv4 (127.53.x.y); never send DNS over IPv6.
        "do-ip6: no",
        "do-udp: yes",
        "do-tcp: yes",
        "so-reuseport: no",
        "access-control: 127.0.0.0/8 allow",
        "do-not-query-localhost: no",
        f"root-hints: {q(hints_file)}",
        'module-config: "validator iterator"' if anchor_file else 'module-config: "iterator"',
        "qname-minimisation: yes",
        "edns-buffer-size: 1232",
        "harden-referral-path: no",
        "prefetch: no",
        "minimal-responses: yes",
        "trust-anchor-signaling: no",
        "root-key-sentinel: no",
    ]
    if anchor_file is not None:
        # A fixed anchor file: no RFC 5011 probing, nothing fetched.
        server += [f"trust-anchor-file: {q(anchor_file)}", "val-log-level: 2"]
    # Never send DNS anywhere but 127.0.0.0/8, even if the lab hands out
    # glue outside it.
    server += [f"do-not-query-address: {block}" for block in non_loopback_ipv4_blocks()]
    server += [f'local-zone: "{zone}" nodefault' for zone in UNBOUND_DEFAULT_ZONES]
    text = "server:\n" + "".join(f"    {line}\n" for line in server)
    text += "remote-control:\n    control-enable: no\n"
    return text


def find_tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(
        name, path="/usr/sbin:/usr/local/sbin:/sbin:/usr/bin:/bin"
    )
    if not path:
        raise RuntimeError(f"{name} not found (scripts/test.sh installs it)")
    return path


def checkconf(tool: str, conf: Path) -> None:
    result = subprocess.run(
        [find_tool(tool), str(conf)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{tool} {conf} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n"
            f"--- {conf}:\n{conf.read_text()}"
        )


# ---------------------------------------------------------------- comparing


@dataclass
class Outcome:
    qname: str
    qtype: str
    onedot: Optional[dns.message.Message]
    unbound: Optional[dns.message.Message]
    onedot_error: Optional[str]
    unbound_error: Optional[str]
    verdict: str  # "match", "accepted", "mismatch", "timeout"
    reason: str = ""

    def line(self) -> str:
        def side(msg, err):
            return format_answer(msg) if err is None else f"<no answer: {err}>"

        head = {
            "mismatch": "MISMATCH",
            "accepted": "ACCEPTED",
            "timeout": "NO-ANSWER",
            "match": "MATCH",
        }[self.verdict]
        text = (
            f"{head} {self.qname} {self.qtype}: "
            f"onedot={side(self.onedot, self.onedot_error)} | "
            f"unbound={side(self.unbound, self.unbound_error)}"
        )
        if self.reason:
            text += f" (accepted: {self.reason})"
        return text


def ask(addr: str, port: int, qname: str, qtype: str):
    try:
        msg, _tcp = query(addr, port, qname, qtype, timeout_s=QUERY_TIMEOUT_S, retries=QUERY_RETRIES, ad=VALIDATE)
        return msg, None
    except Exception as e:  # timeouts, refused connections, malformed answers
        return None, f"{type(e).__name__}: {e}".strip()


def same(a: dns.message.Message, b: dns.message.Message) -> bool:
    if VALIDATE and bool(a.flags & dns.flags.AD) != bool(b.flags & dns.flags.AD):
        return False
    return a.rcode() == b.rcode() and answer_set(a) == answer_set(b)


def compare_one(
    qname: str,
    qtype: str,
    onedot: tuple[str, int],
    unbound: tuple[str, int],
    accepted: dict[tuple[str, str], str],
) -> Outcome:
    o_msg, o_err = ask(*onedot, qname, qtype)
    u_msg, u_err = ask(*unbound, qname, qtype)
    if o_msg is None or u_msg is None:
        verdict, reason = "timeout", ""
    elif same(o_msg, u_msg):
        verdict, reason = "match", ""
    elif (qname, qtype) in accepted:
        verdict, reason = "accepted", accepted[(qname, qtype)]
    else:
        verdict, reason = "mismatch", ""
    return Outcome(qname, qtype, o_msg, u_msg, o_err, u_err, verdict, reason)


def run_questions(
    questions: list[tuple[str, str]],
    onedot: tuple[str, int],
    unbound: tuple[str, int],
    jobs: int = 1,
) -> list[Outcome]:
    accepted = accepted_differences()
    done = 0
    lock = threading.Lock()

    def one(question):
        nonlocal done
        outcome = compare_one(question[0], question[1], onedot, unbound, accepted)
        with lock:
            done += 1
            if done % 50 == 0 or done == len(questions):
                log(f"{done}/{len(questions)} questions asked")
        return outcome

    if jobs <= 1:
        return [one(q) for q in questions]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, questions))


def report(outcomes: list[Outcome], minimum: int) -> int:
    """Prints the mismatches and the summary; returns the exit status."""
    passed = failed = 0
    for o in outcomes:
        if o.verdict in ("match", "accepted"):
            passed += 1
        else:
            failed += 1
        if o.verdict != "match":
            print(o.line())
    accepted = sum(1 for o in outcomes if o.verdict == "accepted")
    no_answer = sum(1 for o in outcomes if o.verdict == "timeout")
    print(
        f"asked {len(outcomes)} questions: {accepted} accepted differences, "
        f"{no_answer} without an answer from one side"
    )
    status = 0
    if len(outcomes) < minimum:
        print(f"FAIL: only {len(outcomes)} questions were asked; at least {minimum} are required")
        status = 1
    print(f"{passed} passed, {failed} failed")
    sys.stdout.flush()
    if failed:
        status = 1
    return status


# --------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onedot", required=True, type=Path, help="path to the onedot binary")
    p.add_argument("--questions", required=True, type=Path, help="questions file: 'qname qtype' per line")
    p.add_argument("--min", type=int, default=300, help="fail if fewer questions than this are asked")
    p.add_argument("--jobs", type=int, default=4, help="questions in flight at once (default 4)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    p.add_argument("--validate", action="store_true", help="both validate DNSSEC from the lab's root key; AD is compared")
    return p.parse_args(argv)


def main(argv=None) -> int:
    global VALIDATE
    args = parse_args(argv)
    VALIDATE = args.validate
    install_sigterm_handler()
    onedot_bin = args.onedot.resolve()
    if not onedot_bin.is_file():
        print(f"error: onedot binary {onedot_bin} does not exist", file=sys.stderr)
        return 2
    try:
        questions = load_questions(args.questions)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log(f"{len(questions)} questions from {args.questions}")

    with workdir("onedot-differential-", keep=args.keep) as wd, Processes(wd) as procs:
        try:
            for addr in ROOT_HINTS:
                assert_nothing_answers(addr, LAB_PORT)

            anchor = wd / "lab-root.key" if args.validate else None
            lab_cmd = [onedot_bin, "lab", "--port", str(LAB_PORT)]
            if anchor is not None:
                lab_cmd += ["--trust-anchor-out", anchor]
            lab = procs.start("lab", lab_cmd)
            wait_for_line(lab, "lab ready", STARTUP_TIMEOUT_S)

            onedot_port = free_port()
            onedot_conf = wd / "onedot.toml"
            onedot_conf.write_text(onedot_config(onedot_port, anchor))
            procs.start("onedot", [onedot_bin, "serve", "--config", onedot_conf])

            unbound_port = free_port()
            while unbound_port == onedot_port:
                unbound_port = free_port()
            hints = wd / "root.hints"
            hints.write_text(unbound_root_hints())
            unbound_conf = wd / "unbound.conf"
            unbound_conf.write_text(unbound_config(wd, unbound_port, hints, anchor))
            checkconf("unbound-checkconf", unbound_conf)
            procs.start("unbound", [find_tool("unbound"), "-d", "-c", unbound_conf])

            wait_for_dns("127.0.0.1", onedot_port, ".", STARTUP_TIMEOUT_S, procs)
            wait_for_dns("127.0.0.1", unbound_port, ".", STARTUP_TIMEOUT_S, procs)
            log("lab, onedot and unbound are up")
        except Exception as e:
            print(f"error: set-up failed: {first_part(e)}", file=sys.stderr)
            procs.dump_logs()
            return 2

        outcomes = run_questions(
            questions,
            ("127.0.0.1", onedot_port),
            ("127.0.0.1", unbound_port),
            jobs=args.jobs,
        )
        died = False
        try:
            procs.check_running()
        except RuntimeError as e:
            print(f"error: a process died during the run: {e.args[0].splitlines()[0]}")
            died = True
        status = report(outcomes, args.min)
        if died:
            status = 1
        if status != 0:
            procs.dump_logs()
        return status


if __name__ == "__main__":
    sys.exit(main())

"""Shared helpers for the peer tests (tests/peers/*.py).

Everything here talks DNS only to loopback addresses (127.0.0.0/8, ::1), and
stops only the processes it started itself, by PID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

try:
    import dns.edns
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.version
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write(
        "dnspython >= 2.6 is required: python3 -m pip install 'dnspython>=2.6' "
        "(scripts/test.sh installs it)\n"
    )
    raise

LOG_TAIL_LINES = 50
TERM_GRACE_S = 5.0
EDNS_PAYLOAD = 1232


def log(msg: str) -> None:
    """Progress message on stderr (stdout carries the results)."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def check_loopback(addr: str) -> None:
    """Refuses to send DNS anywhere but 127.0.0.0/8 or ::1."""
    import ipaddress

    if not ipaddress.ip_address(addr).is_loopback:
        raise ValueError(f"refusing to send DNS to non-loopback address {addr}")


def install_sigterm_handler() -> None:
    """Turns SIGTERM (e.g. nextest's timeout) into SystemExit so that the
    `Processes` context manager still stops what it started."""

    def _handler(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _handler)


# --------------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    """A port number that is free for both TCP and UDP on `host` right now."""
    for _ in range(200):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


# ----------------------------------------------------------------- processes


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    text = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen
    stdout_path: Path
    stderr_path: Path
    extra_logs: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def logs(self) -> list[Path]:
        return [self.stdout_path, self.stderr_path, *self.extra_logs]

    def describe_exit(self) -> str:
        rc = self.popen.poll()
        if rc is None:
            return f"{self.name} (pid {self.pid}) is running"
        if rc < 0:
            return f"{self.name} (pid {self.pid}) was killed by signal {-rc}"
        return f"{self.name} (pid {self.pid}) exited with status {rc}"

    def tail_text(self, lines: int = LOG_TAIL_LINES) -> str:
        out = [f"----- {self.describe_exit()}: {' '.join(self.argv)}"]
        for path in self.logs():
            out.append(f"----- last {lines} lines of {path}")
            out.append(tail(path, lines))
        return "\n".join(out)


class Processes:
    """Starts processes and, on leaving the `with` block (normally or through
    an exception), stops exactly those processes by PID: SIGTERM, then SIGKILL
    after 5 s. Their stdout/stderr go to log files in `workdir`."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.procs: list[Proc] = []

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        clean_exit = exc_type is None or (
            issubclass(exc_type, SystemExit) and exc is not None and exc.code in (0, None)
        )
        if not clean_exit and not issubclass(exc_type, KeyboardInterrupt):
            self.dump_logs()
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Optional[dict] = None,
        cwd: Optional[Path] = None,
        extra_logs: Iterable[Path] = (),
    ) -> Proc:
        argv = [str(a) for a in argv]
        stdout_path = self.workdir / f"{name}.stdout.log"
        stderr_path = self.workdir / f"{name}.stderr.log"
        full_env = dict(os.environ)
        full_env.setdefault("RUST_BACKTRACE", "1")
        if env:
            full_env.update(env)
        log(f"starting {name}: {' '.join(argv)}")
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=full_env,
                cwd=str(cwd) if cwd else None,
                close_fds=True,
            )
        proc = Proc(name, argv, popen, stdout_path, stderr_path, list(extra_logs))
        self.procs.append(proc)
        log(f"{name} has pid {proc.pid}")
        return proc

    def stop(self, proc: Proc) -> None:
        # Popen.send_signal() is a no-op once the child has been reaped, so a
        # recycled PID is never signalled.
        if proc.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(signal.SIGTERM)
        try:
            proc.popen.wait(timeout=TERM_GRACE_S)
        except subprocess.TimeoutExpired:
            log(f"{proc.name} (pid {proc.pid}) ignored SIGTERM for {TERM_GRACE_S:.0f} s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                proc.popen.kill()
            proc.popen.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except Exception as e:  # keep stopping the others
                log(f"could not stop {proc.name} (pid {proc.pid}): {e}")

    def check_running(self) -> None:
        """Raises if any started process has already exited."""
        for proc in self.procs:
            if not proc.running():
                raise RuntimeError(f"{proc.describe_exit()}\n{proc.tail_text()}")

    def dump_logs(self, lines: int = LOG_TAIL_LINES) -> None:
        for proc in self.procs:
            sys.stderr.write(proc.tail_text(lines) + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temporary directory, removed afterwards unless `keep` (or the
    environment variable ONEDOT_PEERS_KEEP=1) asks to keep it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    keep = keep or os.environ.get("ONEDOT_PEERS_KEEP") == "1"
    try:
        yield path
    finally:
        if keep:
            log(f"kept work directory {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def wait_for_line(proc: Proc, line: str, timeout_s: float) -> None:
    """Waits until `proc` has printed `line` (a whole line) on stdout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            text = proc.stdout_path.read_text(errors="replace")
        except OSError:
            text = ""
        if any(l.strip() == line for l in text.splitlines()):
            return
        if not proc.running():
            raise RuntimeError(
                f"{proc.describe_exit()} before printing {line!r}\n{proc.tail_text()}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{proc.name} did not print {line!r} within {timeout_s:.0f} s\n{proc.tail_text()}"
            )
        time.sleep(0.05)


# ----------------------------------------------------------------------- DNS


def make_query(
    qname: str, qtype: str, rd: bool = True, rdclass: str = "IN", ad: bool = False
) -> dns.message.Message:
    """A query with RD set (unless rd=False) and EDNS0, payload 1232; with
    ad=True the AD bit asks for the validation status (RFC 6840 §5.7)."""
    q = dns.message.make_query(
        qname,
        dns.rdatatype.from_text(qtype),
        rdclass=dns.rdataclass.from_text(rdclass),
        use_edns=0,
        payload=EDNS_PAYLOAD,
    )
    if not rd:
        q.flags &= ~dns.flags.RD
    if ad:
        q.flags |= dns.flags.AD
    return q


def query(
    addr: str,
    port: int,
    qname: str,
    qtype: str,
    timeout_s: float = 5.0,
    retries: int = 1,
    rd: bool = True,
    rdclass: str = "IN",
    ad: bool = False,
) -> tuple[dns.message.Message, bool]:
    """One question over UDP, falling back to TCP when TC is set; `retries`
    more attempts after a timeout. Returns (response, used_tcp)."""
    check_loopback(addr)
    last: Optional[Exception] = None
    for _ in range(retries + 1):
        q = make_query(qname, qtype, rd=rd, rdclass=rdclass, ad=ad)
        try:
            return dns.query.udp_with_fallback(q, addr, timeout=timeout_s, port=port)
        except (dns.exception.Timeout, OSError, EOFError) as e:
            last = e
    assert last is not None
    raise last


def wait_for_dns(
    addr: str,
    port: int,
    qname: str,
    timeout_s: float,
    procs: Optional[Processes] = None,
    qtype: str = "SOA",
) -> dns.message.Message:
    """Polls `addr`:`port` with UDP queries until any response arrives.
    Raises (with the tail of the process logs) on timeout or if one of
    `procs` has exited meanwhile."""
    check_loopback(addr)
    deadline = time.monotonic() + timeout_s
    last_error: Optional[Exception] = None
    while time.monotonic() < deadline:
        if procs is not None:
            try:
                procs.check_running()
            except RuntimeError as e:
                raise RuntimeError(f"while waiting for DNS at {addr}#{port}: {e}") from None
        try:
            q = make_query(qname, qtype)
            remaining = deadline - time.monotonic()
            return dns.query.udp(q, addr, port=port, timeout=max(0.1, min(1.0, remaining)))
        except (dns.exception.DNSException, OSError) as e:
            last_error = e
            time.sleep(0.1)
    logs = ""
    if procs is not None:
        logs = "\n" + "\n".join(p.tail_text() for p in procs.procs)
    raise RuntimeError(
        f"no DNS response from {addr}#{port} for {qname} {qtype} within "
        f"{timeout_s:.0f} s (last error: {last_error!r}){logs}"
    )


def assert_nothing_answers(addr: str, port: int = 53, timeout_s: float = 0.5) -> None:
    """Raises if something already answers DNS at addr:port (e.g. a lab left
    over from another run)."""
    check_loopback(addr)
    try:
        dns.query.udp(make_query(".", "SOA"), addr, port=port, timeout=timeout_s)
    except (dns.exception.DNSException, OSError):
        return
    raise RuntimeError(
        f"something already answers DNS at {addr}#{port}; is another lab, NSD "
        "or peer test still running?"
    )


def first_part(e: BaseException) -> str:
    """An error message without the log tails embedded in it (those are
    dumped separately)."""
    return str(e).split("\n----- ", 1)[0]


def answer_set(msg: dns.message.Message) -> set[tuple[str, str, str]]:
    """The answer section as a set of (owner, type, rdata), lowercased, TTL
    and order ignored."""
    out = set()
    for rrset in msg.answer:
        owner = rrset.name.to_text().lower()
        rtype = dns.rdatatype.to_text(rrset.rdtype)
        for rd in rrset:
            out.add((owner, rtype, rd.to_text().lower()))
    return out


def format_answer(msg: Optional[dns.message.Message]) -> str:
    if msg is None:
        return "<no response>"
    rcode = dns.rcode.to_text(msg.rcode())
    rrs = sorted(answer_set(msg))
    body = "; ".join(f"{o} {t} {r}" for o, t, r in rrs)
    return f"{rcode} [{body}]"


def follow_cnames(msg: dns.message.Message, qname: str) -> tuple[str, list]:
    """Follows the CNAME chain from `qname` through the answer section.
    Returns (final owner name, [rrsets owned by it])."""
    name = dns.name.from_text(qname)
    seen = set()
    while name not in seen:
        seen.add(name)
        owned = [r for r in msg.answer if r.name == name]
        cname = [r for r in owned if r.rdtype == dns.rdatatype.CNAME]
        if not cname:
            return name.to_text(), owned
        name = cname[0][0].target
    return name.to_text(), []  # CNAME loop


def rdatas(msg: dns.message.Message, qname: str, qtype: str) -> set[str]:
    """Rdata texts of type `qtype` at the end of the CNAME chain from qname."""
    want = dns.rdatatype.from_text(qtype)
    _, owned = follow_cnames(msg, qname)
    return {rd.to_text() for r in owned if r.rdtype == want for rd in r}

"""What every fault case needs: the real daemon on a fake node, and the four audits.

The audits are the promises of issue 5, measured the same way for every fault:
- lines lost: each node numbers its lines and records the last number it printed
  (`<seqdir>/<pid>.seq`); every number up to it must be in trainer.log or a rotated
  copy, for every run, killed runs included;
- orphans: no process naming this test's directory survives swarmd;
- duplicate trainers: a sampler thread counts live trainers of this identity (the
  `--identity` tag on their command line) every 0.1 s; the maximum must be 1;
- the logged reason: read from monitor.log like an operator would.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.daemon import Daemon, write_config

NODE = Path(__file__).resolve().parent / "node.py"
_SEQ = re.compile(rb"node (\d+) seq (\d+)")
_SAMPLE_EVERY = 0.1


def node_argv(tmp: Path, *extra: str, heartbeat: bool = True, rate: float = 10.0) -> list[str]:
    """The fake node's command for this test's directory (its identity tag)."""
    argv = [sys.executable, str(NODE), "--identity", str(tmp), "--seqdir", str(tmp / "seq"), "--rate", str(rate)]
    if heartbeat:
        argv += ["--heartbeat", str(tmp / "state" / "trainer.json")]
    return argv + list(extra)


def ts(event: dict[str, Any]) -> float:
    """monitor.log's ISO UTC `ts` as epoch seconds."""
    return dt.datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


class TrainerSampler(threading.Thread):
    """Counts live trainer processes of one identity, at most one at any moment."""

    def __init__(self, identity: str) -> None:
        super().__init__(name="trainer-sampler", daemon=True)
        self._identity = identity
        self._stop_flag = threading.Event()
        self.max_seen = 0
        self.samples = 0

    def _count(self) -> int:
        n = 0
        for proc in psutil.process_iter(["cmdline", "status"]):
            cmd = proc.info["cmdline"] or []
            if proc.info["status"] == psutil.STATUS_ZOMBIE or str(NODE) not in cmd or "--as-p2pd" in cmd:
                continue
            if self._identity in cmd:
                n += 1
        return n

    def run(self) -> None:
        while not self._stop_flag.wait(_SAMPLE_EVERY):
            self.max_seen = max(self.max_seen, self._count())
            self.samples += 1

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(5)


def lines_lost(logs: Path, seqdir: Path, since: dict[int, int] | None = None) -> tuple[int, int]:
    """(lines missing from trainer.log*, lines checked) over every run of the node;
    `since` {pid: n} checks only that run's lines after number n."""
    seen: dict[int, set[int]] = {}
    for f in sorted(logs.glob("trainer.log*")):
        for pid, n in _SEQ.findall(f.read_bytes()):
            seen.setdefault(int(pid), set()).add(int(n))
    missing = checked = 0
    for seq in seqdir.glob("*.seq"):
        pid = int(seq.stem)
        try:
            last = int(seq.read_text())
        except ValueError:
            continue
        got = seen.get(pid, set())
        top = max(last, max(got, default=-1))
        first = (since or {}).get(pid, -1) + 1
        checked += max(0, top + 1 - first)
        missing += sum(1 for i in range(first, top + 1) if i not in got)
    return missing, checked


def leftovers(marker: str) -> list[psutil.Process]:
    """Live processes whose command line names `marker` (this test's directory)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in part for part in cmd):
            found.append(proc)
    return found


def p2pd_listen_sockets(cmdline: list[str]) -> list[str]:
    """The unix sockets a p2pd command line listens on (none for any other command)."""
    if not cmdline or Path(cmdline[0]).name != "p2pd":
        return []
    return [a.removeprefix("-listen=/unix") for a in cmdline if a.startswith("-listen=/unix/")]


def tree_pids(root: int | None) -> set[int]:
    """`root` and its descendants now (empty if it is gone)."""
    if root is None:
        return set()
    try:
        proc = psutil.Process(root)
        return {root, *(c.pid for c in proc.children(recursive=True))}
    except psutil.Error:
        return set()


_STRANGER = """
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1].removeprefix("-listen=/unix"))
s.listen(4)
print("ready", flush=True)
time.sleep(600)
"""


_PARENT = "import subprocess, sys; subprocess.run(sys.argv[1:], check=False)"


@contextlib.contextmanager
def fake_p2pd(*, under_a_parent: bool = False) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A hivemind-style daemon: a process named `p2pd` listening on
    `/tmp/hivemind-p2pd-<n>.sock`, naming nothing of any test's directory; yields its
    socket and the process started (with `under_a_parent`, a parent that runs it)."""
    home = Path(tempfile.mkdtemp(prefix="p2pd-"))
    link = home / "p2pd"
    link.symlink_to(Path(sys.executable).resolve())
    sock = Path(f"/tmp/hivemind-p2pd-{os.getpid()}-{home.name[-8:]}.sock")
    argv = [str(link), "-c", _STRANGER, f"-listen=/unix{sock}", f"-id={home / 'swarm.pem'}"]
    if under_a_parent:
        argv = [sys.executable, "-c", _PARENT, *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", "the fake p2pd did not start"
        yield sock, proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            with contextlib.suppress(psutil.Error):
                child.kill()
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        sock.unlink(missing_ok=True)
        shutil.rmtree(home, ignore_errors=True)


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.05)


@dataclass
class Report:
    """One fault's figures (the fault table's row) and its audits."""

    fault: str
    detection_s: float | None = None
    recovery_s: float | None = None
    lines_lost: int = 0
    lines_checked: int = 0
    orphans: int = 0
    max_trainers: int = 0
    exit_code: int | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Fault:
    """One daemon under test plus its audits; `finish()` stops it and fills the report."""

    def __init__(self, tmp: Path, name: str) -> None:
        self.tmp = tmp
        self.report = Report(name)
        (tmp / "seq").mkdir(exist_ok=True)
        self.sampler = TrainerSampler(str(tmp))
        self.daemon: Daemon | None = None
        self.inject_at = 0.0

    @property
    def d(self) -> Daemon:
        assert self.daemon is not None, "start() first"
        return self.daemon

    def start(self, argv: list[str], *, restart: str = "", health: str = "", extra: str = "", logs: str = "") -> Daemon:
        """`logs` adds keys to [logs]; `extra` adds whole sections at the end."""
        cfg = write_config(self.tmp, argv, extra=extra, restart=restart, health=health)
        if logs:
            cfg.write_text(cfg.read_text().replace("console = false", "console = false\n" + logs, 1))
        self.daemon = Daemon(self.tmp, cfg)
        self.sampler.start()
        return self.daemon

    def started(self, count: int = 1, timeout: float = 20.0) -> dict[str, Any]:
        return self.d.wait_event(lambda e: e.get("event") == "child_started", timeout, count)

    def running(self, count: int = 1, timeout: float = 20.0) -> dict[str, Any]:
        return self.d.state("running", timeout, count)

    def inject(self) -> None:
        """Mark the moment of the fault (wall clock, as monitor.log's `ts`)."""
        self.inject_at = time.time()

    def detected(self, event: dict[str, Any]) -> None:
        self.report.detection_s = round(ts(event) - self.inject_at, 3)

    def recovered(self, event: dict[str, Any]) -> None:
        self.report.recovery_s = round(ts(event) - self.inject_at, 3)

    def events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [e for e in self.d.events() if e.get("event") == name and all(e.get(k) == v for k, v in match.items())]

    def last_seq(self, pid: int) -> int:
        """The number of the last line `pid` has printed so far."""
        return int((self.tmp / "seq" / f"{pid}.seq").read_text())

    def finish(self, stop: bool = True, since: dict[int, int] | None = None) -> Report:
        """SIGTERM swarmd (unless it already exited), then run the audits."""
        d = self.d
        if stop and d.proc.poll() is None:
            d.signal(signal.SIGTERM)
        self.report.exit_code = d.wait_exit(20)
        self.sampler.stop()
        self.report.max_trainers = self.sampler.max_seen
        self.report.lines_lost, self.report.lines_checked = lines_lost(self.tmp / "logs", self.tmp / "seq", since)
        # An orphan may take a moment to die after its last signal: bounded grace.
        deadline = time.monotonic() + 3
        while leftovers(str(self.tmp)) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.report.orphans = len(leftovers(str(self.tmp)))
        return self.report

    def close(self) -> None:
        """Teardown: never leave a process behind, whatever the test did."""
        if self.daemon is not None:
            self.daemon.close()
        if self.sampler.is_alive():
            self.sampler.stop()
        for proc in leftovers(str(self.tmp)):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
                proc.kill()


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def send(pid: int, sig: int) -> None:
    os.kill(pid, sig)

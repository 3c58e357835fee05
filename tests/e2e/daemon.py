"""Run the real `python -m swarmd run` in a temp dir and watch its monitor.log.

Like honcho's integration tests, the daemon under test is the installed CLI in a
child process; like circus's `poll_for`, every wait is bounded and says what it saw.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from swarmd.control import request
from swarmd.errors import SwarmdError

REPO = Path(__file__).resolve().parents[2]
FAKES = REPO / "tests" / "fakes"


def fake(name: str, *args: str) -> list[str]:
    return [sys.executable, str(FAKES / f"{name}.py"), *args]


def toml_list(argv: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(a, ensure_ascii=False) for a in argv) + "]"


def config_head(argv: Sequence[str]) -> str:
    """How every test and benchmark config starts: the trainer, run in the config's
    directory, and the start of [logs] (files under logs/ there)."""
    return (
        'state_dir = "state"\n'
        "[trainer]\n"
        f"command = {toml_list(argv)}\n"
        'cwd = "."\n'
        "stop_timeout = 2\n"
        "[logs]\n"
        'dir = "logs"\n'
    )


def write_config(tmp: Path, argv: Sequence[str], extra: str = "", restart: str = "", health: str = "") -> Path:
    """A monitor.toml for tests: fast back-off, small logs, no console."""
    text = f"""
{config_head(argv)}max_bytes = 1048576
keep = 50
compress = false
console = false
[restart]
initial_delay = 0.2
max_delay = 2
jitter = 0
min_interval = 0.1
{restart}
[health]
{health}
{extra}
"""
    path = tmp / "monitor.toml"
    path.write_text(text)
    return path


NOTIFY_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def daemon_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without systemd's notify variables (a runner started by systemd
    must not make the daemon under test talk to the runner's manager), plus `env`."""
    out = {k: v for k, v in os.environ.items() if k not in NOTIFY_VARS}
    out.update(env or {})
    return out


def swarmd_run(config: Path, wrap: Sequence[str] = ()) -> list[str]:
    """argv of the real daemon on `config`; `wrap` prefixes it (e.g. a shell that execs)."""
    return [*wrap, sys.executable, "-m", "swarmd", "run", "--config", str(config), "--no-console"]


class Daemon:
    """`env` is added to the daemon's environment (e.g. the NOTIFY_SOCKET / WATCHDOG_USEC
    systemd would set); `wrap` prefixes its command line (e.g. a shell that execs it)."""

    def __init__(
        self,
        tmp: Path,
        config: Path,
        env: Mapping[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        self.tmp = tmp
        self.config = config
        self.monitor_log = tmp / "logs" / "monitor.log"
        self.trainer_log = tmp / "logs" / "trainer.log"
        self.stderr_path = tmp / "swarmd.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self.proc = subprocess.Popen(
            swarmd_run(config, wrap),
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,
            env=daemon_env({"PYTHONUNBUFFERED": "1", **(env or {})}),
        )
        self.ps = psutil.Process(self.proc.pid)

    def events(self) -> list[dict[str, Any]]:
        try:
            raw = self.monitor_log.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in raw.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def wait_event(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0, count: int = 1) -> dict[str, Any]:
        """Wait for the count-th event matching `pred`; fail early if the daemon died."""
        deadline = time.monotonic() + timeout
        while True:
            exited = self.proc.poll() is not None
            hits = [e for e in self.events() if pred(e)]
            if len(hits) >= count:
                return hits[count - 1]
            if exited or time.monotonic() > deadline:
                tail = [f"{e.get('event')} {e.get('to', '')} {e.get('reason', '')}" for e in self.events()[-15:]]
                raise AssertionError(
                    f"event not seen within {timeout}s (daemon rc={self.proc.poll()}); last events: {tail}; "
                    f"stderr: {self.stderr_path.read_text(errors='replace')[-1500:]}"
                )
            time.sleep(0.05)

    def state(self, to: str, timeout: float = 20.0, count: int = 1) -> dict[str, Any]:
        return self.wait_event(lambda e: e.get("event") == "state_changed" and e.get("to") == to, timeout, count)

    def trainer_pids(self) -> list[int]:
        try:
            return [c.pid for c in self.ps.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"swarmd did not exit within {timeout}s; events: {[e.get('event') for e in self.events()[-10:]]}") from None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._stderr.close()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def watched_p2pd(d: Daemon, timeout: float = 150.0) -> psutil.Process:
    """The node's p2pd once `swarmd status` says it answers."""
    deadline = time.monotonic() + timeout
    dht: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(SwarmdError):
            dht = request(d.tmp / "state" / "swarmd.sock", "status").get("status", {}).get("dht") or {}
        if dht.get("p2pd_alive") is True:
            return psutil.Process(dht["p2pd_pid"])
        time.sleep(0.2)
    raise AssertionError(f"swarmd never saw a live p2pd within {timeout}s; last: {dht}")

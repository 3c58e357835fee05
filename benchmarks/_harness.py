"""Shared by the benchmarks: start the real `swarmd run` on a temp config and read
its monitor.log. Standard library + psutil only, like the daemon itself."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def toml_list(argv: Sequence[str]) -> str:
    return "[" + ", ".join(json.dumps(a, ensure_ascii=False) for a in argv) + "]"


def iso_to_epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class Swarmd:
    def __init__(self, argv: Sequence[str], restart: str = "", logs: str = "") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="swarmd-bench-")
        self.dir = Path(self._tmp.name)
        cfg = self.dir / "monitor.toml"
        cfg.write_text(
            f"""
state_dir = "state"
[trainer]
command = {toml_list(argv)}
cwd = "."
stop_timeout = 2
[logs]
dir = "logs"
console = false
compress = false
{logs}
[restart]
jitter = 0
{restart}
"""
        )
        self.monitor_log = self.dir / "logs" / "monitor.log"
        env = {**os.environ}
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swarmd", "run", "--config", str(cfg), "--no-console"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )

    def events(self) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.monitor_log.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def wait(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            evs = self.events()
            if pred(evs):
                return evs
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"benchmark: condition not met within {timeout}s; swarmd rc={self.proc.poll()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._tmp.cleanup()


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]

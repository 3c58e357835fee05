"""Shared by the benchmarks: start the real `swarmd run` on a temp config and read
its monitor.log. Standard library + psutil only, like the daemon itself; the argv,
environment and TOML quoting are tests/e2e/daemon.py's, so tests and benchmarks run
the daemon the same way."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.daemon import config_head, daemon_env, swarmd_run  # noqa: E402


def write_config(directory: Path, argv: Sequence[str], tail: str = "") -> Path:
    """monitor.toml in `directory`: the trainer, and logs to files only, uncompressed (so
    benchmarks can read them), then `tail` (more [logs] keys, [restart], [health] ...)."""
    cfg = directory / "monitor.toml"
    cfg.write_text(
        f"""
{config_head(argv)}console = false
compress = false
{tail}"""
    )
    return cfg


def start(cfg: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The real daemon on `cfg`, in its own session, output discarded; `env` is added to
    ours (minus systemd's notify variables)."""
    return subprocess.Popen(
        swarmd_run(cfg),
        cwd=cfg.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=daemon_env(env),
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to the whole session if it has not exited within 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def iso_to_epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class Swarmd:
    def __init__(self, argv: Sequence[str], restart: str = "", logs: str = "") -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="swarmd-bench-")
        self.dir = Path(self._tmp.name)
        cfg = write_config(self.dir, argv, f"{logs}\n[restart]\njitter = 0\n{restart}\n")
        self.monitor_log = self.dir / "logs" / "monitor.log"
        self.proc = start(cfg)

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
        stop(self.proc)
        self._tmp.cleanup()


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]

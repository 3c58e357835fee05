"""`swarmd tail` against a real monitor.log: history first, then new lines through the
daemon's own FileFollower, across a rotation."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PipeReader

pytestmark = pytest.mark.io


def event(name: str) -> str:
    return json.dumps({"event": name, "level": "info", "ts": "2026-12-02T07:00:00.000000Z"})


def test_tail_prints_history_then_follows_across_a_rotation(tmp_path: Path) -> None:
    """The last -n complete lines, then a line completed later, new lines, and the
    lines of the file that replaced a rotated one; nothing twice."""
    cfg = tmp_path / "monitor.toml"
    cfg.write_text('[trainer]\ncommand = ["true"]\n[logs]\ndir = "logs"\n')
    log = tmp_path / "logs" / "monitor.log"
    log.parent.mkdir()
    log.write_text("\n".join(event(n) for n in ("old_one", "old_two", "old_three")) + "\n" + event("half")[:20])
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarmd", "tail", "-c", str(cfg), "-n", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert proc.stdout is not None
    out = PipeReader(proc.stdout.fileno())
    try:
        out.wait_for(b"old_three", timeout=60)  # a loaded machine starts Python slowly
        with log.open("a") as fh:
            fh.write(event("half")[20:] + "\n" + event("appended") + "\n")
        out.wait_for(b"appended")
        log.rename(log.with_name("monitor.log.1"))
        log.write_text(event("after_rotation") + "\n")
        text = out.wait_for(b"after_rotation").decode()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()
    shown = [line.split()[2] for line in text.splitlines()]
    assert shown == ["old_two", "old_three", "half", "appended", "after_rotation"], text

"""One identity, one node, host-wide, with the real `swarmd run`: a second daemon for
the same swarm.pem (another config, another state_dir) refuses to start and names the
first; a log file two daemons follow is warned about by the second."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon, fake, write_config

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.close()


def node_dir(tmp_path: Path, name: str, pem: Path, extra: str = "") -> Path:
    """A config of its own (own state_dir, logs) on the shared identity `pem`."""
    home = tmp_path / name
    home.mkdir()
    identity = f'[identity]\npath = "{pem}"\nlock_dir = "{tmp_path / "locks"}"\n'
    return write_config(home, fake("hang"), extra=identity + extra)


def test_a_second_swarmd_for_the_same_identity_refuses_naming_the_first(tmp_path: Path, daemons: list[Daemon]) -> None:
    pem = tmp_path / "swarm.pem"
    pem.write_bytes(b"\x08\x00\x12" + os.urandom(64))
    first_cfg = node_dir(tmp_path, "a", pem)
    first = Daemon(first_cfg.parent, first_cfg)
    daemons.append(first)
    first.wait_event(lambda e: e.get("event") == "child_started")
    second_cfg = node_dir(tmp_path, "b", pem)
    out = subprocess.run(
        [sys.executable, "-m", "swarmd", "run", "--config", str(second_cfg), "--no-console"],
        capture_output=True, text=True, timeout=60, cwd=second_cfg.parent,
    )
    assert out.returncode == 3
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"swarmd pid {first.proc.pid} (config {first_cfg})" in lines[0]
    assert str(pem) in lines[0]
    assert not (second_cfg.parent / "logs" / "trainer.log").exists()  # no second node ever started
    assert first.proc.poll() is None


def test_a_log_followed_by_two_daemons_is_warned_about_naming_both(tmp_path: Path, daemons: list[Daemon]) -> None:
    shared = tmp_path / "swarm_launcher.log"
    shared.touch()
    started = []
    for name in ("a", "b"):
        pem = tmp_path / f"{name}.pem"
        pem.write_bytes(os.urandom(32))
        cfg = node_dir(tmp_path, name, pem)
        text = cfg.read_text().replace('dir = "logs"\n', f'dir = "logs"\nfollow = ["{shared}"]\n', 1)
        cfg.write_text(text)
        d = Daemon(cfg.parent, cfg)
        daemons.append(d)
        d.wait_event(lambda e: e.get("event") == "child_started")
        started.append((d, cfg))
    (first, first_cfg), (second, second_cfg) = started
    warning = second.wait_event(lambda e: e.get("event") == "followed_log_shared")
    assert warning["path"] == str(shared)
    assert warning["other_swarmd"] == first.proc.pid
    assert warning["other_config"] == str(first_cfg)
    assert warning["swarmd"] == second.proc.pid
    assert warning["config"] == str(second_cfg)
    assert not [e for e in first.events() if e.get("event") == "followed_log_shared"]

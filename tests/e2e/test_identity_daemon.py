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

from tests.e2e.daemon import Daemon, fake, watched_p2pd, write_config

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


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_key_p2pd_runs_with_is_locked_even_when_no_config_names_it(tmp_path: Path, daemons: list[Daemon]) -> None:
    """Nothing in either config names the swarm.pem; both nodes pass it to hivemind
    themselves. The first daemon locks it when it sees p2pd's `-id=`; the second gives
    up (fatal, its node stopped) naming the first, instead of running a twin."""
    pytest.importorskip("hivemind", reason="needs hivemind (the trainer extra) for a real p2pd")
    pem = tmp_path / "swarm.pem"
    gen = "import sys; from hivemind.p2p import P2P; P2P.generate_identity(sys.argv[1])"
    subprocess.run([sys.executable, "-c", gen, str(pem)], check=True, timeout=120)
    started = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        extra = f'[identity]\nlock_dir = "{tmp_path / "locks"}"\n'
        cfg = write_config(home, fake("dht_node", "--identity", str(pem)), extra=extra, restart="on_fatal = \"wait\"")
        d = Daemon(home, cfg)
        daemons.append(d)
        started.append((d, cfg))
        if name == "a":
            watched_p2pd(d)
    (first, first_cfg), (second, _) = started
    fatal = second.wait_event(lambda e: e.get("event") == "state_changed" and e.get("to") == "fatal", 120)
    assert fatal["reason"] == "identity_taken"
    assert f"swarmd pid {first.proc.pid} (config {first_cfg})" in fatal["evidence"]
    second.wait_event(lambda e: e.get("event") == "child_down", 30)
    assert first.proc.poll() is None
    assert not [e for e in first.events() if e.get("event") == "decision"]

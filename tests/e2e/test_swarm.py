"""A real 3-peer swarm on loopback: separate `python -m trainer` processes, real p2pd,
the real GRPOLearner on the tiny model. Peers find each other through the first peer's
address file, exchange rollouts and train on them; a peer killed with -9 (only its main
process: its DHT child and p2pd are orphaned, the hard case) comes back with the same
peer id and resumes from its checkpoint; a peer started late joins the current round."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from swarmd.heartbeat import read_heartbeat

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.swarm, pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(240)]

FINISHED = re.compile(r"📉 Finished training round: (\d+) stage: \d+ reward=\S+ external=(\d+)")
JOINING = re.compile(r"🐝 Joining round: (\d+) starting at stage")
HELLO = re.compile(r"🐱 Hello 🐈 \[[^\]]+\] 🦮 \[(\w+)\]!")


def _wait(pred: Callable[[], object], timeout: float, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s; saw: {describe()}")
        time.sleep(0.5)


class Peer:
    """One node process in its own session (as swarmd runs it), stdout to a file."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.state = root / name
        self.state.mkdir(parents=True, exist_ok=True)
        self.config = root / "trainer.toml"
        self.log = self.state / "stdout.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.offset = 0  # where the current incarnation's output starts

    def start(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "trainer", "--config", str(self.config),
                 "--override", f'state_dir="{self.state}"', "--override", f"seed={ord(self.name[0])}"],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True)

    def text(self) -> str:
        return self.log.read_bytes()[self.offset:].decode("utf-8", "replace")

    def finished(self) -> list[tuple[int, int]]:
        return [(int(r), int(e)) for r, e in FINISHED.findall(self.text())]

    def tail(self) -> str:
        return f"{self.name}: ...{self.text()[-1500:]}"

    def kill_group(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)


def _trained_with_peers(p: Peer, rounds: int, after: int = -1) -> Callable[[], bool]:
    """True once `p` finished `rounds` rounds after round `after` using >= 1 peer rollout."""
    return lambda: sum(1 for r, e in p.finished() if r > after and e >= 1) >= rounds


def _stale_p2pd(root: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "p2pd" and any(str(root) in a for a in p.info["cmdline"] or [])]


@pytest.fixture
def swarm_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "swarm"
    root.mkdir()
    (root / "trainer.toml").write_text(f"""
model = "tiny"
device = "cpu"
host_maddrs = ["/ip4/127.0.0.1/tcp/0"]
initial_peers_file = "{root / 'peers.txt'}"
namespace = "e2e-{os.getpid()}"
round_seconds = 10.0
gather_timeout = 4.0
max_external = 8
prompts_per_round = 2
num_generations = 4
max_new_tokens = 16
checkpoint_every = 1
""", encoding="utf-8")
    yield root
    for proc in _stale_p2pd(root):  # belt and braces: never leak a daemon into other tests
        proc.kill()


def test_three_peer_swarm_exchanges_survives_kill9_and_admits_late_peer(swarm_root: Path) -> None:
    """When three real peers run on loopback, each trains on the others' rollouts over
    rounds; a kill -9'd peer resumes with the same id; a late peer joins the current round."""
    a, b, c = (Peer(swarm_root, n) for n in ("alpha", "bravo", "charlie"))
    peers = [a, b, c]
    try:
        a.start()
        _wait((swarm_root / "peers.txt").exists, 90, a.tail)
        b.start()
        # 1. both train >= 2 rounds each with >= 1 external rollout
        for p in (a, b):
            _wait(_trained_with_peers(p, rounds=2), 120, p.tail)
        beat = read_heartbeat(a.state / "trainer.json")
        assert beat is not None
        assert beat.peers is not None
        assert beat.peers >= 1, beat
        b_id = HELLO.search(b.text())
        assert b_id is not None
        # 2. kill -9 bravo's main process only; its DHT child and p2pd are orphaned
        saved = b.finished()[-1][0]
        assert b.proc is not None
        os.kill(b.proc.pid, signal.SIGKILL)
        b.proc.wait(timeout=10)
        b.start()
        # 3. charlie starts late, at the same time
        current = max(r for r, _ in a.finished())
        c.start()
        _wait(lambda: "Resumed from checkpoint" in b.text() and b.finished(), 120, b.tail)
        assert HELLO.search(b.text()) is not None
        assert HELLO.search(b.text()).group(1) == b_id.group(1)  # type: ignore[union-attr]
        resumed = int(re.search(r"Resumed from checkpoint: round (\d+)", b.text()).group(1))  # type: ignore[union-attr]
        assert resumed >= saved - 1
        assert "cleaned stale p2pd holding our identity" in b.text()
        _wait(lambda: any(e >= 1 for _, e in c.finished()), 120, c.tail)
        first_c = int(JOINING.search(c.text()).group(1))  # type: ignore[union-attr]
        assert first_c >= current >= 1, (first_c, current)  # joined the current round, not 0
        # 4. the swarm keeps advancing, all three together, each still using peers' rollouts
        for p in peers:
            _wait(_trained_with_peers(p, rounds=1, after=first_c), 60, p.tail)
        rounds_a = [r for r, _ in a.finished()]
        assert rounds_a == sorted(rounds_a)
        assert rounds_a[-1] >= rounds_a[0] + 2
        # 5. SIGTERM: clean stop, exit 0, no p2pd left behind
        for p in peers:
            assert p.proc is not None
            assert p.proc.poll() is None, p.tail()
            p.proc.send_signal(signal.SIGTERM)
        for p in peers:
            assert p.proc is not None
            assert p.proc.wait(timeout=40) == 0, p.tail()
            assert "Stopped cleanly" in p.text()
        _wait(lambda: not _stale_p2pd(swarm_root), 15, lambda: str(_stale_p2pd(swarm_root)))
    finally:
        for p in peers:
            p.kill_group()

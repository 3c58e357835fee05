"""Stop keeps the work: SIGTERM in the middle of a round that is longer than
`stop_timeout` still ends with a consistent checkpoint, and without SIGKILL.

The real daemon supervises the real trainer (tiny model on CPU, hivemind DHT with its
p2pd on loopback). The round is made long with real work (many prompts, long
completions), not with a sleep, and the test measures it: a round shorter than
`stop_timeout` would prove nothing, so the test then skips and says so.
Checkpoints are taken only on stop (`checkpoint_every` is huge), so the checkpoint
found afterwards is the one written on the way out.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.daemon import Daemon, toml_list
from tests.faults.harness import leftovers

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

STOP_TIMEOUT = 15.0
STARTUP = 180.0  # a cold `python -m trainer` (torch, trl, hivemind, p2pd) on a busy 2-core box
JOINING = re.compile(r"Joining round: (\d+) starting at stage")
FINISHED = re.compile(r"Finished training round: (\d+) stage")


class Node:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ckpts = tmp / "node" / "checkpoints"
        (tmp / "trainer.toml").write_text(f"""
state_dir = "node"
heartbeat_path = "state/trainer.json"
model = "tiny"
device = "cpu"
host_maddrs = ["/ip4/127.0.0.1/tcp/0"]
namespace = "stopckpt-{os.getpid()}-{tmp.name}"
round_seconds = 2
gather_timeout = 1.0
prompts_per_round = 128
num_generations = 8
max_new_tokens = 256
checkpoint_every = 1000000
local_swarm_peers = 0
reconnect_after_no_peers = 0
""", encoding="utf-8")
        argv = [sys.executable, "-m", "trainer", "--config", str(tmp / "trainer.toml")]
        (tmp / "monitor.toml").write_text(f"""
state_dir = "state"
[trainer]
command = {toml_list(argv)}
cwd = "."
env = {{ OMP_NUM_THREADS = "1", MKL_NUM_THREADS = "1", TOKENIZERS_PARALLELISM = "false", PYTHONUNBUFFERED = "1" }}
stop_timeout = {STOP_TIMEOUT}
[logs]
dir = "logs"
max_bytes = "50MiB"
compress = false
console = false
[health]
heartbeat_file = "state/trainer.json"
stall_after = 600
""", encoding="utf-8")
        self.d = Daemon(tmp, tmp / "monitor.toml")

    def log(self) -> str:
        try:
            return self.d.trainer_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_match(self, pattern: re.Pattern[str], count: int, timeout: float) -> tuple[str, float]:
        """The count-th match of `pattern` in trainer.log and when the test first saw it."""
        deadline = time.monotonic() + timeout
        while True:
            found = pattern.findall(self.log())
            if len(found) >= count:
                return found[count - 1], time.monotonic()
            if time.monotonic() > deadline or self.d.proc.poll() is not None:
                raise AssertionError(
                    f"{pattern.pattern} x{count}: not within {timeout}s (swarmd rc={self.d.proc.poll()})\n"
                    f"trainer.log tail: {self.log()[-1500:]!r}"
                )
            time.sleep(0.1)

    def close(self) -> None:
        self.d.close()
        for proc in leftovers(str(self.tmp)):
            proc.kill()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    yield n
    n.close()


def test_sigterm_mid_round_longer_than_stop_timeout_saves_the_last_completed_round(node: Node) -> None:
    """SIGTERM while round N+1 generates: the trainer abandons it, writes round N's
    checkpoint, says `Stopped cleanly` and exits inside `stop_timeout` (no SIGKILL);
    the checkpoint verifies against its manifest."""
    n = node
    _, joined = n.wait_match(JOINING, 1, STARTUP)
    finished, done = n.wait_match(FINISHED, 1, 300)
    round_seconds = done - joined
    if round_seconds <= STOP_TIMEOUT:
        pytest.skip(f"a round took {round_seconds:.1f}s here, not more than stop_timeout={STOP_TIMEOUT}s: "
                    "this machine is too fast for the sizes in trainer.toml to prove anything")
    nxt, _ = n.wait_match(JOINING, 2, 60)
    time.sleep(1.0)  # well inside the next round: it takes as long as the first
    assert not FINISHED.findall(n.log())[1:], "the next round ended before the stop: the test would prove nothing"
    starts = [e for e in n.d.events() if e.get("event") == "child_started"]
    why = [(e.get("event"), e.get("reason"), e.get("evidence", "")[:160]) for e in n.d.events()
           if e.get("event") in ("decision", "state_changed") and e.get("to") != "running"]
    assert len(starts) == 1, f"the trainer was restarted before the stop, so rounds do not line up: {why}"
    trainer = psutil.Process(int(starts[0]["pid"]))
    asked = time.monotonic()
    n.d.signal(signal.SIGTERM)
    trainer.wait(STOP_TIMEOUT + 30)
    took = time.monotonic() - asked
    assert n.d.wait_exit(60) == 0
    down = [e for e in n.d.events() if e.get("event") == "child_down"]
    assert down, "swarmd logged no child_down"
    assert not down[-1]["escalated"], f"the trainer needed SIGKILL after {took:.1f}s: {down}"
    assert took < STOP_TIMEOUT, f"stop took {took:.1f}s, a round {round_seconds:.1f}s"
    text = n.log()
    assert f"Stop requested during round: {nxt}; abandoning it (last completed: round {finished} stage 0)" in text
    assert f"Finished training round: {nxt} " not in text
    assert "Stopped cleanly" in text[-3000:]

    from trainer import checkpoint  # late: pulls in torch

    saved = checkpoint.checkpoints(n.ckpts)
    assert [p.name for p in saved] == [f"round-{int(finished):06d}"], saved
    assert checkpoint.verify(saved[0], "tiny") is None

"""Fault injection on the REAL trainer: `python -m swarmd run` supervising
`python -m trainer` (tiny model, CPU, hivemind DHT with its real p2pd on loopback).

The fake node of test_faults.py misbehaves on cue; these cases prove the recovery on
the process tree swarmd really meets: trainer -> forked DHT process -> p2pd (a Go
binary in the same process group), a checkpoint directory and an identity key. Each
case asserts the recovery, the reason in monitor.log, no orphan, no stale p2pd socket,
at most one live process tree per identity (sampled every 0.1 s for the whole run),
the same peer id throughout, and checkpoints that verify against their manifest.

Lines lost are audited on the fake node (numbered lines); here the checks are the
trainer's last words (`Stopped cleanly`, `DHT reconnected`) reaching trainer.log.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from swarmd.heartbeat import read_heartbeat
from tests.e2e.daemon import Daemon, toml_list
from tests.faults.harness import (
    fake_p2pd,
    leftovers,
    p2pd_listen_sockets,
    pid_alive,
    tree_pids,
    ts,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(150)]

ROUND_SECONDS = 3.0
STARTUP = 60.0  # a cold `python -m trainer` (torch, trl, hivemind, p2pd) on a busy 2-core box
FINISHED = re.compile(r"Finished training round: (\d+) stage")
JOINING = re.compile(r"Joining round: (\d+) starting at stage")
RESUMED = re.compile(r"Resumed from checkpoint: round (\d+) stage")
IDLE = re.compile(r"Already finished round: \d+\. Next check in ([\d.]+)s")
CKPT = re.compile(r"round-(\d+)$")
_SAMPLE_EVERY = 0.1


# ---- the node under test ------------------------------------------------------------------


class RealNode:
    """swarmd + the real trainer in `tmp`: trainer.toml, monitor.toml, state, logs."""

    def __init__(self, tmp: Path, *, helpers: int = 0, round_seconds: float = ROUND_SECONDS) -> None:
        self.tmp = tmp
        self.config = tmp / "trainer.toml"
        self.state = tmp / "node"
        self.pem = self.state / "swarm.pem"
        self.heartbeat = tmp / "state" / "trainer.json"
        self.config.write_text(f"""
state_dir = "node"
heartbeat_path = "state/trainer.json"
model = "tiny"
device = "cpu"
host_maddrs = ["/ip4/127.0.0.1/tcp/0"]
initial_peers_file = "node/peers.txt"
namespace = "faults-{os.getpid()}-{tmp.name}"
round_seconds = {round_seconds}
gather_timeout = 1.0
prompts_per_round = 1
num_generations = 2
max_new_tokens = 8
checkpoint_every = 1
checkpoint_keep = 3
local_swarm_peers = {helpers}
reconnect_after_no_peers = 0
""", encoding="utf-8")
        self.sampler = TreeSampler(str(self.config), str(self.pem))
        self.daemon: Daemon | None = None

    def start(self, health: str = "") -> Daemon:
        argv = [sys.executable, "-m", "trainer", "--config", str(self.config)]
        monitor = self.tmp / "monitor.toml"
        monitor.write_text(f"""
state_dir = "state"
[trainer]
command = {toml_list(argv)}
cwd = "."
env = {{ OMP_NUM_THREADS = "1", MKL_NUM_THREADS = "1", TOKENIZERS_PARALLELISM = "false", PYTHONUNBUFFERED = "1" }}
stop_timeout = 20
[logs]
dir = "logs"
max_bytes = "50MiB"
compress = false
console = false
[restart]
initial_delay = 0.2
max_delay = 2
jitter = 0
min_interval = 0.1
[health]
heartbeat_file = "state/trainer.json"
{health}
""", encoding="utf-8")
        self.sampler.start()
        self.daemon = Daemon(self.tmp, monitor)
        self.sampler.root = self.daemon.proc.pid
        return self.daemon

    @property
    def d(self) -> Daemon:
        assert self.daemon is not None, "start() first"
        return self.daemon

    def log(self, since: int = 0) -> str:
        try:
            return self.d.trainer_log.read_bytes()[since:].decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self) -> int:
        try:
            return self.d.trainer_log.stat().st_size
        except FileNotFoundError:
            return 0

    def seen(self) -> str:
        """What the test saw, for a failed wait: recent events and the log's tail."""
        tail = [f"{e.get('event')} {e.get('to', '')} {e.get('reason', '')}".strip() for e in self.d.events()[-12:]]
        return f"monitor.log: {tail}\ntrainer.log tail: {self.log()[-1500:]!r}"

    def wait(self, pred: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll `pred` until truthy; fail naming `what` and what was seen instead."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline or self.d.proc.poll() is not None:
                raise AssertionError(f"{what}: not within {timeout}s (swarmd rc={self.d.proc.poll()})\n{self.seen()}")
            time.sleep(0.1)

    def after(self, t: float, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """The first monitor.log event matching `pred` logged at or after wall time `t`."""
        return self.d.wait_event(lambda e: pred(e) and ts(e) >= t - 0.001, timeout)

    def trainer_pid(self, count: int = 1) -> int:
        return int(self.d.wait_event(lambda e: e.get("event") == "child_started", STARTUP, count)["pid"])

    def finish(self) -> int:
        """SIGTERM swarmd, wait for its exit, stop the sampler; swarmd's exit code."""
        if self.d.proc.poll() is None:
            self.d.signal(signal.SIGTERM)
        rc = self.d.wait_exit(40)
        self.sampler.stop()
        return rc

    def close(self) -> None:
        """Teardown: never leave a process (or a p2pd) behind, whatever the test did."""
        if self.daemon is not None:
            self.daemon.close()
        self.sampler.stop()
        for proc in leftovers(str(self.tmp)):
            with contextlib.suppress(psutil.Error):
                proc.kill()


class TreeSampler(threading.Thread):
    """Every 0.1 s: the live process trees (process groups) per identity, and every p2pd
    socket our swarmd's tree listened on. A trainer process is one naming our
    trainer.toml (helpers by their `identity_path=` override); a p2pd names its key with
    `-id=`. Sockets are judged by ancestry only (a p2pd under `root`, our swarmd, when
    sampled): another node's p2pd on the host and its socket are none of our business."""

    def __init__(self, config: str, main_pem: str) -> None:
        super().__init__(name="tree-sampler", daemon=True)
        self._config = config
        self._main_pem = main_pem
        self._stop_flag = threading.Event()
        self.max_trees = 0
        self.worst: dict[str, set[int]] = {}
        self.samples = 0
        self.sockets: set[str] = set()
        self.root: int | None = None  # our swarmd, once started

    def identity(self, cmd: list[str]) -> str | None:
        if cmd and Path(cmd[0]).name == "p2pd":
            ids = [a.removeprefix("-id=") for a in cmd if a.startswith("-id=")]
            return ids[0] if ids and self._config.rsplit("/", 1)[0] in ids[0] else None
        if self._config not in cmd or "trainer" not in cmd:
            return None
        for a in cmd:
            if a.startswith("identity_path="):
                return a.removeprefix("identity_path=").strip('"')
        return self._main_pem

    def trees(self) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        ours = tree_pids(self.root)
        for proc in psutil.process_iter(["cmdline", "status"]):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.pid in ours:
                self.sockets.update(p2pd_listen_sockets(proc.info["cmdline"] or []))
            who = self.identity(proc.info["cmdline"] or [])
            if who is None:
                continue
            with contextlib.suppress(OSError):
                found.setdefault(who, set()).add(os.getpgid(proc.pid))
        return found

    def run(self) -> None:
        while not self._stop_flag.wait(_SAMPLE_EVERY):
            for who, groups in self.trees().items():
                if len(groups) > self.max_trees:
                    self.max_trees, self.worst = len(groups), {who: groups}
            self.samples += 1

    def stop(self) -> None:
        self._stop_flag.set()
        if self.is_alive():
            self.join(5)


# ---- helpers ----------------------------------------------------------------------------


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def p2pd_in(pid: int) -> psutil.Process | None:
    """The p2pd in the trainer's process tree (under its forked DHT process)."""
    for proc in tree(pid):
        with contextlib.suppress(psutil.Error):
            if proc.name() == "p2pd" or Path(proc.cmdline()[0]).name == "p2pd":
                return proc
    return None


def listen_socket(p2pd: psutil.Process) -> Path:
    return Path(next(a for a in p2pd.cmdline() if a.startswith("-listen=/unix/")).removeprefix("-listen=/unix"))


def still_alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `procs` still running as the same process (pid AND start time)."""
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def checkpoints(root: Path) -> list[int]:
    """Rounds of the finished checkpoint directories, newest first."""
    found = (CKPT.search(p.name) for p in root.glob("round-*") if p.is_dir())
    return sorted((int(m.group(1)) for m in found if m), reverse=True)


def verify_newest(root: Path) -> tuple[int, str | None]:
    """(round, the trainer's own verdict on it): trainer.checkpoint's manifest check, imported
    late because it pulls in torch."""
    from trainer import checkpoint

    newest = checkpoint.checkpoints(root)[0]
    return int(newest.name.removeprefix("round-")), checkpoint.verify(newest, "tiny")


def events(n: RealNode, name: str) -> list[dict[str, Any]]:
    return [e for e in n.d.events() if e.get("event") == name]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_clean(n: RealNode, rc: int) -> None:
    """The audits every case ends with: exit 0, one tree per identity, nothing left."""
    assert rc == 0, f"swarmd exited {rc}\n{n.seen()}"
    assert n.sampler.samples > 10, "the tree sampler hardly ran: it would prove nothing"
    assert n.sampler.max_trees == 1, f"two live trees of one identity at once: {n.sampler.worst}"
    # A process may take a moment to be reaped after its last signal: bounded grace.
    deadline = time.monotonic() + 5
    while leftovers(str(n.tmp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left_procs = [(p.pid, p.info["cmdline"][:3]) for p in leftovers(str(n.tmp))]
    assert not left_procs, f"processes of the test outlived swarmd: {left_procs}"
    assert n.sampler.sockets, "the sampler never saw a p2pd socket: the socket audit would prove nothing"
    left = [s for s in n.sampler.sockets if Path(s).exists()]
    assert not left, f"stale p2pd sockets left behind: {left}"


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RealNode]:
    """A real node, beside another hivemind node's p2pd on the same host: every case's
    audits must ignore it, and swarmd's cleanup must never touch it or its socket."""
    with fake_p2pd() as (other_sock, other):
        n = RealNode(tmp_path, **getattr(request, "param", {}))
        yield n
        n.close()
        assert other.poll() is None, "swarmd ended another node's p2pd"
        assert other_sock.exists(), "swarmd removed another node's p2pd socket"


def test_the_socket_audit_judges_only_our_tree_while_another_node_runs() -> None:
    """Two p2pds listen on /tmp/hivemind-p2pd-*.sock; the sampler records only the one
    under our root, so another node's live socket is never taken for a stale one of ours."""
    with fake_p2pd(under_a_parent=True) as (our_sock, root), fake_p2pd() as (other_sock, _):
        sampler = TreeSampler("/nowhere/trainer.toml", "/nowhere/swarm.pem")
        sampler.root = root.pid
        sampler.start()
        try:
            deadline = time.monotonic() + 10
            while sampler.samples < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            sampler.stop()
        assert sampler.samples >= 5
        assert sampler.sockets == {str(our_sock)}, f"other node's {other_sock} judged as ours"


# ---- the cases --------------------------------------------------------------------------


def test_kill_9_of_the_trainer_resumes_with_the_same_identity(node: RealNode) -> None:
    """kill -9 of the trainer -> restart (killed_sigkill; not an OOM without the kernel's
    record, #9), the old DHT
    process and p2pd ended and their socket removed before the new trainer starts,
    which keeps the peer id and resumes from the newest (intact) checkpoint."""
    n = node
    n.start()
    pid = n.trainer_pid()
    n.wait(lambda: len(checkpoints(n.state / "checkpoints")) >= 2, STARTUP, "two checkpoints saved")
    beat = n.wait(lambda: (b := read_heartbeat(n.heartbeat)) is not None and b.pid == pid and b.peer_id and b,
                  10, "a heartbeat of the trainer with its peer id")
    pem = sha256(n.pem)
    old = tree(pid)
    p2pd = n.wait(lambda: p2pd_in(pid), 10, "the trainer's p2pd")
    sock = listen_socket(p2pd)
    assert len(old) >= 3, f"expected trainer -> DHT process -> p2pd, got {[p.name() for p in old]}"
    saved = checkpoints(n.state / "checkpoints")[0]
    mark = n.log_size()
    inject = time.time()
    os.kill(pid, signal.SIGKILL)

    decision = n.after(inject, lambda e: e.get("event") == "decision")
    assert (decision["action"], decision["reason"]) == ("restart", "killed_sigkill"), decision
    n.after(inject, lambda e: e.get("event") == "child_down")
    new = n.trainer_pid(2)
    # When the new trainer starts, nothing of the old tree may still run.
    assert not still_alive(old), f"old tree survived the restart: {still_alive(old)}"
    assert not sock.exists(), f"the dead p2pd's socket {sock} was not removed"
    assert new != pid
    resumed = n.wait(lambda: RESUMED.search(n.log(mark)), STARTUP, "the new trainer's 'Resumed from checkpoint'")
    assert int(resumed.group(1)) == saved, f"resumed round {resumed.group(1)}, newest checkpoint was {saved}"
    joined = n.wait(lambda: JOINING.search(n.log(mark)), STARTUP, "the new trainer's first 'Joining round'")
    assert int(joined.group(1)) >= saved, f"rejoined at round {joined.group(1)} < checkpoint round {saved}"
    # Alone, the node restarts the round clock: at its checkpoint's round, not at 0 (else
    # it idles through every round it already trained).
    idle = [int(r) for r in re.findall(r"Already finished round: (\d+)", n.log(mark))]
    assert all(r >= saved for r in idle), f"the restarted node waited through old rounds {idle}"
    again = n.wait(lambda: (b := read_heartbeat(n.heartbeat)) is not None and b.pid == new and b, 10,
                   "a heartbeat from the new trainer")
    assert again.peer_id == beat.peer_id, "the restarted trainer changed its peer id"
    assert sha256(n.pem) == pem, "swarm.pem changed across the restart"
    assert "checkpoint_skipped" not in n.log(mark)
    assert_clean(n, n.finish())
    assert len(events(n, "child_started")) == 2
    _, problem = verify_newest(n.state / "checkpoints")
    assert problem is None, problem


@pytest.mark.parametrize("node", [{"round_seconds": 6.0}], indirect=True, ids=["round6s"])
def test_kill_9_of_p2pd_reconnects_in_place_without_a_restart(node: RealNode) -> None:
    """kill -9 of the trainer's real p2pd -> SIGUSR1 (reconnect_dht, p2pd_gone), the
    trainer re-bootstraps in place with a new p2pd and the same peer id, swarmd goes
    back to running (`reconnected`) and never restarts the trainer."""
    n = node
    n.start(health="reconnect_attempts = 2\nreconnect_timeout = 30")
    pid = n.trainer_pid()
    n.d.state("running", STARTUP)
    n.wait(lambda: (b := read_heartbeat(n.heartbeat)) is not None and b.pid == pid, 20, "the trainer's heartbeat")
    old = n.wait(lambda: p2pd_in(pid), 20, "the trainer's p2pd")
    old_sock = listen_socket(old)
    size = len(tree(pid))
    peer_id = read_heartbeat(n.heartbeat).peer_id  # type: ignore[union-attr]
    time.sleep(2.5)  # health ticks (1 s) see the p2pd alive, so its absence later means it died
    # Kill it while the node idles between rounds (>= 3 s with no round's DHT calls), so the
    # health probe usually notices first; a background DHT call may still meet the dead
    # daemon first and log hivemind's RPC error, which calls for the same SIGUSR1.
    mark = n.log_size()
    n.wait(lambda: any(float(x) >= 3.0 for x in IDLE.findall(n.log(mark))), 20, "the node idling between rounds")
    mark = n.log_size()
    inject = time.time()
    old.kill()

    decision = n.after(inject, lambda e: e.get("event") == "decision")
    # Either witness may come first (seen in CI: the node's own DHT call hit the dead
    # daemon before the next health tick): the decision is the same in-place SIGUSR1.
    assert decision["action"] == "reconnect_dht", decision
    assert decision["reason"] in ("p2pd_gone", "dht_rpc_error"), decision
    healed = n.after(inject, lambda e: e.get("event") == "state_changed" and e.get("reason") == "reconnected", 45)
    assert healed["to"] == "running", healed
    new = n.wait(lambda: (p := p2pd_in(pid)) is not None and p.pid != old.pid and p, 10, "a new p2pd in the trainer's tree")
    text = n.wait(lambda: (t := n.log(mark)) and "DHT reconnected" in t and t, 20, "the trainer's 'DHT reconnected'")
    assert "SIGUSR1: reconnecting the DHT in place" in text
    n.wait(lambda: FINISHED.search((t := n.log(mark)), t.index("DHT reconnected")), 30,
           "a round finished after the reconnect")
    assert pid_alive(pid), "the trainer was replaced; a reconnect that heals must not restart"
    beat = read_heartbeat(n.heartbeat)
    assert beat is not None
    assert (beat.pid, beat.peer_id) == (pid, peer_id)
    assert new.pid != old.pid
    now = tree(pid)
    assert len(now) == size, f"the trainer's tree was {size} processes, after the reconnect {[p.name() for p in now]}"
    assert not old_sock.exists(), f"the killed p2pd's socket {old_sock} is left in /tmp"
    decisions = [e["action"] for e in events(n, "decision")]
    assert decisions == ["reconnect_dht"], f"a reconnect that worked must not restart: {decisions}"
    assert_clean(n, n.finish())
    assert len(events(n, "child_started")) == 1


@pytest.mark.parametrize("node", [{"helpers": 2}], indirect=True, ids=["3peers"])
def test_sigterm_to_swarmd_saves_a_checkpoint_and_leaves_nothing(node: RealNode) -> None:
    """SIGTERM to swarmd while a 3-peer local swarm trains -> every peer saves its
    latest round and says `Stopped cleanly`, swarmd exits 0, no process or socket left."""
    n = node
    n.start()
    n.trainer_pid()
    n.d.state("running", STARTUP)
    peers = [n.state, n.state / "peer1", n.state / "peer2"]
    for p in peers:
        n.wait(functools.partial(checkpoints, p / "checkpoints"), STARTUP, f"a checkpoint of {p.name}")
    before = {p: checkpoints(p / "checkpoints") for p in peers}
    assert_clean(n, n.finish())
    down = events(n, "child_down")
    assert down, n.seen()
    assert not down[-1]["escalated"], f"the trainer needed SIGKILL to stop: {down[-1]}"
    assert [e for e in events(n, "state_changed") if e.get("to") == "stopped"], n.seen()
    assert json.loads(n.heartbeat.read_text())["status"] == "stopped"
    for p in peers:
        text = n.log() if p == n.state else (p / "trainer.log").read_text(errors="replace")
        assert "Stopped cleanly" in text[-2000:], f"{p.name}: last words missing from its log: {text[-600:]}"
        last = int(FINISHED.findall(text)[-1])
        rounds = checkpoints(p / "checkpoints")
        assert rounds[0] >= before[p][0], f"{p.name}: checkpoints went back {before[p]} -> {rounds}"
        assert rounds[0] == last, f"{p.name}: newest checkpoint {rounds[0]}, last finished round {last}"
        round_, problem = verify_newest(p / "checkpoints")
        assert problem is None, f"{p.name} round {round_}: {problem}"

"""p2pd discovery, the control-socket ask and the watcher, against a real hivemind DHT
(its forked DHT process and the p2pd binary shipped with hivemind) in a node that
writes no heartbeat. Only this test's own tree is looked at and ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from swarmd.cleanup import end_leftover_tree
from swarmd.liveness import P2pdLiveness, Sighting
from swarmd.p2pd import remove_stale_sockets
from swarmd.p2pd_probe import (
    DhtLook,
    DhtParts,
    DhtWatcher,
    ask_p2pd,
    pick_dht_parts,
    tree_procs,
)
from swarmd.process import ProcRef, catches_signal, p2pd_sockets, snapshot_tree
from tests.conftest import wait_until

pytest.importorskip("hivemind", reason="needs hivemind (the trainer extra) for a real p2pd")
pytestmark = [pytest.mark.io, pytest.mark.slow, pytest.mark.timeout(170)]

FAKE = Path(__file__).parent.parent / "fakes" / "dht_node.py"


class Node:
    """A running fake node; remembers every process its tree ever had, to end them all."""

    def __init__(self, *args: str, wait: bool = True) -> None:
        self.proc = subprocess.Popen([sys.executable, str(FAKE), *args], stdout=subprocess.PIPE, text=True)
        self.refs: dict[tuple[int, float], ProcRef] = {}
        self.peer_id = self.maddr = ""
        if wait:
            self.ready()

    def ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded by the test timeout
        assert line.startswith("dht ready "), line
        self.peer_id, self.maddr = line.split()[2:4]
        self.remember()

    def remember(self) -> None:
        for ref in snapshot_tree(self.proc.pid):
            self.refs[(ref.pid, ref.create_time)] = ref

    def end(self) -> None:
        self.remember()
        end_leftover_tree(self.proc.pid, list(self.refs.values()), 5.0)
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        remove_stale_sockets(p2pd_sockets(self.refs.values()))


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    n = Node()
    yield n
    n.end()


def test_finds_the_p2pd_and_dht_process_in_the_nodes_own_tree(node: Node) -> None:
    parts = pick_dht_parts(tree_procs(node.proc.pid), node.proc.pid)
    assert parts.p2pd is not None
    assert parts.p2pd.name == "p2pd"
    assert parts.dht is not None
    assert parts.dht.ppid == node.proc.pid  # hivemind's forked DHT process owns p2pd
    assert parts.p2pd.ppid == parts.dht.pid
    assert parts.control is not None
    assert parts.control.is_socket()


def test_a_p2pd_outside_the_tree_is_never_ours(node: Node) -> None:
    """The node's p2pd runs on this host, yet a sibling process's tree has none."""
    assert node.refs  # the node (and its p2pd) runs meanwhile
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as other:
        assert pick_dht_parts(tree_procs(other.pid), other.pid) == DhtParts()
        assert other.stdin is not None
        other.stdin.close()


def test_identify_over_the_control_socket_returns_the_nodes_peer_id(node: Node) -> None:
    parts = pick_dht_parts(tree_procs(node.proc.pid), node.proc.pid)
    assert parts.control is not None
    answer = ask_p2pd(parts.control, 5.0)
    assert answer.ok, answer.detail
    assert answer.peer_id == node.peer_id


def test_a_stopped_p2pd_does_not_answer_and_answers_again_when_continued(node: Node) -> None:
    parts = pick_dht_parts(tree_procs(node.proc.pid), node.proc.pid)
    assert parts.p2pd is not None
    assert parts.control is not None
    os.kill(parts.p2pd.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = ask_p2pd(parts.control, 1.0)
        took = time.monotonic() - started
        seen = pick_dht_parts(tree_procs(node.proc.pid), node.proc.pid)
    finally:
        os.kill(parts.p2pd.pid, signal.SIGCONT)
    assert seen.p2pd is not None
    assert seen.p2pd.stopped
    assert not answer.ok
    assert "no answer to IDENTIFY within 1s" in answer.detail
    assert took < 2.0
    assert ask_p2pd(parts.control, 5.0).ok


def test_a_stopped_dht_process_is_seen_stopped_while_p2pd_still_answers(node: Node) -> None:
    parts = pick_dht_parts(tree_procs(node.proc.pid), node.proc.pid)
    assert parts.dht is not None
    assert parts.control is not None
    assert not parts.dht.stopped
    os.kill(parts.dht.pid, signal.SIGSTOP)
    try:
        # A signal is delivered when the kernel next schedules the target: on a loaded
        # host the first look may come before the stop has taken effect.
        def look() -> DhtParts | None:
            parts = pick_dht_parts(tree_procs(node.proc.pid), node.proc.pid)
            return parts if parts.dht is not None and parts.dht.stopped else None

        seen = wait_until(look, 5.0, "the DHT process never showed as stopped")
        answer = ask_p2pd(parts.control, 5.0)
    finally:
        os.kill(parts.dht.pid, signal.SIGCONT)
    assert seen.dht is not None
    assert seen.dht.stopped
    assert answer.ok


def test_a_missing_socket_is_a_clear_failure(tmp_path: Path) -> None:
    answer = ask_p2pd(tmp_path / "gone.sock", 1.0)
    assert not answer.ok
    assert "gone.sock" in answer.detail


def test_caught_signal_mask_tells_a_handler_from_the_default(node: Node, tmp_path: Path) -> None:
    """The fake node without --on-usr1 has no SIGUSR1 handler (upstream's case)."""
    assert catches_signal(node.proc.pid, signal.SIGUSR1) is False
    code = "import signal,sys; signal.signal(signal.SIGUSR1, lambda *a: None); print('ok', flush=True); sys.stdin.read()"
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ok"
        assert catches_signal(child.pid, signal.SIGUSR1) is True
        assert child.stdin is not None
        child.stdin.close()
    assert catches_signal(2**22 + 12345, signal.SIGUSR1) is None  # no such process


def test_hiveminds_identity_check_daemon_is_not_judged_a_death(node: Node, tmp_path: Path) -> None:
    """An existing swarm.pem and an initial peer make hivemind start an anonymous p2pd
    first, shut it down, then start the node's own: looked at 10 times a second, the
    node shows two daemons one after the other, and is never judged dead."""
    pem = tmp_path / "swarm.pem"
    gen = "import sys; from hivemind.p2p import P2P; P2P.generate_identity(sys.argv[1])"
    subprocess.run([sys.executable, "-c", gen, str(pem)], check=True, timeout=120)
    checked = Node("--identity", str(pem), "--initial-peer", node.maddr, wait=False)
    try:
        verdicts: list[bool | None] = []
        daemons: set[int] = set()
        tracker = P2pdLiveness()

        def post(look: DhtLook) -> None:
            p2pd = look.parts.p2pd
            if p2pd is not None:
                daemons.add(p2pd.pid)
            key = None if p2pd is None else (p2pd.pid, p2pd.create_time)
            answered = None if look.answer is None else look.answer.ok
            verdicts.append(tracker.observe(Sighting(look.at, key, answered, tree=look.pids)).alive)

        watcher = DhtWatcher(post, interval=0.1, timeout=2.0)
        watcher.watch(1, checked.proc.pid, psutil.Process(checked.proc.pid).create_time())
        checked.ready()
        time.sleep(5)  # looks after the real daemon runs
        watcher.stop()
        checked.remember()
        assert len(daemons) == 2, f"expected the anonymous and the real p2pd, saw {daemons}"
        assert False not in verdicts
        assert verdicts[-1] is True
    finally:
        checked.end()

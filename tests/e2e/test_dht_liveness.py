"""The node's p2pd watched from outside by the real `swarmd run`, heartbeat or not.

The node is tests/fakes/dht_node.py: a real hivemind DHT (a forked DHT process and the
p2pd binary shipped with hivemind) that writes no heartbeat and prints nothing after
its start, as an upstream node after `kill -9` of its p2pd. Only this test's tree is
signalled; other p2pd daemons on the host are never touched.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.e2e.daemon import Daemon, fake, watched_p2pd, write_config

pytest.importorskip("hivemind", reason="needs hivemind (the trainer extra) for a real p2pd")
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

DETECT_GOAL_S = 10.0


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.close()


def start(tmp_path: Path, daemons: list[Daemon], reconnect: str, *node_args: str) -> Daemon:
    cfg = write_config(tmp_path, fake("dht_node", *node_args), health=f'reconnect = "{reconnect}"\nreconnect_timeout = 60\n')
    d = Daemon(tmp_path, cfg)
    daemons.append(d)
    return d


def seconds_after(event: dict[str, Any], wall: float) -> float:
    return datetime.fromisoformat(event["ts"]).timestamp() - wall


def decision(d: Daemon, action: str, timeout: float = 30.0) -> dict[str, Any]:
    return d.wait_event(lambda e: e.get("event") == "decision" and e.get("action") == action, timeout)


def test_kill_9_of_p2pd_restarts_a_node_that_cannot_reconnect_within_10s(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = start(tmp_path, daemons, "restart")
    first = d.wait_event(lambda e: e.get("event") == "child_started")
    p2pd = watched_p2pd(d)
    killed = time.time()
    p2pd.send_signal(signal.SIGKILL)
    restart = decision(d, "restart")
    detect_s = seconds_after(restart, killed)
    print(f"p2pd_detect_s={detect_s:.2f}")
    assert restart["reason"] == "p2pd_gone"
    assert f"pid {p2pd.pid}" in restart["evidence"]
    assert detect_s <= DETECT_GOAL_S
    second = d.wait_event(lambda e: e.get("event") == "child_started" and e.get("pid") != first["pid"], 30)
    assert not psutil.pid_exists(first["pid"]) or psutil.Process(first["pid"]).status() == psutil.STATUS_ZOMBIE
    assert second["pid"] in [p.pid for p in d.ps.children()]


def test_kill_9_of_p2pd_asks_a_node_with_a_handler_to_reconnect_in_place(tmp_path: Path, daemons: list[Daemon]) -> None:
    report = tmp_path / "signals.txt"
    d = start(tmp_path, daemons, "signal", "--on-usr1", str(report))
    p2pd = watched_p2pd(d)
    p2pd.send_signal(signal.SIGKILL)
    reconnect = decision(d, "reconnect_dht")
    assert reconnect["reason"] == "p2pd_gone"
    d.wait_event(lambda e: e.get("event") == "state_changed" and e.get("to") == "running" and e.get("reason") == "reconnected", 90)
    assert report.read_text().split() == ["SIGUSR1"]
    assert len([e for e in d.events() if e.get("event") == "child_started"]) == 1  # no restart


def test_a_node_without_a_sigusr1_handler_is_never_sent_one(tmp_path: Path, daemons: list[Daemon]) -> None:
    """SIGUSR1's default action kills: "signal" mode falls back to a restart, and says so."""
    d = start(tmp_path, daemons, "signal")
    first = d.wait_event(lambda e: e.get("event") == "child_started")
    watched_p2pd(d).send_signal(signal.SIGKILL)
    refused = d.wait_event(lambda e: e.get("event") == "reconnect_signal_not_caught", 30)
    assert refused["pid"] == first["pid"]
    assert "reconnect" in refused["fix"]
    restart = decision(d, "restart")
    assert restart["reason"] == "p2pd_gone"
    exited = d.wait_event(lambda e: e.get("event") == "child_exited" and e.get("pid") == first["pid"], 30)
    assert exited["returncode"] != -signal.SIGUSR1


def test_a_stopped_p2pd_that_no_longer_answers_is_the_same_fault(tmp_path: Path, daemons: list[Daemon]) -> None:
    d = start(tmp_path, daemons, "restart")
    p2pd = watched_p2pd(d)
    stopped = time.time()
    p2pd.send_signal(signal.SIGSTOP)
    try:
        restart = decision(d, "restart")
    finally:
        if p2pd.is_running():
            os.kill(p2pd.pid, signal.SIGCONT)
    detect_s = seconds_after(restart, stopped)
    print(f"p2pd_unanswered_detect_s={detect_s:.2f}")
    assert restart["reason"] == "p2pd_silent"
    assert "has not answered its control socket" in restart["evidence"]
    assert detect_s <= DETECT_GOAL_S

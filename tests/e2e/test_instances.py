"""Several nodes on one host: two real daemons side by side, each supervising a node
that runs a real hivemind DHT (its forked DHT process and hivemind's p2pd binary),
each with its own config, state dir, logs, control socket and web port, as
`swarmd@a` and `swarmd@b` have them.

A fault, a forced restart and a stop of one instance (with the cleanup each runs:
group kill, orphan sweep, stale p2pd sockets) must never touch the other: its
processes (by pid and start time), its p2pd's sockets and TCP ports, its control
socket and its web port are all still there and the same afterwards.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from swarmd.process import ProcRef, is_p2pd, p2pd_sockets, snapshot_tree
from tests.conftest import wait_until
from tests.e2e.daemon import FAKES, Daemon, write_config

pytest.importorskip("hivemind", reason="needs hivemind (the trainer extra) for a real p2pd")

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

STARTUP = 180.0  # two hivemind DHTs starting on a busy 2-core box (load 12 seen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Instance:
    name: str
    daemon: Daemon
    port: int

    @property
    def sock(self) -> Path:
        return self.daemon.tmp / "state" / "swarmd.sock"

    def trainer_pid(self, count: int = 1) -> int:
        return int(self.daemon.wait_event(lambda e: e.get("event") == "child_started", STARTUP, count)["pid"])

    def tree(self) -> list[ProcRef]:
        """The current trainer's tree, once its p2pd runs and listens (socket and port)."""
        pid = self.trainer_pid(max(1, len([e for e in self.daemon.events() if e.get("event") == "child_started"])))

        def with_p2pd() -> list[ProcRef]:
            refs = snapshot_tree(pid)
            ready = any(is_p2pd(r) for r in refs) and p2pd_sockets(refs) and listening_ports(refs)
            return refs if ready else []

        return wait_until(with_p2pd, STARTUP, lambda: f"{self.name}: no listening p2pd under pid {pid}")

    def status(self) -> dict[str, object]:
        out = subprocess.run(
            [sys.executable, "-m", "swarmd", "status", "--json", "--config", str(self.daemon.config)],
            capture_output=True, text=True, timeout=30, check=True,
        )
        data: dict[str, object] = json.loads(out.stdout)
        return data

    def web_ok(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/metrics"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200 and b"swarmd_state" in r.read()
        return False


def listening_ports(refs: list[ProcRef]) -> set[int]:
    ports: set[int] = set()
    for ref in refs:
        with contextlib.suppress(psutil.Error):
            for conn in psutil.Process(ref.pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    ports.add(conn.laddr.port)
    return ports


def alive(refs: list[ProcRef]) -> list[ProcRef]:
    """Those of `refs` still running as the same process (pid and start time)."""
    out = []
    for ref in refs:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(ref.pid)
            if abs(p.create_time() - ref.create_time) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                out.append(ref)
    return out


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[tuple[Instance, Instance]]:
    started: list[Instance] = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        port = free_port()
        argv = [sys.executable, str(FAKES / "dht_node.py"), "--identity", str(home / "swarm.pem")]
        cfg = write_config(
            home, argv,
            extra=f'[web]\nenabled = true\nport = {port}\n[control]\nsocket = "state/swarmd.sock"\n',
            health='ready_on = "start"',
        )
        started.append(Instance(name, Daemon(home, cfg), port))
    try:
        yield started[0], started[1]
    finally:
        for inst in started:
            inst.daemon.close()


def test_faults_restarts_and_stop_of_one_instance_never_touch_the_other(
    instances: tuple[Instance, Instance],
) -> None:
    """kill -9 of a's trainer (a restarts and cleans up its tree), `swarmd restart` of
    a, then `swarmd stop` of a: b's processes, p2pd sockets, p2pd ports, control
    socket, web port and trainer stay exactly as they were, and b logs no exit."""
    a, b = instances
    tree_a, tree_b = a.tree(), b.tree()
    socks_a = [s for s in p2pd_sockets(tree_a) if s.exists()]
    socks_b = [s for s in p2pd_sockets(tree_b) if s.exists()]
    ports_b = listening_ports(tree_b)
    assert not {r.pid for r in tree_a} & {r.pid for r in tree_b}
    assert not set(socks_a) & set(socks_b)
    assert a.web_ok()
    assert b.web_ok()

    def b_untouched(step: str) -> None:
        gone = [(r.pid, r.name) for r in tree_b if r not in alive(tree_b)]
        assert not gone, f"after {step}: b's processes ended: {gone}"
        removed = [s for s in socks_b if not s.exists()]
        assert not removed, f"after {step}: b's p2pd sockets removed: {removed} (of {socks_b})"
        assert listening_ports(tree_b) == ports_b, f"after {step}: b's p2pd ports changed"
        assert b.web_ok(), f"after {step}: b's web port stopped serving"
        assert b.status()["pid"] == tree_b[0].pid, f"after {step}: b's control socket reports another trainer"
        exits = [e for e in b.daemon.events() if e.get("event") in ("child_exited", "child_down")]
        assert not exits, f"after {step}: b's trainer exited: {exits}"

    # 1. a fault in a: its trainer is killed; a cleans its tree up and starts another.
    psutil.Process(tree_a[0].pid).send_signal(signal.SIGKILL)
    a.trainer_pid(2)
    new_a = a.tree()
    wait_until(lambda: not alive(tree_a), 30, lambda: f"a's old tree still alive: {alive(tree_a)}")
    wait_until(lambda: not any(s.exists() for s in socks_a), 30, "a's old p2pd sockets were not removed")
    b_untouched("kill -9 of a's trainer")

    # 2. an operator restart of a.
    subprocess.run([sys.executable, "-m", "swarmd", "restart", "--config", str(a.daemon.config)],
                   check=True, timeout=30, capture_output=True)
    a.trainer_pid(3)
    wait_until(lambda: not alive(new_a), 30, lambda: f"a's second tree still alive: {alive(new_a)}")
    b_untouched("swarmd restart of a")

    # 3. a stops for good: its whole tree, sockets, control socket and web port go.
    last_a = a.tree()
    subprocess.run([sys.executable, "-m", "swarmd", "stop", "--config", str(a.daemon.config)],
                   check=True, timeout=30, capture_output=True)
    assert a.daemon.wait_exit(60) == 0
    assert not alive(last_a)
    assert not any(s.exists() for s in p2pd_sockets(last_a))
    assert not a.sock.exists()
    assert not a.web_ok()
    b_untouched("swarmd stop of a")

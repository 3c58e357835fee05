"""Two unmodified genrl nodes, each under its own real `swarmd run`, and the faults.

Shared by tests/upstream/test_supervised_faults.py (asserts) and
benchmarks/upstream_faults.py (prints the figures): one fault = one `Fault` (how to cause
it, which monitor event counts as swarmd noticing it), measured by `measure()`:

- detection: from the fault to the first monitor.log event of the second node's daemon
  that acts on it (a decision, a state leaving `running`, a reload, an exit);
- recovery: from the fault until the node is back in a round WITH its peer. genrl's
  gather waits for both nodes (HIVEMIND_WORLD_SIZE=2), so the master prints its next
  `Starting round` only once the second node's new incarnation has published for the
  master's round: the first such line after the new incarnation's first round is the
  moment;
- audits: the old tree's processes are gone (no orphan), its p2pd sockets are gone (no
  stale socket), and a sampler saw at most one p2pd with the node's identity at any time
  (never two trees of one identity).

The master ("a") is supervised too, with stall detection set beyond the run: it waits,
blocked in genrl's gather, whenever the second node is down, which is genrl's design,
not a fault of the master (see genrl_swarm.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.daemon import Daemon, toml_list
from tests.upstream.genrl_swarm import (
    GenrlNode,
    identity_processes,
    p2pd_sockets,
    tree_parts,
)

_HYDRA_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[[^\]]+\]\[\w+\] - Starting round: (\d+)/", re.M)

# The second node is judged fast (a stall after 10 s without progress), once 90 s have
# passed since its start: a genrl start takes 20-35 s on this 2-core machine, over 60 s
# at a load average of 14, and a node stalled out of its own start never starts;
# the master never, within a test run.
HEALTH_B = 'stall_after = "10s"\nstartup_grace = "90s"\nready_on = "progress"\n'
HEALTH_A = 'stall_after = "30m"\nstartup_grace = "30m"\nready_on = "progress"\n'
# No `nice` for the master, although genrl's gather busy-polls the DHT while it waits
# (a core burnt whenever the second node is down): at a high host load a niced master
# starves and never hands its addresses to the second node.


def monitor_toml(node: GenrlNode, health: str, env_extra: dict[str, str] | None = None,
                 wrap: tuple[str, ...] = ()) -> str:
    env = {**node.env(), **(env_extra or {})}
    env_toml = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in sorted(env.items())) + " }"
    return f"""state_dir = "state"
[trainer]
command = {toml_list([*wrap, *node.argv()])}
cwd = "."
env = {env_toml}
stop_timeout = "5s"
[logs]
dir = "logs"
max_bytes = "64MiB"
compress = false
console = false
[restart]
initial_delay = "0.5s"
max_delay = "2s"
jitter = 0
min_interval = "0.1s"
[health]
{health}
"""


def hydra_rounds(text: str) -> list[tuple[float, int]]:
    """(epoch seconds, round) of every `Starting round` line (hydra logs local time)."""
    return [(datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f").timestamp(), int(r))  # noqa: DTZ007
            for ts, r in _HYDRA_TS.findall(text)]


def event_epoch(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


class SupervisedNode:
    """A genrl node under a real swarmd whose directory is the node's own."""

    def __init__(self, node: GenrlNode, health: str, wrap: tuple[str, ...] = ()) -> None:
        self.node = node
        self.health = health
        self.wrap = wrap
        self.config = node.root / "monitor.toml"
        self.config.write_text(monitor_toml(node, health, wrap=wrap))
        self.daemon: Daemon | None = None
        self.old_daemons: list[Daemon] = []

    @property
    def trainer_log(self) -> Path:
        return self.node.root / "logs" / "trainer.log"

    def start(self) -> Daemon:
        self.daemon = Daemon(self.node.root, self.config)
        return self.daemon

    def events(self) -> list[dict[str, Any]]:
        return self.daemon.events() if self.daemon else []

    def rounds(self) -> list[tuple[float, int]]:
        try:
            return hydra_rounds(self.trainer_log.read_text(errors="replace"))
        except FileNotFoundError:
            return []

    def launcher(self) -> psutil.Process | None:
        """The genrl launcher swarmd started (its direct child), if running."""
        if self.daemon is None:
            return None
        with contextlib.suppress(psutil.Error):
            for child in self.daemon.ps.children():
                if "genrl.runner.hivemind_launcher" in " ".join(child.cmdline()):
                    return child
        return None

    def tree(self) -> tuple[psutil.Process | None, list[psutil.Process], list[psutil.Process]]:
        """(launcher, DHT children, p2pds) of the running incarnation."""
        launcher = self.launcher()
        if launcher is None:
            return None, [], []
        dhts, p2pds = tree_parts(launcher.pid, self.node.identity)
        return launcher, dhts, p2pds

    def close(self) -> None:
        for d in [*self.old_daemons, *([self.daemon] if self.daemon else [])]:
            d.close()


class IdentitySampler:
    """Counts, every 0.2 s, the p2pd daemons serving one identity; keeps the maximum."""

    def __init__(self, identity: Path) -> None:
        self.identity = identity
        self.max_seen = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(psutil.Error):
                self.max_seen = max(self.max_seen, len(identity_processes(self.identity)))
                self.samples += 1

    def __enter__(self) -> IdentitySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Measured:
    fault: str
    detected: bool
    detect_s: float | None
    recover_s: float | None
    problems: list[str] = field(default_factory=list)
    detail: str = ""

    def line(self) -> str:
        d = "-" if self.detect_s is None else f"{self.detect_s:.1f}"
        r = "-" if self.recover_s is None else f"{self.recover_s:.1f}"
        audit = "ok" if not self.problems else "; ".join(self.problems)
        return f"{self.fault:<22} detected={int(self.detected)} detect_s={d:>6} recover_s={r:>6} audit={audit} {self.detail}"


def _acting(since: float) -> Callable[[dict[str, Any]], bool]:
    """A monitor event after `since` that shows swarmd acting on a fault."""
    leaving = {"degraded", "reconnecting", "backoff", "restarting", "stopping", "stopped", "fatal"}

    def pred(e: dict[str, Any]) -> bool:
        if "ts" not in e or event_epoch(e) < since:
            return False
        name = e.get("event")
        return bool(name in {"decision", "config_reloaded", "leftover_trainer_ended", "swarmd_exited"}
                    or (name == "state_changed" and e.get("to") in leaving))

    return pred


@dataclass
class Fault:
    name: str
    # Causes the fault on the second node; returns the wall time it happened.
    cause: Callable[[SupervisedNode], float]


def _kill_first(procs: list[psutil.Process], sig: int, what: str) -> float:
    if not procs:
        raise AssertionError(f"no {what} in the node's tree")
    t = time.time()
    procs[0].send_signal(sig)
    return t


def kill_p2pd(sn: SupervisedNode) -> float:
    return _kill_first(sn.tree()[2], signal.SIGKILL, "p2pd")


def kill_dht_child(sn: SupervisedNode) -> float:
    return _kill_first(sn.tree()[1], signal.SIGKILL, "DHT child")


def stop_dht_child(sn: SupervisedNode) -> float:
    return _kill_first(sn.tree()[1], signal.SIGSTOP, "DHT child")


def kill_node(sn: SupervisedNode) -> float:
    launcher = sn.launcher()
    return _kill_first([launcher] if launcher else [], signal.SIGKILL, "launcher")


def sighup_edited(sn: SupervisedNode) -> float:
    """Edit the config (one more environment variable), then SIGHUP the daemon."""
    edits = sum(1 for _ in re.finditer("SWARMD_LANE_EDIT", sn.config.read_text()))
    sn.config.write_text(monitor_toml(sn.node, sn.health, {"SWARMD_LANE_EDIT": str(edits + 1)}, sn.wrap))
    assert sn.daemon is not None
    t = time.time()
    sn.daemon.signal(signal.SIGHUP)
    return t


def _swarmd_replaced(sn: SupervisedNode, sig: int) -> float:
    """Signal the daemon, wait for it to exit, start a new one on the same config."""
    assert sn.daemon is not None
    t = time.time()
    sn.daemon.signal(sig)
    sn.daemon.wait_exit(30)
    sn.old_daemons.append(sn.daemon)
    sn.start()
    return t


def term_swarmd(sn: SupervisedNode) -> float:
    return _swarmd_replaced(sn, signal.SIGTERM)


def kill_swarmd(sn: SupervisedNode) -> float:
    return _swarmd_replaced(sn, signal.SIGKILL)


FAULTS = [
    Fault("sigstop_dht_child", stop_dht_child),
    Fault("kill9_node", kill_node),
    Fault("kill9_p2pd", kill_p2pd),
    Fault("kill9_dht_child", kill_dht_child),
    Fault("sighup_edited_config", sighup_edited),
    Fault("sigterm_swarmd", term_swarmd),
    Fault("kill9_swarmd", kill_swarmd),
]


def _old_tree(sn: SupervisedNode) -> tuple[list[psutil.Process], list[Path]]:
    launcher, dhts, p2pds = sn.tree()
    procs = [p for p in [launcher, *dhts, *p2pds] if p is not None]
    with contextlib.suppress(psutil.Error):
        if launcher is not None:
            procs += [c for c in launcher.children(recursive=True) if c not in procs]
    return procs, [s for p in p2pds for s in p2pd_sockets(p)]


def _client_socket(path: Path) -> Path:
    return path.with_name(path.name.replace("hivemind-p2pd-", "hivemind-p2pclient-", 1))


def wait_in_round(a: SupervisedNode, b: SupervisedNode, timeout: float) -> None:
    """Both nodes running rounds together: the master advanced twice after the second
    node's latest incarnation started its rounds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        starts = [event_epoch(e) for e in b.events() if e.get("event") == "child_started"]
        b_rounds = [t for t, _ in b.rounds() if not starts or t >= starts[-1]]
        if b_rounds and sum(1 for t, _ in a.rounds() if t > b_rounds[0]) >= 2:
            return
        time.sleep(0.5)
    raise AssertionError(f"nodes not in a round together within {timeout}s; "
                         f"a rounds {a.rounds()[-3:]}, b rounds {b.rounds()[-3:]}, b events "
                         f"{[(e.get('event'), e.get('to'), e.get('reason')) for e in b.events()[-8:]]}")


def measure(a: SupervisedNode, b: SupervisedNode, fault: Fault, timeout: float = 240.0) -> Measured:
    """Cause `fault` on `b`, wait for detection and recovery, audit the old tree."""
    procs, sockets = _old_tree(b)
    sockets += [_client_socket(s) for s in sockets]
    t0 = fault.cause(b)
    deadline = time.monotonic() + timeout
    detect_s = recover_s = None
    detail = ""
    new_start: float | None = None
    b_first_round: float | None = None
    while time.monotonic() < deadline and recover_s is None:
        events = b.events()
        if detect_s is None:
            hit = next((e for e in events if _acting(t0)(e)), None)
            if hit is not None:
                detect_s = event_epoch(hit) - t0
                detail = f"({hit.get('event')} {hit.get('to', '')} {hit.get('reason', '')})".replace(" )", ")")
        if new_start is None:
            starts = [event_epoch(e) for e in events if e.get("event") == "child_started" and event_epoch(e) > t0]
            new_start = starts[0] if starts else None
        if new_start is not None and b_first_round is None:
            b_first_round = next((t for t, _ in b.rounds() if t >= new_start), None)
        if b_first_round is not None:
            a_next = next((t for t, _ in a.rounds() if t > b_first_round), None)
            if a_next is not None:
                recover_s = a_next - t0
        time.sleep(0.25)
    problems = []
    if detect_s is None:
        problems.append("not detected")
    if recover_s is None:
        problems.append(f"not back in a round with its peer within {timeout:.0f}s")
    alive = [p.pid for p in procs if _running(p)]
    if alive:
        problems.append(f"old tree still running: {alive}")
    stale = [str(s) for s in sockets if s.exists()]
    if stale:
        problems.append(f"stale sockets: {stale}")
    return Measured(fault.name, detect_s is not None, detect_s, recover_s, problems, detail)


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@contextlib.contextmanager
def supervised_pair(root: Path, a_node: GenrlNode, b_node: GenrlNode) -> Iterator[tuple[SupervisedNode, SupervisedNode]]:
    """Both daemons started (the master first: the second node reads its addresses
    from the rendezvous file), stopped and their trees audited on exit."""
    a = SupervisedNode(a_node, HEALTH_A)
    b = SupervisedNode(b_node, HEALTH_B)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        b.close()
        a.close()

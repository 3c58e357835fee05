"""Two unmodified genrl nodes, each under its own real `swarmd run`, and the faults.

Shared by tests/upstream/test_supervised_faults.py (asserts) and
benchmarks/upstream_faults.py (prints the figures): one fault = one `Fault` (how to cause
it, and on which node), measured by `measure()` (see `Measured` for each figure):

- detection: from the fault to the first monitor.log event of the victim's daemon that
  acts on it (a decision, a state leaving `running`, a reload, an exit);
- swarmd's share: from the fault to the new incarnation's `child_started`;
- recovery: from the fault until the node is back in a round WITH its peer. genrl's
  gather waits for both nodes (HIVEMIND_WORLD_SIZE=2), so the peer prints its next
  `Starting round` only once the victim's new incarnation has published for the peer's
  round: the first such line after the new incarnation's first round is the moment.
  The node's own share (start_s) is recovery minus swarmd's: a genrl launch plus the
  replay of every round the pair played, since genrl keys rounds by a per-process
  counter (genrl_swarm.py); `cold_start` and `restart_by_hand` measure the same start
  without a fault and without swarmd;
- audits: the old tree's processes are gone (no orphan), its p2pd sockets are gone (no
  stale socket), and a sampler saw at most one p2pd with the node's identity at any time
  (never two trees of one identity).

The master ("a") is supervised too, with stall detection set beyond the run: it waits,
blocked in genrl's gather, whenever the second node is down, which is genrl's design,
not a fault of the master. Its p2pd and DHT process are watched like any node's. A
restarted master is not found again by the running second node, whatever its address:
genrl's `HivemindBackend` listens on a random port (`host_maddrs` .../tcp/0, fixed in
its code, not settable from the config), the master has no initial peers, and
hivemind drops a peer that failed to answer from its routing table
(`DHTProtocol.update_routing_table`), so neither side would ever call the other. The
second node meets it again by restarting, which re-reads the rendezvous file the new
master has rewritten: swarmd does that through the second node's stall detection (10 s
of silence in genrl's gather). A master fault's recovery therefore includes the second
node's stall restart and its start.
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
    start_unsupervised,
    stop_group,
    tree_parts,
)

_HYDRA_TS = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[[^\]]+\]\[\w+\] - Starting round: (\d+)/", re.M)

# The second node is judged fast (a stall after 10 s without progress), once 90 s have
# passed since its start: a genrl start takes 20-35 s on this 2-core machine, over 60 s
# at a load average of 14, and a node stalled out of its own start never starts.
# That stall is also how the second node finds a restarted master again: genrl reads
# the rendezvous file only at start (see MASTER_FAULTS). The master is never judged
# stalled within a test run: it waits in genrl's gather whenever its peer is down, by
# genrl's design; its p2pd and DHT process are watched all the same (`reconnect =
# "restart"`: genrl has no SIGUSR1 handler, as in examples/upstream-rl-swarm.toml).
HEALTH_B = 'stall_after = "10s"\nstartup_grace = "90s"\nready_on = "progress"\nreconnect = "restart"\n'
HEALTH_A = 'stall_after = "30m"\nstartup_grace = "30m"\nready_on = "progress"\nreconnect = "restart"\n'
# No `nice` for the master, although genrl's gather busy-polls the DHT while it waits
# (a core burnt whenever the second node is down): at a high host load a niced master
# starves and never hands its addresses to the second node.
# The back-off restarts at its first step (0.5 s) once a node has run 10 s: the lane
# causes its faults back to back (the next one ~15 s after a recovery), each measured as
# the single fault it would be on a real host, where faults come hours apart and the
# back-off has long been reset. A crash loop still ends in crash_loop (10 an hour).


def monitor_toml(node: GenrlNode, health: str, env_extra: dict[str, str] | None = None,
                 wrap: tuple[str, ...] = (), extra: str = "") -> str:
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
healthy_reset_after = "10s"
[health]
{health}
{extra}"""


def hydra_rounds(text: str) -> list[tuple[float, int]]:
    """(epoch seconds, round) of every `Starting round` line (hydra logs local time)."""
    return [(datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f").timestamp(), int(r))  # noqa: DTZ007
            for ts, r in _HYDRA_TS.findall(text)]


def event_epoch(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


class SupervisedNode:
    """A genrl node under a real swarmd whose directory is the node's own."""

    def __init__(self, node: GenrlNode, health: str, wrap: tuple[str, ...] = (), extra: str = "") -> None:
        self.node = node
        self.health = health
        self.wrap = wrap
        self.extra = extra  # more monitor.toml sections (e.g. [chain])
        self.config = node.root / "monitor.toml"
        self.config.write_text(monitor_toml(node, health, wrap=wrap, extra=extra))
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


# swarmd's share of a recovery may be this much beyond the node's own start (issue 9's
# goal: recovery <= node start time + 5 s).
SWARMD_SHARE_GOAL = 5.0


@dataclass
class Measured:
    """One fault's figures, all from wall-clock timestamps of the logs:

    - detect_s: fault -> the first monitor event acting on it;
    - swarmd_s: fault -> the victim's new incarnation started (`child_started`):
      detection, cleanup of the old tree and back-off, swarmd's whole share;
    - start_s: that `child_started` -> back in a round with its peer (the node's own
      start, which for genrl includes replaying the missed rounds: see genrl_swarm.py);
    - recover_s = swarmd_s + start_s: fault -> back in a round with its peer.

    The goal "recovery <= start + 5 s" is therefore swarmd_s <= 5 s; a fault that needs
    no restart (the chain) has no start and no goal."""

    fault: str
    node: str
    detected: bool
    detect_s: float | None
    recover_s: float | None
    swarmd_s: float | None = None
    start_s: float | None = None
    problems: list[str] = field(default_factory=list)
    detail: str = ""

    @property
    def goal_met(self) -> bool | None:
        if self.swarmd_s is None or self.start_s is None or self.recover_s is None:
            return None
        return self.recover_s <= self.start_s + SWARMD_SHARE_GOAL

    def line(self) -> str:
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}"

        goal = {None: "-", True: "yes", False: "NO"}[self.goal_met]
        audit = "ok" if not self.problems else "; ".join(self.problems)
        return (f"{self.fault:<26} node={self.node} detected={int(self.detected)} detect_s={f(self.detect_s):>5} "
                f"swarmd_s={f(self.swarmd_s):>5} start_s={f(self.start_s):>5} recover_s={f(self.recover_s):>5} "
                f"recover<=start+5={goal:<3} audit={audit} {self.detail}")


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
    # Causes the fault on a node; returns the wall time it happened.
    cause: Callable[[SupervisedNode], float]
    node: str = "b"  # which node of the pair it hits: "a" (the master) or "b"


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
    sn.config.write_text(monitor_toml(sn.node, sn.health, {"SWARMD_LANE_EDIT": str(edits + 1)}, sn.wrap, sn.extra))
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
# The same liveness faults on the master. Its restarted launcher is found again only
# by a second node that restarts too (see the module docstring): the recovery below
# includes the second node's stall restart and its start.
MASTER_FAULTS = [
    Fault("master_kill9_p2pd", kill_p2pd, "a"),
    Fault("master_kill9_node", kill_node, "a"),
    Fault("master_kill9_dht_child", kill_dht_child, "a"),
    Fault("master_sigstop_dht_child", stop_dht_child, "a"),
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


def _starts(sn: SupervisedNode, after: float = 0.0) -> list[float]:
    return [event_epoch(e) for e in sn.events() if e.get("event") == "child_started" and event_epoch(e) > after]


def met_at(peer: SupervisedNode, after: float, since: float) -> float | None:
    """When the peer is back in a round with a node whose first round (of its new
    incarnation) began at `after`: the peer's first `Starting round` after that. genrl's
    gather waits for both nodes, so the peer starts a round only once the node has
    published for the peer's round. A peer incarnation started after `since` proves
    nothing with its own first round (no gather behind it), so that one is skipped."""
    rounds = peer.rounds()
    firsts = {next((t for t, _ in rounds if t >= s), None) for s in _starts(peer, since)}
    return next((t for t, _ in rounds if t > after and t not in firsts), None)


def wait_in_round(a: SupervisedNode, b: SupervisedNode, timeout: float) -> None:
    """Both nodes running rounds together: each advanced twice after the other's latest
    incarnation started its rounds."""

    def together(x: SupervisedNode, y: SupervisedNode) -> bool:
        starts = _starts(x)
        x_rounds = [t for t, _ in x.rounds() if not starts or t >= starts[-1]]
        return bool(x_rounds) and sum(1 for t, _ in y.rounds() if t > x_rounds[0]) >= 2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if together(b, a) and together(a, b):
            return
        time.sleep(0.5)
    raise AssertionError(f"nodes not in a round together within {timeout}s; "
                         f"a rounds {a.rounds()[-3:]}, b rounds {b.rounds()[-3:]}, b events "
                         f"{[(e.get('event'), e.get('to'), e.get('reason')) for e in b.events()[-8:]]}")


def cold_start(b: SupervisedNode, a: SupervisedNode) -> float | None:
    """The second node's first start into a fresh swarm (nothing to replay): its
    first `child_started` -> back in a round with the master."""
    starts = _starts(b)
    if not starts:
        return None
    first = next((t for t, _ in b.rounds() if t >= starts[0]), None)
    met = None if first is None else met_at(a, first, starts[0])
    return None if met is None else met - starts[0]


_PHASES = {"decision", "child_stopped", "stop_escalated", "orphans_swept", "child_down", "swarmd_exited",
           "leftover_trainer_ended", "config_reloaded", "child_started"}


def _phases(events: list[dict[str, Any]], t0: float, until: float) -> str:
    """Where swarmd's share went: its events from the fault to the new start."""
    seen = [(event_epoch(e) - t0, str(e.get("event"))) for e in events
            if e.get("event") in _PHASES and t0 <= event_epoch(e) <= until + 0.001]
    return " ".join(f"{name}+{dt:.1f}" for dt, name in seen)


def measure(victim: SupervisedNode, peer: SupervisedNode, fault: Fault, timeout: float = 240.0) -> Measured:
    """Cause `fault` on `victim`, wait for detection and recovery (back in a round with
    `peer`), audit the old tree."""
    procs, sockets = _old_tree(victim)
    sockets += [_client_socket(s) for s in sockets]
    t0 = fault.cause(victim)
    deadline = time.monotonic() + timeout
    detect_s = met = new_start = first_round = None
    detail = ""
    while time.monotonic() < deadline and met is None:
        events = victim.events()
        if detect_s is None:
            hit = next((e for e in events if _acting(t0)(e)), None)
            if hit is not None:
                detect_s = event_epoch(hit) - t0
                detail = f"({hit.get('event')} {hit.get('to', '')} {hit.get('reason', '')})".replace(" )", ")")
        if new_start is None:
            starts = _starts(victim, t0)
            new_start = starts[0] if starts else None
        if new_start is not None and first_round is None:
            first_round = next((t for t, _ in victim.rounds() if t >= new_start), None)
        if first_round is not None:
            met = met_at(peer, first_round, t0)
        time.sleep(0.25)
    problems = []
    if detect_s is None:
        problems.append("not detected")
    if met is None:
        problems.append(f"not back in a round with its peer within {timeout:.0f}s")
    alive = [p.pid for p in procs if _running(p)]
    if alive:
        problems.append(f"old tree still running: {alive}")
    stale = [str(s) for s in sockets if s.exists()]
    if stale:
        problems.append(f"stale sockets: {stale}")
    if new_start is not None:
        detail += f" [{_phases(victim.events(), t0, new_start)}]"
    if new_start is not None and first_round is not None and met is not None:
        replayed = sum(1 for t, _ in victim.rounds() if first_round <= t < met)
        detail += (f" start = launch {first_round - new_start:.1f}s + {met - first_round:.1f}s to meet its peer"
                   f" ({replayed} rounds played on the way)")
    peer_starts = _starts(peer, t0)
    if peer_starts:
        why = next((e.get("reason") for e in peer.events() if e.get("event") == "decision" and event_epoch(e) > t0), "")
        detail += f" peer restarted at +{peer_starts[0] - t0:.1f}s ({why})"
    return Measured(
        fault.name, victim.node.name, detect_s is not None, detect_s,
        None if met is None else met - t0,
        None if new_start is None else new_start - t0,
        None if met is None or new_start is None else met - new_start,
        problems, detail,
    )


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@contextlib.contextmanager
def supervised_pair(root: Path, a_node: GenrlNode, b_node: GenrlNode,
                    b_extra: str = "") -> Iterator[tuple[SupervisedNode, SupervisedNode]]:
    """Both daemons started (the master first: the second node reads its addresses
    from the rendezvous file), stopped and their trees audited on exit. `b_extra` is
    appended to the second node's monitor.toml (e.g. a [chain] section)."""
    a = SupervisedNode(a_node, HEALTH_A)
    b = SupervisedNode(b_node, HEALTH_B, extra=b_extra)
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        b.close()
        a.close()


def restart_by_hand(victim: SupervisedNode, peer: SupervisedNode, timeout: float = 240.0) -> float | None:
    """The node's own start into the running swarm, without swarmd: its daemon stopped
    cleanly (the tree ended), the launcher started by hand at once; seconds from that
    spawn to back in a round with its peer (genrl's replay included). Then the node goes
    back under a new daemon. For comparison with start_s under swarmd."""
    assert victim.daemon is not None
    victim.daemon.signal(signal.SIGTERM)
    victim.daemon.wait_exit(60)
    victim.old_daemons.append(victim.daemon)
    victim.daemon = None
    log = victim.node.root / "by-hand.log"
    spawned = time.time()
    proc = start_unsupervised(victim.node, log)
    met = None
    try:
        deadline = time.monotonic() + timeout
        while met is None and time.monotonic() < deadline and proc.poll() is None:
            first = next((t for t, _ in hydra_rounds(log.read_text(errors="replace")) if t >= spawned), None)
            met = None if first is None else met_at(peer, first, spawned)
            time.sleep(0.25)
    finally:
        stop_group(proc)
        victim.start()
    return None if met is None else met - spawned

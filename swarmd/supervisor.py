"""The event loop that wires the daemon together: one queue in, the state machine and
the long-lived parts driven from it.

One thread owns all state: the loop below. Everything else (pipe readers, the exit
waiter, stop workers, followers, probes, the control socket, signal handlers) only
posts events to `self.events`. The parts (`parts.Part`: followers, probes, heartbeat
health, readiness, and the control socket and web server the CLI attaches) are
started, reconfigured and stopped here; what each event means is the `Machine`'s job.
"""

from __future__ import annotations

import os
import queue
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swarmd import __version__
from swarmd.chain_monitor import ChainMonitor, ChainRead
from swarmd.clock import Clock
from swarmd.config import Config, load
from swarmd.config_diff import NOT_LIVE, changed_keys, flatten
from swarmd.control import ControlRequest
from swarmd.dht_health import DhtHealth
from swarmd.domain import Action, Decision, State
from swarmd.errors import ConfigError
from swarmd.events import ChildDown, ChildExited, KernelOom, LineSeen, ProbeDone
from swarmd.health import HeartbeatHealth
from swarmd.identity import HostLocks, IdentityTaken
from swarmd.inputs import Followers, ProbeLoop
from swarmd.kernel_log import KernelWatch
from swarmd.log_files import TrainerLog
from swarmd.machine import Machine
from swarmd.metrics import Metrics
from swarmd.notify import Notifier
from swarmd.p2pd_probe import DhtLook
from swarmd.parts import Kept, Part, Parts
from swarmd.pidfile import PidFile
from swarmd.readiness import Readiness
from swarmd.signal_bridge import OsSignal
from swarmd.spawn import Spawner
from swarmd.status_board import StatusBoard
from swarmd.trainer_run import Launcher, Run

TICK = 1.0


class Supervisor:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        spawner: Spawner,
        log: Any,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
        env: Mapping[str, str] | None = None,
        config_path: Path | None = None,
        events: queue.SimpleQueue[Any] | None = None,
        locks: HostLocks | None = None,
    ) -> None:
        self.clock = clock
        self.log = log
        self.notifier = notifier or Notifier.from_env({})
        self.metrics = metrics or Metrics()
        self.events: queue.SimpleQueue[Any] = events if events is not None else queue.SimpleQueue()
        self._config_path = config_path
        self._locks = locks
        self._claimed: set[Path] = set()
        self._next_tick = 0.0
        self._woken_for: float | None = None  # the start time the loop last woke for
        self.board = StatusBoard(clock.monotonic())
        self._trainer_log = TrainerLog(config.logs, self._log_write_failed, self.metrics.watch_log)
        launcher = Launcher(
            spawner, self._trainer_log, PidFile(config.state_dir / "trainer.pid"),
            clock=clock, post=self.events.put, log=log,
        )
        base_env = env if env is not None else os.environ
        self._dht = DhtHealth(self.events.put)
        self._health = HeartbeatHealth(config.health.heartbeat_file, self._dht)
        self._chain = ChainMonitor(config, base_env, self.events.put)
        self._readiness = Readiness(
            self.notifier, config.health.ready_on, config.health.ready_timeout, clock.monotonic()
        )
        self.machine = Machine(
            config, clock=clock, log=log, notifier=self.notifier, metrics=self.metrics, launcher=launcher,
            board=self.board, health=self._health, readiness=self._readiness,
            base_env=base_env, post=self.events.put,
        )
        self.parts = Parts(log)
        followers = Followers(
            config.logs.follow, classifier=lambda: self.machine.classifier, gen=lambda: launcher.gen,
            post=self.events.put, count_line=self.metrics.lines, clock=clock, watch=self.metrics.watch_reader,
        )
        probes = ProbeLoop(config.probes, self.events.put)
        # The kernel's OOM records: the only proof that a SIGKILL was an OOM kill.
        kernel = KernelWatch(self.events.put, log)
        self.machine.kernel_lookup = kernel.lookup
        for part in (self._trainer_log, followers, probes, self._health, self._readiness, kernel, self._dht, self._chain):
            self.parts.add(part)

    # -- public -----------------------------------------------------------------------------
    def attach(self, part: Part) -> None:
        """Add a part the loop starts with the others, reconfigures on reload and stops
        at exit (the CLI attaches the control socket and the web server)."""
        self.parts.add(part)

    def run(self) -> int:
        """Supervise until stopped; returns the process exit code."""
        m = self.machine
        m.config.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.parts.start_all()
            m.launcher.end_leftover(m.config.trainer.stop_timeout, m.log_event)
            m.log_event("swarmd_started", version=__version__, config=m.config.source, pid=os.getpid())
            m.begin()
            while m.exit_code is None:
                self._loop_once()
        finally:
            self.close()
        return m.exit_code

    def snapshot(self) -> dict[str, Any]:
        return self.board.snapshot()

    def post(self, event: Any) -> None:
        self.events.put(event)

    def start(self) -> None:
        """The first start (tests drive the machine with `handle`/`tick` after this)."""
        self.machine.start_child()

    def handle(self, event: Any) -> None:
        """Process one event as the loop would (the seam for replaying histories)."""
        self._dispatch(event)
        self._publish()

    def tick(self) -> None:
        self.machine.tick(self.clock.monotonic())
        self._publish()

    def close(self) -> None:
        self.machine.launcher.close()
        self.parts.stop_all()
        self._trainer_log.stop()  # also when the loop never started the parts

    @property
    def config(self) -> Config:
        return self.machine.config

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def exit_code(self) -> int | None:
        return self.machine.exit_code

    @property
    def restarts(self) -> int:
        return self.board.restarts

    @property
    def generation(self) -> int:
        """The current trainer run's number; lines of older runs are not acted on."""
        return self.machine.launcher.gen

    @property
    def current(self) -> Run | None:
        """The trainer run in progress, if any (read it; never change it)."""
        return self.machine.run

    @property
    def settling(self) -> bool:
        """True while a run has exited or is being stopped and its worker's event is due."""
        run = self.machine.run
        return run is not None and (run.stopping or run.exited is not None)

    @property
    def next_start_at(self) -> float | None:
        """When (monotonic) the next trainer start is due, or None."""
        return self.machine.restart_at

    # -- loop ---------------------------------------------------------------------------------
    def _loop_once(self) -> None:
        m = self.machine
        now = self.clock.monotonic()
        # A due start runs on time, not on the next tick (once: a start postponed for
        # the network waits for the ticks).
        start_due = float("inf") if m.restart_at in (None, self._woken_for) else m.restart_at
        timeout = max(0.0, min(self._next_tick, start_due, self._readiness.watchdog_due()) - now)
        try:
            event = self.events.get(timeout=min(timeout, TICK))
        except queue.Empty:
            event = None
        if event is not None:
            self._dispatch(event)
        now = self.clock.monotonic()
        if now >= self._next_tick or now >= start_due:
            self._next_tick = now + TICK
            self._woken_for = m.restart_at
            m.tick(now)
        self._readiness.maybe_watchdog(now)
        if self.board.due(now):
            self._publish()

    def _dispatch(self, event: Any) -> None:
        m = self.machine
        if isinstance(event, LineSeen):
            m.on_line(event)
        elif isinstance(event, ChildExited):
            m.on_exit(event)
        elif isinstance(event, ChildDown):
            m.on_down(event)
        elif isinstance(event, OsSignal):
            self._on_os_signal(event.signum)
        elif isinstance(event, ControlRequest):
            self._on_control(event.verb)
        elif isinstance(event, ProbeDone):
            m.on_probe(event.result)
        elif isinstance(event, KernelOom):
            m.on_kernel_oom(event)
        elif isinstance(event, DhtLook):
            self.metrics.set_p2pd_up(self._dht.on_look(event).alive)
            if event.gen == m.launcher.gen and event.parts.identity is not None:
                self._claim_identity(event.parts.identity)
        elif isinstance(event, ChainRead):
            m.on_chain(self._chain.on_read(event, m.node_running))
            self.metrics.set_chain(event.reading.ok, event.reading.round, event.reading.block)

    def _on_os_signal(self, signum: int) -> None:
        m = self.machine
        name = signal.Signals(signum).name
        if signum in (signal.SIGTERM, signal.SIGINT):
            if m.state is State.STOPPING:
                m.escalate_stop(name)
                return
            m.stop_requested(name)
        elif signum == signal.SIGHUP:
            if m.state in (State.STOPPING, State.STOPPED):
                m.log_event("sighup_ignored", reason="shutting down")
                return
            self._reload("SIGHUP")
        elif signum == signal.SIGUSR1:
            m.apply(Decision(Action.RECONNECT_DHT, "operator_sigusr1", "SIGUSR1 received by swarmd"))

    def _on_control(self, verb: str) -> None:
        if verb == "stop":
            self.machine.stop_requested("control:stop")
        elif verb == "reload":
            self._reload("control:reload")
        elif verb == "restart":
            self.machine.force_restart("control:restart", "restart requested over the control socket")

    def _reload(self, why: str) -> None:
        m = self.machine
        self.notifier.reloading(int(self.clock.monotonic() * 1_000_000))
        path = self._config_path
        if path is not None:
            try:
                new = load(path)
            except ConfigError as err:
                # The trainer keeps running on the old config: a typo must cost nothing.
                m.log_event(
                    "config_rejected", level="error", error=str(err), kept=m.config.source,
                    fix="correct the file, then send SIGHUP again",
                )
                self.notifier.ready(m.status_line())
                return
            self._apply(new)
        m.force_restart(why, "reload and restart requested")
        self.notifier.ready(m.status_line())

    def _claim_identity(self, identity: Path) -> None:
        """The key p2pd really runs with (`-id=`) joins the host-wide lock, so a node
        whose config never named its swarm.pem is still the only one on it."""
        m = self.machine
        if self._locks is None or identity in self._claimed:
            return
        self._claimed.add(identity)
        try:
            self._locks.claim_identity(identity if identity.is_absolute() else m.config.trainer.cwd / identity)
        except IdentityTaken as err:
            m.apply(Decision(Action.GIVE_UP, "identity_taken", str(err)))
        except OSError as err:
            m.log_event("identity_lock_failed", level="warning", identity=str(identity), error=str(err))

    def _apply(self, new: Config) -> None:
        """Reload = rebuild: every part takes the new config, then rules and policy.
        A key that could not change live is named with its reason, never kept silently."""
        m = self.machine
        changed = changed_keys(flatten(m.config), flatten(new))
        kept = [Kept(key, why) for key, why in NOT_LIVE.items() if key in changed]
        kept += self.parts.reconfigure_all(new)
        m.apply_rules(new)
        self.board.reload_kept = [{"key": k.key, "reason": k.reason} for k in kept]
        m.log_event(
            "config_reloaded", level="warning" if kept else "info", config=new.source, changed=changed,
            kept=self.board.reload_kept,
        )

    def running_config(self) -> dict[str, Any]:
        """The config in force, flat and without secrets (the control socket's `config`)."""
        return flatten(self.machine.config)

    # -- helpers ---------------------------------------------------------------------------------------
    def _log_write_failed(self, err: OSError) -> None:
        # Called from a reader thread; structlog is thread-safe and this fires once per episode.
        self.log.error(
            "trainer_log_write_failed",
            error=str(err),
            path=str(self.machine.config.logs.trainer_log),
            fix="free space in the log directory; lines are buffered in memory meanwhile",
        )

    def _publish(self) -> None:
        m = self.machine
        run = m.run
        now = self.clock.monotonic()
        beat = self._health.last
        self.board.publish(
            now,
            state=m.state.value,
            pid=run.child.pid if run else None,
            uptime_s=round(now - run.started_at, 1) if run else None,
            peers=beat.peers if beat else None,
            peer_id=beat.peer_id if beat else "",
            animal=beat.animal if beat else "",
            chain_queue=beat.chain_queue if beat else None,
            next_start_in_s=None if m.restart_at is None else round(max(0.0, m.restart_at - now), 1),
            config_path=m.config.source,
            stall_threshold=m.policy.stall_threshold(),
            dht=self._dht.status(),
            chain=self._chain.status(),
        )

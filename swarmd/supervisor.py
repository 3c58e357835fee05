"""The state machine and the event loop that drives the daemon's parts.

One thread owns all state: the loop below. Everything else (pipe readers, the exit
waiter, stop workers, followers, probes, the control socket, signal handlers) only
posts events to `self.events`. The long-lived parts (`parts.Part`: followers, probes,
heartbeat health, readiness, the control socket and the web server) are started,
reconfigured and stopped by the loop; the trainer's runs come and go through
`trainer_run.Launcher`. No regex and no threshold lives here: they are in `classify`,
`policy`/`backoff` and `config`.

States: starting -> running <-> degraded -> reconnecting | restarting -> backoff ->
starting ..., and fatal / stopping -> stopped. `_transition` is the only writer of
`self.state` and logs every change with its reason and evidence line.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from swarmd import __version__
from swarmd.backoff import Backoff
from swarmd.classify import Classifier, build_rules
from swarmd.clock import Clock
from swarmd.config import Config, load
from swarmd.control import ControlRequest
from swarmd.domain import Action, Decision, ProbeResult, State, Verdict
from swarmd.errors import ConfigError, SpawnError
from swarmd.events import ChildDown, ChildExited, LineSeen, ProbeDone
from swarmd.health import HeartbeatHealth
from swarmd.heartbeat import Heartbeat
from swarmd.inputs import Followers, ProbeLoop
from swarmd.metrics import Metrics
from swarmd.notify import Notifier, child_env
from swarmd.parts import Part, Parts
from swarmd.policy import Policy
from swarmd.probes import probe_network
from swarmd.process import PidFile, Spawner
from swarmd.readiness import Readiness
from swarmd.rotating import RotatingLog
from swarmd.signal_bridge import OsSignal
from swarmd.status_board import StatusBoard
from swarmd.trainer_run import Launcher, Run

TICK = 1.0
_FRAME_COALESCE = 0.25
# Start-up chatter is activity, but not proof that the node trains (READY waits for more).
_NOT_READY_KINDS = frozenset({"startup"})
_LIVE = (State.STARTING, State.RUNNING, State.DEGRADED, State.RECONNECTING)


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
    ) -> None:
        self.config = config
        self.clock = clock
        self.log = log
        self.notifier = notifier or Notifier.from_env({})
        self.metrics = metrics or Metrics()
        self.events: queue.SimpleQueue[Any] = events if events is not None else queue.SimpleQueue()
        self._base_env = dict(env if env is not None else os.environ)
        self._config_path = config_path
        self.state = State.STARTING
        self.exit_code: int | None = None
        self._run: Run | None = None
        self._restart_at: float | None = None
        self._pending: Decision | None = None
        self._decided_at = 0.0
        self._oom_next = False
        self._network_ok: bool | None = None
        self._next_tick = 0.0
        self.board = StatusBoard(clock.monotonic())
        self._apply_rules(config)
        self._trainer_log = RotatingLog(
            config.logs.trainer_log,
            config.logs.max_bytes,
            config.logs.keep,
            config.logs.compress,
            on_error=self._log_write_failed,
        )
        self._launcher = Launcher(
            spawner, self._trainer_log, PidFile(config.state_dir / "trainer.pid"),
            clock=clock, post=self.events.put, log=log,
        )
        self._health = HeartbeatHealth(config.health.heartbeat_file)
        self._readiness = Readiness(self.notifier, config.health.ready_on)
        self.parts = Parts(log)
        for part in (
            Followers(
                config.logs.follow, classifier=lambda: self.classifier, gen=lambda: self._launcher.gen,
                post=self.events.put, count_line=self.metrics.lines, clock=clock,
            ),
            ProbeLoop(config.probes, self.events.put),
            self._health,
            self._readiness,
        ):
            self.parts.add(part)

    # -- public -----------------------------------------------------------------------------
    def attach(self, part: Part) -> None:
        """Add a part the loop starts with the others, reconfigures on reload and stops
        at exit (the CLI attaches the control socket and the web server)."""
        self.parts.add(part)

    def run(self) -> int:
        """Supervise until stopped; returns the process exit code."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.parts.start_all()
            self._launcher.end_leftover(self.config.trainer.stop_timeout, self._log_event)
            self._log_event("swarmd_started", version=__version__, config=self.config.source, pid=os.getpid())
            if self._must_wait_for_network():
                self._transition(State.DEGRADED, "waiting_for_network", "network probe has not succeeded yet")
                self._restart_at = self.clock.monotonic()
            else:
                self._start_child()
            while self.exit_code is None:
                self._loop_once()
        finally:
            self.close()
        return self.exit_code

    def snapshot(self) -> dict[str, Any]:
        return self.board.snapshot()

    def post(self, event: Any) -> None:
        self.events.put(event)

    def start(self) -> None:
        """The first start (tests drive the machine with `handle`/`tick` after this)."""
        self._start_child()

    def handle(self, event: Any) -> None:
        """Process one event as the loop would (the seam for replaying histories)."""
        self._dispatch(event)
        self._publish()

    def tick(self) -> None:
        self._tick(self.clock.monotonic())
        self._publish()

    def close(self) -> None:
        self._launcher.close()
        self.parts.stop_all()
        self._trainer_log.close()

    @property
    def restarts(self) -> int:
        return self.board.restarts

    @property
    def generation(self) -> int:
        """The current trainer run's number; lines of older runs are not acted on."""
        return self._launcher.gen

    @property
    def current(self) -> Run | None:
        """The trainer run in progress, if any (read it; never change it)."""
        return self._run

    @property
    def settling(self) -> bool:
        """True while a run has exited or is being stopped and its worker's event is due."""
        run = self._run
        return run is not None and (run.stopping or run.exited is not None)

    @property
    def next_start_at(self) -> float | None:
        """When (monotonic) the next trainer start is due, or None."""
        return self._restart_at

    # -- loop ---------------------------------------------------------------------------------
    def _loop_once(self) -> None:
        now = self.clock.monotonic()
        timeout = max(0.0, min(self._next_tick, self._readiness.watchdog_due()) - now)
        try:
            event = self.events.get(timeout=min(timeout, TICK))
        except queue.Empty:
            event = None
        if event is not None:
            self._dispatch(event)
        now = self.clock.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + TICK
            self._tick(now)
        self._readiness.maybe_watchdog(now)
        if self.board.due(now):
            self._publish()

    def _dispatch(self, event: Any) -> None:
        if isinstance(event, LineSeen):
            self._on_line(event)
        elif isinstance(event, ChildExited):
            self._on_exit(event)
        elif isinstance(event, ChildDown):
            self._on_down(event)
        elif isinstance(event, OsSignal):
            self._on_os_signal(event.signum)
        elif isinstance(event, ControlRequest):
            self._on_control(event.verb)
        elif isinstance(event, ProbeDone):
            self._on_probe(event.result)

    # -- the child ------------------------------------------------------------------------------
    def _start_child(self) -> None:
        cfg = self.config.trainer
        env = child_env({**self._base_env, **dict(cfg.env)})
        if self._oom_next and self.config.restart.oom_fallback_env:
            env.update(dict(self.config.restart.oom_fallback_env))
            self._log_event("oom_fallback_applied", keys=sorted(k for k, _ in self.config.restart.oom_fallback_env))
        now = self.clock.monotonic()
        try:
            run = self._launcher.spawn(cfg, env, self._line_callback)
        except SpawnError as err:
            self._give_up(Decision(Action.GIVE_UP, "spawn_failed", str(err)))
            return
        except OSError as err:  # EAGAIN and friends: the OS may recover
            self._schedule_restart(self.policy.restart(Action.RESTART, "spawn_oserror", str(err), now))
            return
        self._run = run
        self.policy.child_started(now)
        self._restart_at = None
        self._log_event("child_started", pid=run.child.pid, argv=list(cfg.command), cwd=str(cfg.cwd))
        self._transition(State.STARTING, "child_started", f"pid {run.child.pid}")
        if self._readiness.ready_on == "start":
            self._mark_ready("started")

    def _line_callback(self, gen: int) -> Callable[[str, float], None]:
        """Runs in the reader thread: classify, and post only what matters.

        Bare tqdm frames (progress without a round number) are coalesced to a few per
        second, so a trainer printing 100k frames/s cannot flood the loop.
        """
        put = self.events.put
        last_frame = [0.0]

        def on_line(line: str, t: float) -> None:
            sig = self.classifier.classify(line)
            if sig is None:
                return
            if sig.verdict is Verdict.HEALTHY_PROGRESS and sig.round is None:
                if t - last_frame[0] < _FRAME_COALESCE:
                    return
                last_frame[0] = t
            put(LineSeen(gen, sig, t, source))

        source = "stdout"
        return on_line


    # -- events -----------------------------------------------------------------------------------
    def _on_line(self, ev: LineSeen) -> None:
        run = self._run
        sig = ev.signal
        now = self.clock.monotonic()
        if run is None or ev.gen != run.gen or self.state not in _LIVE:
            self.board.signal_seen(sig, live=False)
            return  # the dying child's last words: logged in trainer.log, not acted on
        self.board.signal_seen(sig, live=True)
        if sig.verdict in (Verdict.HEALTHY_PROGRESS, Verdict.HEALTHY_IDLE) and sig.kind not in _NOT_READY_KINDS:
            self.board.last_progress_mono = now
            self._on_progress(sig.kind)
        decision = self.policy.on_signal(sig, now)
        if decision.action is not Action.NONE:
            self.metrics.detection_latency(max(0.0, now - ev.t))
            self._apply(decision)

    def _on_progress(self, why: str) -> None:
        if self.state is State.STARTING:
            self._transition(State.RUNNING, "progress_seen", why)
            self._mark_ready(why)  # after the transition, so READY=1 carries STATUS=running
        elif self.state is State.RECONNECTING and not self.policy.reconnect_pending:
            self._transition(State.RUNNING, "reconnected", why)
        elif self.state is State.DEGRADED and self._network_ok is not False:
            self._transition(State.RUNNING, "progress_seen", why)

    def _on_exit(self, ev: ChildExited) -> None:
        run = self._run
        if run is None or ev.gen != run.gen:
            return
        run.exited = ev.returncode
        self._log_event("child_exited", pid=run.child.pid, returncode=ev.returncode, expected=run.stopping)
        if run.stopping:
            return  # the stop worker reports ChildDown
        decision = self.policy.on_exit(ev.returncode, self.clock.monotonic())
        if decision.action is Action.NONE:
            self._pending = decision
            self._transition(State.STOPPING, decision.reason, decision.evidence)
            self._begin_stop()
        else:
            self._apply(decision)

    def _on_down(self, ev: ChildDown) -> None:
        run = self._run
        if run is None or ev.gen != run.gen:
            return
        self._log_event(
            "child_down", returncode=ev.returncode, escalated=ev.escalated, orphans_ended=ev.orphans, sockets_removed=ev.sockets
        )
        self.metrics.lines(run.new_lines())
        self._launcher.finished(run)
        self._run = None
        decision = self._pending
        self._pending = None
        if self.state is State.STOPPING:
            self._transition(State.STOPPED, "stopped", "trainer stopped")
            self.notifier.stopping()
            self.exit_code = 0
        elif self.state is State.FATAL:
            if self.config.restart.on_fatal == "exit":
                self.exit_code = 1
        elif decision is not None:
            self._restart_at = self.clock.monotonic() + max(0.0, decision.delay - (self.clock.monotonic() - self._decided_at))
            self._next_tick = min(self._next_tick, self._restart_at)  # start on time, not on the next tick
            self._transition(State.BACKOFF, decision.reason, decision.evidence, next_backoff=round(decision.delay, 3))

    def _on_os_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self.state is State.STOPPING:
                self._escalate_stop(name)
                return
            self._stop_requested(name)
        elif signum == signal.SIGHUP:
            if self.state in (State.STOPPING, State.STOPPED):
                self._log_event("sighup_ignored", reason="shutting down")
                return
            self._reload("SIGHUP")
        elif signum == signal.SIGUSR1:
            self._apply(Decision(Action.RECONNECT_DHT, "operator_sigusr1", "SIGUSR1 received by swarmd"))

    def _on_control(self, verb: str) -> None:
        if verb == "stop":
            self._stop_requested("control:stop")
        elif verb == "reload":
            self._reload("control:reload")
        elif verb == "restart":
            self._force_restart("control:restart", "restart requested over the control socket")

    def _on_probe(self, result: ProbeResult) -> None:
        was = self._network_ok
        self._network_ok = result.ok
        if result.ok is False and was is not False:
            self._log_event("network_down", level="warning", detail=result.detail)
            if self.state in (State.RUNNING, State.STARTING):
                self._transition(State.DEGRADED, "network_down", result.detail)
        elif result.ok and was is False:
            self._log_event("network_up", detail=result.detail)
            if self.state is State.DEGRADED and self._run is not None:
                self._transition(State.RUNNING, "network_up", result.detail)

    # -- ticks ---------------------------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        if self.state in (State.BACKOFF, State.DEGRADED) and self._run is None and self._restart_at is not None:
            if now >= self._restart_at:
                if self._must_wait_for_network():
                    if self.state is not State.DEGRADED:
                        self._transition(State.DEGRADED, "waiting_for_network", "network probe failing; start postponed")
                    return
                self._start_child()
            return
        run = self._run
        if run is not None:
            self.metrics.lines(run.new_lines())
        if run is None or self.state not in _LIVE or run.exited is not None:
            return
        self._launcher.remember_tree(run)
        health, beat = self._health.check(run, self._network_ok)
        if beat is not None:
            steps = beat.step_seconds
            self.policy.activity(now, max(steps) if steps else None)
            self._on_heartbeat(beat)
        decision = self.policy.on_tick(now, health)
        if decision.action is not Action.NONE:
            self._apply(decision)
        elif decision.reason == "reconnected" and self.state is State.RECONNECTING:
            self._transition(State.RUNNING, "reconnected", decision.evidence)

    def _on_heartbeat(self, beat: Heartbeat) -> None:
        self.board.heartbeat(beat)
        self.metrics.set_round(beat.round)
        self.metrics.set_peers(beat.peers)
        if beat.last_reward is not None:
            self.metrics.set_reward(beat.last_reward)
        self.board.last_progress_mono = self.clock.monotonic()
        self._on_progress("heartbeat")

    # -- actions ------------------------------------------------------------------------------------
    def _apply(self, decision: Decision) -> None:
        self.board.decided(decision.action.value, decision.reason, decision.evidence, self.clock.wall())
        if decision.action is Action.NONE:
            return
        self._log_event(
            "decision",
            action=decision.action.value,
            reason=decision.reason,
            evidence=decision.evidence[:1000],
            next_backoff=round(decision.delay, 3) if decision.delay else None,
        )
        if decision.action is Action.RECONNECT_DHT:
            self._request_reconnect(decision)
        elif decision.action is Action.GIVE_UP:
            self._give_up(decision)
        else:
            self._schedule_restart(decision)

    def _request_reconnect(self, decision: Decision) -> None:
        run = self._run
        if run is None or run.exited is not None:
            return
        try:
            run.child.send_signal(signal.SIGUSR1)
        except ProcessLookupError:
            return
        self._transition(State.RECONNECTING, decision.reason, decision.evidence)

    def _schedule_restart(self, decision: Decision) -> None:
        self.board.restarted(decision.reason, self.clock.wall())
        self.metrics.restart(decision.reason)
        self._oom_next = decision.action is Action.RESTART_AFTER_CLEANUP
        self._pending = decision
        self._decided_at = self.clock.monotonic()
        if self._run is None:
            self._restart_at = self._decided_at + decision.delay
            self._next_tick = min(self._next_tick, self._restart_at)
            self._transition(State.BACKOFF, decision.reason, decision.evidence, next_backoff=round(decision.delay, 3))
            return
        self._transition(State.RESTARTING, decision.reason, decision.evidence, next_backoff=round(decision.delay, 3))
        self._begin_stop()

    def _give_up(self, decision: Decision) -> None:
        self._transition(State.FATAL, decision.reason, decision.evidence)
        self._log_event(
            "alert",
            level="error",
            reason=decision.reason,
            evidence=decision.evidence[:1000],
            fix="restarting cannot fix this; correct the cause, then `kill -HUP` swarmd (or `swarmd restart`)",
        )
        self.notifier.status(f"fatal: {decision.reason}")
        if self._run is not None:
            self._begin_stop()
        elif self.config.restart.on_fatal == "exit":
            self.exit_code = 1

    def _force_restart(self, reason: str, evidence: str) -> None:
        """Operator-forced restart: no back-off (only what is left of `min_interval`),
        leaves `fatal`, resets the crash window."""
        self.policy.backoff.reset()
        decision = Decision(Action.RESTART, reason, evidence, self.policy.backoff.min_wait(self.clock.monotonic()))
        self.board.decided(Action.RESTART.value, reason, evidence, self.clock.wall())
        self._log_event("decision", action="restart", reason=reason, evidence=evidence)
        if self._run is not None and self._run.stopping:
            self._pending = decision
            self._decided_at = self.clock.monotonic()
            if self.state is State.FATAL:
                self._transition(State.RESTARTING, reason, evidence)
            return
        self._schedule_restart(decision)

    def _reload(self, why: str) -> None:
        self.notifier.reloading(int(self.clock.monotonic() * 1_000_000))
        path = self._config_path
        if path is not None:
            try:
                new = load(path)
            except ConfigError as err:
                # The trainer keeps running on the old config: a typo must cost nothing.
                self._log_event(
                    "config_rejected", level="error", error=str(err), kept=self.config.source,
                    fix="correct the file, then send SIGHUP again",
                )
                self.notifier.ready(self._status_line())
                return
            self._apply_rules(new)
            self.config = new
            self._log_event("config_reloaded", config=new.source)
        self._force_restart(why, "reload and restart requested")
        self.notifier.ready(self._status_line())

    def _stop_requested(self, why: str) -> None:
        self.notifier.stopping()
        self._transition(State.STOPPING, "stop_requested", why)
        if self._run is None:
            self.exit_code = 0
            self._transition(State.STOPPED, "stopped", why)
            return
        self._pending = None
        self._begin_stop()

    def _escalate_stop(self, why: str) -> None:
        run = self._run
        self._log_event("stop_escalated", reason=f"second {why} during stop")
        if run is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                run.child.signal_group(signal.SIGKILL)

    def _begin_stop(self) -> None:
        if self._run is not None:
            self._launcher.begin_stop(self._run, self.config.trainer.stop_timeout)

    # -- helpers ---------------------------------------------------------------------------------------
    def _apply_rules(self, config: Config) -> None:
        self.classifier = Classifier(build_rules(config.rules))
        old = getattr(self, "policy", None)
        backoff = Backoff(config.restart)
        if old is not None:
            backoff.keep_last_start(old.backoff)
        self.policy = Policy(config.trainer, config.health, backoff)

    def _transition(self, to: State, reason: str, evidence: str = "", **extra: Any) -> None:
        frm = self.state
        self.state = to
        self.board.changed()  # `swarmd status` sees a transition at once
        self.metrics.set_state(to)
        self._log_event(
            "state_changed", frm=frm.value, to=to.value, reason=reason, evidence=evidence[:1000], **extra
        )
        self.notifier.status(self._status_line())

    def _log_event(self, event: str, level: str = "info", **fields: Any) -> None:
        if "frm" in fields:
            fields["from"] = fields.pop("frm")
        fields.setdefault("state", self.state.value)
        fields.setdefault("restarts", self.restarts)
        getattr(self.log, level)(event, **fields)

    def _log_write_failed(self, err: OSError) -> None:
        # Called from a reader thread; structlog is thread-safe and this fires once per episode.
        self.log.error(
            "trainer_log_write_failed",
            error=str(err),
            path=str(self.config.logs.trainer_log),
            fix="free space in the log directory; lines are buffered in memory meanwhile",
        )

    def _mark_ready(self, why: str) -> None:
        if self._readiness.mark_ready(self._status_line()):
            self._log_event("ready", reason=why)

    def _status_line(self) -> str:
        return self.board.status_line(self.state, self._health.last)

    def _must_wait_for_network(self) -> bool:
        probes = self.config.probes
        configured = bool(probes.urls or probes.tcp or probes.dns)
        if not (configured and probes.require_network):
            return False
        if self._network_ok is None:
            self._network_ok = probe_network(probes).ok
        return self._network_ok is False

    def _publish(self) -> None:
        run = self._run
        now = self.clock.monotonic()
        beat = self._health.last
        self.board.publish(
            now,
            state=self.state.value,
            pid=run.child.pid if run else None,
            uptime_s=round(now - run.started_at, 1) if run else None,
            peers=beat.peers if beat else None,
            peer_id=beat.peer_id if beat else "",
            animal=beat.animal if beat else "",
            next_start_in_s=None if self._restart_at is None else round(max(0.0, self._restart_at - now), 1),
            config_path=self.config.source,
            stall_threshold=self.policy.stall_threshold(),
        )

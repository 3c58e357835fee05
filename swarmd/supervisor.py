"""The state machine and event loop that wires classify, policy, process, capture,
probes, notify and the log together.

One thread owns all state: the loop below. Everything else (pipe readers, the exit
waiter, stop workers, probes, the control socket, signal handlers) only posts events
to `self.events`. No regex and no threshold lives here: they are in `classify`,
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
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd import __version__
from swarmd.backoff import Backoff
from swarmd.capture import PipeCapture
from swarmd.classify import Classifier, build_rules, is_progress
from swarmd.cleanup import end_leftover_tree, find_leftover_tree, stop_and_clean
from swarmd.clock import Clock
from swarmd.config import Config, load
from swarmd.control import ControlRequest
from swarmd.domain import Action, Decision, Health, ProbeResult, State, Verdict
from swarmd.errors import ConfigError, SpawnError
from swarmd.events import ChildDown, ChildExited, LineSeen, ProbeDone
from swarmd.exit_context import CONFIRMED_OOM_KINDS
from swarmd.follow import FileFollower
from swarmd.heartbeat import Heartbeat, read_heartbeat
from swarmd.metrics import Metrics
from swarmd.notify import Notifier, child_env
from swarmd.policy import Policy
from swarmd.probes import p2pd_alive, probe_network
from swarmd.process import (
    Child,
    PidFile,
    ProcRef,
    Spawner,
    snapshot_tree,
)
from swarmd.redact import redact_bytes, redact_text
from swarmd.rotating import RotatingLog
from swarmd.signal_bridge import OsSignal

TICK = 1.0
_CAPTURE_GRACE = 2.0  # after the group is gone, wait this long for the pipe's EOF
_EXIT_EVIDENCE_WAIT = 0.25  # after an exit, wait this long at most for the pipe's EOF
_HISTORY = 500  # restarts / rewards kept for the status page
_FRAME_COALESCE = 0.25
_LIVE = (State.STARTING, State.RUNNING, State.DEGRADED, State.RECONNECTING, State.OPERATOR_NEEDED)


@dataclass(slots=True)
class _Run:
    """One trainer process and the threads that serve it."""

    gen: int
    child: Child
    capture: PipeCapture
    started_at: float
    started_wall: float
    refs: dict[tuple[int, float], ProcRef]
    exited: int | None = None
    stopping: bool = False
    lines_counted: int = 0
    p2pd_seen: bool = False  # a p2pd ran in this tree once: its absence now means it died


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
        self.spawner = spawner
        self.log = log
        self.notifier = notifier or Notifier.from_env({})
        self.metrics = metrics or Metrics()
        self.events: queue.SimpleQueue[Any] = events if events is not None else queue.SimpleQueue()
        self._base_env = dict(env if env is not None else os.environ)
        self._config_path = config_path
        self.state = State.STARTING
        self.exit_code: int | None = None
        self._gen = 0
        self._run: _Run | None = None
        self._restart_at: float | None = None
        self._pending: Decision | None = None
        self._decided_at = 0.0
        self._next_publish = 0.0
        self._oom_next = False
        self._ready_sent = False
        self._network_ok: bool | None = None
        self._last_beat: Heartbeat | None = None
        self._beat_seen: float | None = None
        self._next_tick = 0.0
        self._next_watchdog = 0.0
        self._started_mono = clock.monotonic()
        self.restarts = 0
        self._restarts_by_reason: Counter[str] = Counter()
        self._restart_history: deque[tuple[float, str]] = deque(maxlen=_HISTORY)
        self._reward_history: deque[tuple[int, float]] = deque(maxlen=_HISTORY)
        self._last_decision: dict[str, Any] = {}
        self._last_signal: dict[str, Any] = {}
        self._last_progress_mono: float | None = None
        self._round: int | None = None
        self._stage: int | None = None
        self._snapshot_lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._apply_config(config)
        self._trainer_log = RotatingLog(
            config.logs.trainer_log,
            config.logs.max_bytes,
            config.logs.keep,
            config.logs.compress,
            on_error=self._log_write_failed,
        )
        self._followers: FileFollower | None = None
        self._probe_stop = threading.Event()
        self._closing = threading.Event()
        self._pidfile = PidFile(config.state_dir / "trainer.pid")

    # -- public -----------------------------------------------------------------------------
    def run(self) -> int:
        """Supervise until stopped; returns the process exit code."""
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        self._end_leftover()
        self._start_followers()
        self._start_probes()
        self._log_event("swarmd_started", version=__version__, config=self.config.source, pid=os.getpid())
        if self._must_wait_for_network():
            self._transition(State.DEGRADED, "waiting_for_network", "network probe has not succeeded yet")
            self._restart_at = self.clock.monotonic()
        else:
            self._start_child()
        try:
            while self.exit_code is None:
                self._loop_once()
        finally:
            self._shutdown_threads()
        return self.exit_code

    def snapshot(self) -> dict[str, Any]:
        with self._snapshot_lock:
            return dict(self._snapshot)

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

    # -- loop ---------------------------------------------------------------------------------
    def _loop_once(self) -> None:
        now = self.clock.monotonic()
        timeout = max(0.0, min(self._next_tick, self._next_watchdog_due()) - now)
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
        self._maybe_watchdog(now)
        if now >= self._next_publish:
            self._next_publish = now + 0.2
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
        stdin = "".join(f"{line}\n" for line in cfg.stdin_lines).encode() if cfg.stdin_lines else None
        now = self.clock.monotonic()
        try:
            child = self.spawner.spawn(cfg.command, env, cfg.cwd, stdin)
        except SpawnError as err:
            self._give_up(Decision(Action.GIVE_UP, "spawn_failed", str(err)))
            return
        except OSError as err:  # EAGAIN and friends: the OS may recover
            self._schedule_restart(self.policy.restart(Action.RESTART, "spawn_oserror", str(err), now))
            return
        self._gen += 1
        gen = self._gen
        capture = PipeCapture(
            child.stdout_fd,
            self._trainer_log,
            self._line_callback(gen, "stdout"),
            clock=self.clock,
            name=f"capture-{gen}",
            transform=redact_bytes,
        )
        self._run = _Run(gen, child, capture, now, self.clock.wall(), {})
        self._remember_tree()
        capture.start()
        threading.Thread(target=self._wait_child, args=(gen, child), name=f"waiter-{gen}", daemon=True).start()
        self._pidfile.write(child.pid, child.create_time, os.getpid())
        self.policy.child_started(now)
        self._restart_at = None
        self._beat_seen = None
        self._log_event("child_started", pid=child.pid, argv=list(cfg.command), cwd=str(cfg.cwd))
        self._transition(State.STARTING, "child_started", f"pid {child.pid}")
        if self.config.health.ready_on == "start":
            self._mark_ready("started")

    def _line_callback(self, gen: int, source: str) -> Callable[[str, float], None]:
        """Runs in the reader thread: classify, and post only what matters.

        Bare tqdm frames (progress without a round number) are coalesced to a few per
        second, so a trainer printing 100k frames/s cannot flood the loop.
        """
        classify = self.classifier.classify
        put = self.events.put
        last_frame = [0.0]

        def on_line(line: str, t: float) -> None:
            sig = classify(line)
            if sig is None:
                return
            if sig.verdict is Verdict.HEALTHY_PROGRESS and sig.round is None:
                if t - last_frame[0] < _FRAME_COALESCE:
                    return
                last_frame[0] = t
            put(LineSeen(gen, sig, t, source))

        return on_line

    def _wait_child(self, gen: int, child: Child) -> None:
        """Blocks in wait() so an exit is seen at once (kill -9 -> replacement in < 1 s)."""
        while not self._closing.is_set():
            began = time.monotonic()
            rc = child.wait(None)
            if rc is not None:
                # Let the reader deliver the child's last lines first, so the exit is
                # judged with its evidence (the error line usually comes just before).
                # Bounded: a grandchild may hold the pipe open.
                run = self._run
                if run is not None and run.gen == gen:
                    run.capture.eof.wait(_EXIT_EVIDENCE_WAIT)
                self.events.put(ChildExited(gen, rc))
                return
            if time.monotonic() - began < 0.05:
                self._closing.wait(0.05)  # a Child whose wait() does not block

    def _remember_tree(self) -> None:
        run = self._run
        if run is None or run.exited is not None:
            return
        known = len(run.refs)
        for ref in snapshot_tree(run.child.pid):
            run.refs[(ref.pid, ref.create_time)] = ref
        if len(run.refs) != known:
            self._pidfile.write(run.child.pid, run.child.create_time, os.getpid(), run.refs.values())

    # -- events -----------------------------------------------------------------------------------
    def _on_line(self, ev: LineSeen) -> None:
        run = self._run
        sig = ev.signal
        now = self.clock.monotonic()
        self._last_signal = {"kind": sig.kind, "verdict": sig.verdict.value, "line": redact_text(sig.line[:500])}
        if run is None or ev.gen != run.gen or self.state not in _LIVE:
            return  # the dying child's last words: logged in trainer.log, not acted on
        if sig.round is not None:
            self._round = sig.round
            self._stage = sig.stage if sig.stage is not None else self._stage
        if is_progress(sig):
            self._last_progress_mono = now
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
        elif self.state is State.OPERATOR_NEEDED:
            self._transition(State.RUNNING, "operator_done", why)

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
            self._begin_stop(decision)
        else:
            self._apply(decision)

    def _on_down(self, ev: ChildDown) -> None:
        run = self._run
        if run is None or ev.gen != run.gen:
            return
        self._log_event(
            "child_down", returncode=ev.returncode, escalated=ev.escalated, orphans_ended=ev.orphans, sockets_removed=ev.sockets
        )
        self._count_lines(run)
        run.child.close()
        self._run = None
        self._pidfile.remove()
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
            self._count_lines(run)
        if run is None or self.state not in _LIVE or run.exited is not None:
            return
        self._remember_tree()
        health = self._health(run, now)
        decision = self.policy.on_tick(now, health)
        if decision.action is not Action.NONE:
            self._apply(decision)
        elif decision.reason == "reconnected" and self.state is State.RECONNECTING:
            self._transition(State.RUNNING, "reconnected", decision.evidence)

    def _count_lines(self, run: _Run) -> None:
        """Feed the lines counter per tick, not per line (the reader's hot path)."""
        total = run.capture.lines_total
        if total > run.lines_counted:
            self.metrics.lines(total - run.lines_counted)
            run.lines_counted = total

    def _health(self, run: _Run, now: float) -> Health:
        beat = read_heartbeat(self.config.health.heartbeat_file)
        alive: bool | None = None
        peers: int | None = None
        if beat is not None and beat.pid in {ref.pid for ref in run.refs.values()}:
            if beat != self._last_beat:
                steps = beat.step_seconds
                self.policy.activity(now, max(steps) if steps else None)
                self._on_heartbeat(beat)
            peers = beat.peers
            # Without `seen` the probe can only say True or "unknown": a p2pd killed
            # under a live trainer would never be reported gone.
            alive = p2pd_alive(run.child.pid, seen=run.p2pd_seen, create_time=run.child.create_time)
            run.p2pd_seen = run.p2pd_seen or alive is True
        self._last_beat = beat
        return Health(network_ok=self._network_ok, p2pd_alive=alive, peers=peers)

    def _on_heartbeat(self, beat: Heartbeat) -> None:
        if beat.round is not None:
            self._round, self._stage = beat.round, beat.stage
        self.metrics.set_round(beat.round)
        self.metrics.set_peers(beat.peers)
        if beat.last_reward is not None:
            self.metrics.set_reward(beat.last_reward)
            if beat.round is not None and (not self._reward_history or self._reward_history[-1][0] != beat.round):
                self._reward_history.append((beat.round, beat.last_reward))
        self._last_progress_mono = self.clock.monotonic()
        self._on_progress("heartbeat")

    # -- actions ------------------------------------------------------------------------------------
    def _apply(self, decision: Decision) -> None:
        self._last_decision = {
            "action": decision.action.value,
            "reason": decision.reason,
            "evidence": redact_text(decision.evidence[:500]),
            "at": self.clock.wall(),
        }
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
        elif decision.action is Action.WAIT_OPERATOR:
            self._wait_operator(decision)
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
        self.restarts += 1
        self._restarts_by_reason[decision.reason] += 1
        self._restart_history.append((self.clock.wall(), decision.reason))
        self.metrics.restart(decision.reason)
        # Only the kernel's own OOM record proves an OOM (a SIGKILL may be anything).
        self._oom_next = decision.action is Action.RESTART_AFTER_CLEANUP and decision.reason in CONFIRMED_OOM_KINDS
        self._pending = decision
        self._decided_at = self.clock.monotonic()
        if self._run is None:
            self._restart_at = self._decided_at + decision.delay
            self._next_tick = min(self._next_tick, self._restart_at)
            self._transition(State.BACKOFF, decision.reason, decision.evidence, next_backoff=round(decision.delay, 3))
            return
        self._transition(State.RESTARTING, decision.reason, decision.evidence, next_backoff=round(decision.delay, 3))
        self._begin_stop(decision)

    def _wait_operator(self, decision: Decision) -> None:
        """The node waits for a person (login, API key, a prompt): say what to do, and
        neither restart nor stall-restart it until it makes progress again."""
        self._transition(State.OPERATOR_NEEDED, decision.reason, decision.evidence)
        self._log_event("alert", level="warning", reason=decision.reason, evidence=decision.evidence[:1000],
                        fix="the node waits for its operator: do what the evidence's fix says; swarmd resumes on progress")
        self.notifier.status(f"operator needed: {decision.evidence[:200]}")

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
            self._begin_stop(decision)
        elif self.config.restart.on_fatal == "exit":
            self.exit_code = 1

    def _force_restart(self, reason: str, evidence: str) -> None:
        """Operator-forced restart: no back-off (only what is left of `min_interval`),
        leaves `fatal`, resets the crash window."""
        self.policy.backoff.reset()
        decision = Decision(Action.RESTART, reason, evidence, self.policy.backoff.min_wait(self.clock.monotonic()))
        self._last_decision = {
            "action": Action.RESTART.value,
            "reason": reason,
            "evidence": redact_text(evidence[:500]),
            "at": self.clock.wall(),
        }
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
            self._apply_config(new)
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
        if not self._run.stopping:
            self._begin_stop(Decision(Action.NONE, "stop_requested", why))

    def _escalate_stop(self, why: str) -> None:
        run = self._run
        self._log_event("stop_escalated", reason=f"second {why} during stop")
        if run is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                run.child.signal_group(signal.SIGKILL)

    def _begin_stop(self, decision: Decision) -> None:
        run = self._run
        if run is None or run.stopping:
            return
        run.stopping = True
        self._remember_tree()
        threading.Thread(target=self._stop_worker, args=(run,), name=f"stopper-{run.gen}", daemon=True).start()

    def _stop_worker(self, run: _Run) -> None:
        """Off the loop: stop and clean up the tree, then tell the loop."""
        # run.refs was recorded by the loop, last in _begin_stop.
        result = stop_and_clean(run.child, list(run.refs.values()), self.config.trainer.stop_timeout, self.log)
        run.capture.stop(_CAPTURE_GRACE)
        self.events.put(ChildDown(run.gen, result.returncode, result.escalated, result.orphans, result.sockets))

    def _end_leftover(self) -> None:
        """The trainer tree a swarmd killed -9 left behind: end it before starting
        another, so one identity never runs twice."""
        found = find_leftover_tree(self._pidfile)
        if found is None:
            return
        pid, refs = found
        self._log_event(
            "leftover_trainer_found",
            pid=pid,
            processes=sorted(r.pid for r in refs),
            action="ending them before starting a new trainer",
        )
        ended = end_leftover_tree(pid, refs, self.config.trainer.stop_timeout)
        self._log_event("leftover_trainer_ended", processes=ended)
        self._pidfile.remove()

    # -- helpers ---------------------------------------------------------------------------------------
    def _apply_config(self, config: Config) -> None:
        self.classifier = Classifier(build_rules(config.rules))
        old = getattr(self, "policy", None)
        backoff = Backoff(config.restart)
        if old is not None:
            backoff.keep_last_start(old.backoff)
        self.policy = Policy(config.trainer, config.health, backoff)

    def _transition(self, to: State, reason: str, evidence: str = "", **extra: Any) -> None:
        frm = self.state
        self.state = to
        self._next_publish = 0.0  # `swarmd status` sees a transition at once
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
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(self._status_line())
            self._log_event("ready", reason=why)

    def _status_line(self) -> str:
        parts = [self.state.value]
        if self._round is not None:
            parts.append(f"round {self._round}")
        if self._last_beat is not None and self._last_beat.peers is not None:
            parts.append(f"{self._last_beat.peers} peers")
        parts.append(f"{self.restarts} restarts")
        return ", ".join(parts)

    def _next_watchdog_due(self) -> float:
        return self._next_watchdog if self.notifier.watchdog_interval() else float("inf")

    def _maybe_watchdog(self, now: float) -> None:
        interval = self.notifier.watchdog_interval()
        if interval and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + interval

    def _must_wait_for_network(self) -> bool:
        probes = self.config.probes
        configured = bool(probes.urls or probes.tcp or probes.dns)
        if not (configured and probes.require_network):
            return False
        if self._network_ok is None:
            self._network_ok = probe_network(probes).ok
        return self._network_ok is False

    def _start_followers(self) -> None:
        paths = list(self.config.logs.follow)
        if not paths:
            return
        classify = self.classifier
        put = self.events.put
        lines = self.metrics.lines

        def on_line(path: Path, line: str, t: float) -> None:
            lines(1)
            sig = classify.classify(line)
            if sig is not None:
                put(LineSeen(self._gen, sig, t, str(path)))

        self._followers = FileFollower(paths, on_line, clock=self.clock)
        self._followers.start()

    def _start_probes(self) -> None:
        probes = self.config.probes
        if not (probes.urls or probes.tcp or probes.dns):
            return

        def loop() -> None:
            while not self._probe_stop.wait(probes.interval):
                self.events.put(ProbeDone(probe_network(probes)))

        threading.Thread(target=loop, name="probes", daemon=True).start()

    def close(self) -> None:
        self._shutdown_threads()

    def _shutdown_threads(self) -> None:
        self._closing.set()
        self._probe_stop.set()
        if self._followers is not None:
            self._followers.stop()
        self._trainer_log.close()

    def _publish(self) -> None:
        run = self._run
        now = self.clock.monotonic()
        beat = self._last_beat
        progress_age = None if self._last_progress_mono is None else now - self._last_progress_mono
        snap: dict[str, Any] = {
            "state": self.state.value,
            "pid": run.child.pid if run else None,
            "supervisor_pid": os.getpid(),
            "uptime_s": round(now - run.started_at, 1) if run else None,
            "swarmd_uptime_s": round(now - self._started_mono, 1),
            "restarts": self.restarts,
            "restarts_by_reason": dict(self._restarts_by_reason),
            "last_decision": dict(self._last_decision),
            "last_signal": dict(self._last_signal),
            "round": self._round,
            "stage": self._stage,
            "peers": beat.peers if beat else None,
            "peer_id": beat.peer_id if beat else "",
            "animal": beat.animal if beat else "",
            "last_progress_age_s": None if progress_age is None else round(progress_age, 1),
            "progressing": progress_age is not None and progress_age < self.policy.stall_threshold(),
            "reward_history": [list(x) for x in self._reward_history],
            "restart_history": [list(x) for x in self._restart_history],
            "next_start_in_s": None if self._restart_at is None else round(max(0.0, self._restart_at - now), 1),
            "config_path": self.config.source,
            "version": __version__,
        }
        with self._snapshot_lock:
            self._snapshot = snap


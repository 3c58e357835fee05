"""The state machine: what the daemon does about each line, exit, stop, probe and tick.

`Machine` owns the state and the current trainer run, asks `policy` for decisions and
carries them out through the `Launcher` (start, stop), the readiness part (READY), the
status board and the log. It never reads the OS itself and holds no regex or threshold
(those are in `classify`, `policy`/`backoff` and `config`); the supervisor's loop
feeds it events and ticks.

States: starting -> running <-> degraded -> reconnecting | restarting -> backoff ->
starting ..., and fatal / stopping -> stopped. `transition` is the only writer of
`self.state` and logs every change with its reason and evidence line.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Mapping
from typing import Any

from swarmd.backoff import Backoff
from swarmd.chain_watch import ChainEvent
from swarmd.classify import Classifier
from swarmd.clock import Clock
from swarmd.config import Config
from swarmd.domain import Action, Decision, ProbeResult, Signal, State, Verdict
from swarmd.errors import SpawnError
from swarmd.events import ChildDown, ChildExited, KernelOom, LineSeen
from swarmd.exit_context import CONFIRMED_OOM_KINDS
from swarmd.health import HeartbeatHealth
from swarmd.heartbeat import Heartbeat
from swarmd.inputs import LineGate
from swarmd.metrics import Metrics
from swarmd.notify import Notifier, child_env
from swarmd.policy import Policy
from swarmd.probes import probe_network
from swarmd.readiness import Readiness
from swarmd.rules import is_progress
from swarmd.status_board import StatusBoard
from swarmd.trainer_run import Launcher, Run
from swarmd.user_rules import build_rules

_KERNEL_RECORD_WAIT = 0.2  # seconds a SIGKILL exit waits for the kernel's OOM record


def _tree(run: Run) -> dict[int, str]:
    return {ref.pid: ref.name for ref in run.refs.values()}


_LIVE = (State.STARTING, State.RUNNING, State.DEGRADED, State.RECONNECTING, State.OPERATOR_NEEDED)


class Machine:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        log: Any,
        notifier: Notifier,
        metrics: Metrics,
        launcher: Launcher,
        board: StatusBoard,
        health: HeartbeatHealth,
        readiness: Readiness,
        base_env: Mapping[str, str],
        post: Callable[[Any], None],
    ) -> None:
        self.config = config
        self.clock = clock
        self.log = log
        self.notifier = notifier
        self.metrics = metrics
        self.launcher = launcher
        self.board = board
        self._health = health
        self._readiness = readiness
        self._base_env = dict(base_env)
        self._post = post
        self.state = State.STARTING
        self.exit_code: int | None = None
        self.run: Run | None = None
        self.restart_at: float | None = None  # when the next start is due (monotonic)
        self.network_ok: bool | None = None
        self._pending: Decision | None = None
        self._decided_at = 0.0
        self._oom_next = False
        self._stdout_gate: LineGate | None = None  # the current run's pipe analyzer
        self._kernel_oom = ""  # the kernel's OOM record for a process of the current run
        # Set by the supervisor when the kernel log is readable: (tree, timeout) -> record.
        self.kernel_lookup: Callable[[Mapping[int, str], float], str] | None = None
        self.classifier = Classifier(build_rules(config.rules))
        self.policy = Policy(config.trainer, config.health, Backoff(config.restart))

    def begin(self) -> None:
        """The first start, or a wait for the network when it must come first."""
        if self.must_wait_for_network():
            self.transition(State.DEGRADED, "waiting_for_network", "network probe has not succeeded yet")
            self.restart_at = self.clock.monotonic()
        else:
            self.start_child()

    # -- the child ------------------------------------------------------------------------------
    def start_child(self) -> None:
        cfg = self.config.trainer
        env = child_env({**self._base_env, **dict(cfg.env)})
        if self._oom_next and self.config.restart.oom_fallback_env:
            env.update(dict(self.config.restart.oom_fallback_env))
            self.log_event("oom_fallback_applied", keys=sorted(k for k, _ in self.config.restart.oom_fallback_env))
        now = self.clock.monotonic()
        try:
            run = self.launcher.spawn(cfg, env, self._line_gate)
        except SpawnError as err:
            self._give_up(Decision(Action.GIVE_UP, "spawn_failed", str(err)))
            return
        except OSError as err:  # EAGAIN and friends: the OS may recover
            self._schedule_restart(self.policy.restart(Action.RESTART, "spawn_oserror", str(err), now))
            return
        self.run = run
        self._health.dht.watch(run.gen, run.child.pid, run.child.create_time)
        self.metrics.watch_reader("trainer", run.capture)
        self._kernel_oom = ""
        self.policy.child_started(now)
        self.restart_at = None
        self.log_event("child_started", pid=run.child.pid, argv=list(cfg.command), cwd=str(cfg.cwd))
        self.transition(State.STARTING, "child_started", f"pid {run.child.pid}")
        if self._readiness.ready_on == "start":
            self.mark_ready("started")

    def _line_gate(self, gen: int) -> Callable[[str, float], None]:
        gate = LineGate(lambda: self.classifier, self._post, lambda: gen, "stdout")
        self._stdout_gate = gate
        return gate.lines  # the pipe reader hands over each read's lines at once

    # -- events -----------------------------------------------------------------------------------
    def on_line(self, ev: LineSeen) -> None:
        run = self.run
        sig = ev.signal
        now = self.clock.monotonic()
        if run is None or ev.gen != run.gen or self.state not in _LIVE:
            self.board.signal_seen(sig, live=False)
            return  # the dying child's last words: logged in trainer.log, not acted on
        self.board.signal_seen(sig, live=True)
        if is_progress(sig):  # greetings, loading bars and login waits are not
            self.board.last_progress_mono = now
            self.metrics.set_last_progress(self.clock.wall())
            self._on_progress(sig.kind)
        decision = self.policy.on_signal(sig, now)
        if decision.action is not Action.NONE:
            self.metrics.detection_latency(max(0.0, now - ev.t))
            self.apply(decision)

    def _on_progress(self, why: str) -> None:
        if self.state is State.STARTING:
            self.transition(State.RUNNING, "progress_seen", why)
            self.mark_ready(why)  # after the transition, so READY=1 carries STATUS=running
        elif self.state is State.RECONNECTING and not self.policy.reconnect_pending:
            self.transition(State.RUNNING, "reconnected", why)
        elif self.state is State.DEGRADED and self.network_ok is not False:
            self.transition(State.RUNNING, "progress_seen", why)
        elif self.state is State.OPERATOR_NEEDED:
            self.transition(State.RUNNING, "operator_done", why)

    def on_exit(self, ev: ChildExited) -> None:
        run = self.run
        if run is None or ev.gen != run.gen:
            return
        run.exited = ev.returncode
        self.log_event("child_exited", pid=run.child.pid, returncode=ev.returncode, expected=run.stopping)
        if run.stopping:
            return  # the stop worker reports ChildDown
        crash = self._stdout_gate.last_crash() if self._stdout_gate is not None else None
        kernel_oom = self._kernel_oom
        if not kernel_oom and ev.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL) and self.kernel_lookup:
            # The kernel writes its record as it kills; our reader may be a moment behind.
            kernel_oom = self.kernel_lookup(_tree(run), _KERNEL_RECORD_WAIT)
        decision = self.policy.on_exit(ev.returncode, self.clock.monotonic(), crash=crash, kernel_oom=kernel_oom)
        if decision.action is Action.NONE:
            self._pending = decision
            self.transition(State.STOPPING, decision.reason, decision.evidence)
            self.begin_stop()
        else:
            self.apply(decision)

    def on_down(self, ev: ChildDown) -> None:
        run = self.run
        if run is None or ev.gen != run.gen:
            return
        self.log_event(
            "child_down", returncode=ev.returncode, escalated=ev.escalated, orphans_ended=ev.orphans, sockets_removed=ev.sockets
        )
        self.metrics.lines(run.new_lines())
        self.metrics.sync()  # the run's capture goes with it: count its last errors now
        self.launcher.finished(run)
        self._health.dht.unwatch()
        self.run = None
        decision = self._pending
        self._pending = None
        if self.state is State.STOPPING:
            self.transition(State.STOPPED, "stopped", "trainer stopped")
            self.notifier.stopping()
            self.exit_code = 0
        elif self.state is State.FATAL:
            if self.config.restart.on_fatal == "exit":
                self.exit_code = 1
        elif decision is not None:
            self.restart_at = self.clock.monotonic() + max(0.0, decision.delay - (self.clock.monotonic() - self._decided_at))
            self.transition(State.BACKOFF, decision.reason, decision.evidence, next_backoff=round(decision.delay, 3))

    def on_kernel_oom(self, ev: KernelOom) -> None:
        """The kernel killed a process for memory: ours (by pid and name in the recorded
        tree) -> restart after cleanup with the kernel's line as evidence."""
        run = self.run
        if run is None or self.state not in _LIVE or _tree(run).get(ev.pid, None) is None:
            return
        if _tree(run)[ev.pid][:15] != ev.name[:15]:
            return  # the pid was reused by a process that is not ours
        self._kernel_oom = ev.line
        self.log_event("kernel_oom", level="warning", pid=ev.pid, name=ev.name, evidence=ev.line[:500])
        if run.exited is not None:
            return  # the exit is being judged with it already
        decision = self.policy.on_signal(
            Signal("kernel_oom", Verdict.RESTART_AFTER_CLEANUP, ev.line, rule="kernel_log"), self.clock.monotonic()
        )
        self.apply(decision)

    def on_probe(self, result: ProbeResult) -> None:
        was = self.network_ok
        self.network_ok = result.ok
        if result.ok is False and was is not False:
            self.log_event("network_down", level="warning", detail=result.detail)
            if self.state in (State.RUNNING, State.STARTING):
                self.transition(State.DEGRADED, "network_down", result.detail)
        elif result.ok and was is False:
            self.log_event("network_up", detail=result.detail)
            if self.state is State.DEGRADED and self.run is not None:
                self.transition(State.RUNNING, "network_up", result.detail)

    @property
    def node_running(self) -> bool:
        return self.run is not None and self.run.exited is None and self.state in _LIVE

    def on_chain(self, events: list[ChainEvent]) -> None:
        """Chain events are logged; a round gone backwards (a reset chain: the node
        waits for a round it has played, for ever) restarts a running node."""
        for event in events:
            level = "info" if event.kind == "chain_rpc_up" else "warning"
            self.log_event(event.kind, level=level, evidence=event.evidence)
            if event.fault and self.node_running:
                self.apply(self.policy.restart(Action.RESTART, event.kind, event.evidence, self.clock.monotonic()))

    # -- ticks ---------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if self.state in (State.BACKOFF, State.DEGRADED) and self.run is None and self.restart_at is not None:
            if now >= self.restart_at:
                if self.must_wait_for_network():
                    if self.state is not State.DEGRADED:
                        self.transition(State.DEGRADED, "waiting_for_network", "network probe failing; start postponed")
                    return
                self.start_child()
            return
        run = self.run
        if run is not None:
            self.metrics.lines(run.new_lines())
        if run is None or self.state not in _LIVE or run.exited is not None:
            return
        self.launcher.remember_tree(run)
        health, beat = self._health.check(run, self.network_ok)
        if beat is not None:
            steps = beat.step_seconds
            self.policy.activity(now, max(steps) if steps else None)
            self._on_heartbeat(beat)
        decision = self.policy.on_tick(now, health)
        if decision.action is not Action.NONE:
            self.apply(decision)
        elif decision.reason == "reconnected" and self.state is State.RECONNECTING:
            self.transition(State.RUNNING, "reconnected", decision.evidence)

    def _on_heartbeat(self, beat: Heartbeat) -> None:
        self.board.heartbeat(beat)
        self.metrics.heartbeat(beat)
        self.metrics.set_last_progress(self.clock.wall())
        self.board.last_progress_mono = self.clock.monotonic()
        self._on_progress("heartbeat")

    # -- actions ------------------------------------------------------------------------------------
    def apply(self, decision: Decision) -> None:
        self.board.decided(decision.action.value, decision.reason, decision.evidence, self.clock.wall())
        if decision.action is Action.NONE:
            return
        self.log_event(
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
        run = self.run
        if run is None or run.exited is not None:
            return
        if run.child.handles_signal(signal.SIGUSR1) is not True:
            # SIGUSR1's default action terminates: a node without a handler is restarted.
            self.log_event(
                "reconnect_signal_not_caught", level="warning", pid=run.child.pid, reason=decision.reason,
                detail="the trainer has no SIGUSR1 handler (its default action would kill it); restarting instead",
                fix='set [health] reconnect = "restart" for a node that cannot re-bootstrap its DHT in place',
            )
            self.apply(self.policy.restart(Action.RESTART, decision.reason, decision.evidence, self.clock.monotonic()))
            return
        try:
            run.child.send_signal(signal.SIGUSR1)
        except ProcessLookupError:
            return
        self.transition(State.RECONNECTING, decision.reason, decision.evidence)

    def _schedule_restart(self, decision: Decision) -> None:
        self.board.restarted(decision.reason, self.clock.wall())
        self.metrics.restart(decision.reason)
        # Only the kernel's own OOM record proves an OOM (a SIGKILL may be anything).
        self._oom_next = decision.action is Action.RESTART_AFTER_CLEANUP and decision.reason in CONFIRMED_OOM_KINDS
        self._pending = decision
        self._decided_at = self.clock.monotonic()
        if self.run is None:
            self.restart_at = self._decided_at + decision.delay
            self.transition(State.BACKOFF, decision.reason, decision.evidence, next_backoff=round(decision.delay, 3))
            return
        self.transition(State.RESTARTING, decision.reason, decision.evidence, next_backoff=round(decision.delay, 3))
        self.begin_stop()

    def _wait_operator(self, decision: Decision) -> None:
        """The node waits for a person (login, API key, a prompt): say what to do, and
        neither restart nor stall-restart it until it makes progress again."""
        self.transition(State.OPERATOR_NEEDED, decision.reason, decision.evidence)
        self.log_event("alert", level="warning", reason=decision.reason, evidence=decision.evidence[:1000],
                       fix="the node waits for its operator: do what the evidence's fix says; swarmd resumes on progress")

    def _give_up(self, decision: Decision) -> None:
        self.transition(State.FATAL, decision.reason, decision.evidence)
        self.log_event(
            "alert",
            level="error",
            reason=decision.reason,
            evidence=decision.evidence[:1000],
            fix="restarting cannot fix this; correct the cause, then `swarmd reload` (or `swarmd restart`)",
        )
        self.notifier.status(f"fatal: {decision.reason}")
        if self.run is not None:
            self.begin_stop()
        elif self.config.restart.on_fatal == "exit":
            self.exit_code = 1

    def force_restart(self, reason: str, evidence: str) -> None:
        """Operator-forced restart: no back-off (only what is left of `min_interval`),
        leaves `fatal`, resets the crash window."""
        self.policy.backoff.reset()
        decision = Decision(Action.RESTART, reason, evidence, self.policy.backoff.min_wait(self.clock.monotonic()))
        self.board.decided(Action.RESTART.value, reason, evidence, self.clock.wall())
        self.log_event("decision", action="restart", reason=reason, evidence=evidence)
        if self.run is not None and self.run.stopping:
            self._pending = decision
            self._decided_at = self.clock.monotonic()
            if self.state is State.FATAL:
                self.transition(State.RESTARTING, reason, evidence)
            return
        self._schedule_restart(decision)

    def stop_requested(self, why: str) -> None:
        self.notifier.stopping()
        self.transition(State.STOPPING, "stop_requested", why)
        if self.run is None:
            self.exit_code = 0
            self.transition(State.STOPPED, "stopped", why)
            return
        self._pending = None
        self.begin_stop()

    def escalate_stop(self, why: str) -> None:
        run = self.run
        self.log_event("stop_escalated", reason=f"second {why} during stop")
        if run is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                run.child.signal_group(signal.SIGKILL)

    def begin_stop(self) -> None:
        if self.run is not None:
            self.launcher.begin_stop(self.run, self.config.trainer.stop_timeout)

    # -- helpers ---------------------------------------------------------------------------------------
    def apply_rules(self, config: Config) -> None:
        """A reloaded config: new rules and policy; the back-off keeps the last start
        (so `min_interval` still holds across the reload)."""
        self.config = config
        self.classifier = Classifier(build_rules(config.rules))
        backoff = Backoff(config.restart)
        backoff.keep_last_start(self.policy.backoff)
        self.policy = Policy(config.trainer, config.health, backoff)

    def transition(self, to: State, reason: str, evidence: str = "", **extra: Any) -> None:
        frm = self.state
        self.state = to
        self.board.changed()  # `swarmd status` sees a transition at once
        self.metrics.set_state(to)
        self.log_event(
            "state_changed", frm=frm.value, to=to.value, reason=reason, evidence=evidence[:1000], **extra
        )
        self.notifier.status(self.status_line())

    def log_event(self, event: str, level: str = "info", **fields: Any) -> None:
        if "frm" in fields:
            fields["from"] = fields.pop("frm")
        fields.setdefault("state", self.state.value)
        fields.setdefault("restarts", self.board.restarts)
        getattr(self.log, level)(event, **fields)

    def mark_ready(self, why: str) -> None:
        if self._readiness.mark_ready(self.status_line()):
            self.log_event("ready", reason=why)

    def status_line(self) -> str:
        return self.board.status_line(self.state, self._health.last)

    def must_wait_for_network(self) -> bool:
        probes = self.config.probes
        configured = bool(probes.urls or probes.tcp or probes.dns)
        if not (configured and probes.require_network):
            return False
        if self.network_ok is None:
            self.network_ok = probe_network(probes).ok
        return self.network_ok is False


"""Pure recovery decisions: classified lines, exits, health facts and the monotonic
clock in; a `Decision` (action, reason, evidence, delay) out.

No I/O, no sleeping, no logging: the supervisor logs the reason this returns. All
thresholds come from the config; all pacing from `Backoff`. The policy remembers only
what a decision needs (last activity, recent step times, pending reconnect), and that
memory is reset by `child_started` for every new trainer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from swarmd.backoff import Backoff
from swarmd.config import HealthConfig, TrainerConfig
from swarmd.domain import NO_DECISION, Action, Decision, Health, Signal, Verdict
from swarmd.exit_context import ExitFacts, judge_exit
from swarmd.operator import OPERATOR_KINDS, escalation
from swarmd.rules import NOT_PROGRESS_KINDS

_RECENT_STEPS = 32
_RECENT_FAULTS = 16  # fault lines of this run kept for the exit context
# A burst of the same DHT complaint must cost one SIGUSR1, not one per line.
_RECONNECT_COOLDOWN_FLOOR = 10.0


# Causes whose cure is visible in the health facts, not in progress: a trainer may keep
# printing progress with its p2pd dead or its peers gone, so progress does not prove that
# the SIGUSR1 worked (and counting it as success would SIGUSR1 for ever, never restart).
_DHT_FAULTS = frozenset({"p2pd_gone", "p2pd_silent", "dht_stopped"})
_HEALED_BY_HEALTH = _DHT_FAULTS | {"peers_lost"}


@dataclass(slots=True)
class _Reconnect:
    sent_at: float
    evidence: str
    cause: str = ""


class Policy:
    def __init__(self, trainer: TrainerConfig, health: HealthConfig, backoff: Backoff) -> None:
        self._trainer = trainer
        self._health = health
        self.backoff = backoff
        self._started_at = 0.0
        self._progressed = False  # real progress seen since the start: the start is over
        self._last_activity = 0.0
        self._steps: deque[float] = deque(maxlen=_RECENT_STEPS)
        self._last_wait = 0.0
        self._last_fault: Signal | None = None
        self._faults: deque[Signal] = deque(maxlen=_RECENT_FAULTS)
        self._waiting: Signal | None = None  # the node's last "waiting for a person" line
        self._crash: Signal | None = None  # the last uncaught traceback of this run
        self._operator = False  # operator_needed reported: no stall restarts until progress
        self._reconnect: _Reconnect | None = None
        self._failed_reconnects = 0
        self._peers_low_since: float | None = None

    # -- what the supervisor tells the policy -------------------------------------------
    def child_started(self, now: float) -> None:
        self._started_at = now
        self._progressed = False
        self._last_activity = now
        self._last_wait = 0.0
        self._last_fault = None
        self._faults.clear()
        self._crash = None
        self._waiting = None
        self._operator = False
        self._reconnect = None
        self._failed_reconnects = 0
        self._peers_low_since = None
        self.backoff.started(now)

    def activity(self, now: float, step_seconds: float | None = None) -> None:
        """Progress seen (a progress line, or the heartbeat file changed)."""
        self._last_activity = max(self._last_activity, now)
        self._progressed = True
        self._waiting = None
        self._operator = False
        if step_seconds is not None and step_seconds > 0:
            self._steps.append(step_seconds)
        rec = self._reconnect
        if rec is not None and now > rec.sent_at and rec.cause not in _HEALED_BY_HEALTH:
            # Progress after a SIGUSR1: the in-place reconnect worked.
            self._reconnect = None
            self._failed_reconnects = 0

    def stall_threshold(self) -> float:
        """Silence longer than this is a stall: never below `stall_factor` x the longest
        recent step (CPU steps of 700-860 s are normal) nor the trainer's own announced
        wait ("Next check in 900s")."""
        longest = max(self._steps, default=0.0)
        factor = self._health.stall_step_factor
        return max(self._health.stall_after, factor * longest, factor * self._last_wait)

    @property
    def reconnect_pending(self) -> bool:
        return self._reconnect is not None

    @property
    def operator_needed(self) -> bool:
        return self._operator

    # -- decisions ------------------------------------------------------------------------
    def on_signal(self, sig: Signal, now: float) -> Decision:
        verdict = sig.verdict
        if sig.kind in OPERATOR_KINDS:
            self._waiting = sig  # alive, but only a person moves it on (see on_tick)
            return NO_DECISION
        if sig.kind in NOT_PROGRESS_KINDS:
            return NO_DECISION  # greetings and loading bars prove no training
        if verdict is Verdict.HEALTHY_PROGRESS:
            self.activity(now, sig.step_seconds)
            return NO_DECISION
        if verdict is Verdict.HEALTHY_IDLE:
            self._last_activity = max(self._last_activity, now)
            if sig.wait_seconds is not None:
                self._last_wait = sig.wait_seconds
            return NO_DECISION
        if verdict is Verdict.TRANSIENT_IGNORE:
            return NO_DECISION
        self._last_fault = sig
        self._faults.append(sig)
        if sig.block and verdict is Verdict.RESTART:
            # An uncaught traceback whose cure is a restart: the process is about to
            # exit (then the exit context decides) or goes on (then it was not fatal to
            # it, and stall detection still watches). Restarting now could only cut
            # off the evidence that follows.
            self._crash = sig
            return NO_DECISION
        if verdict is Verdict.OPERATOR_NEEDED:
            return self._wait_operator(sig)
        if verdict is Verdict.GIVE_UP_FATAL:
            return Decision(Action.GIVE_UP, sig.kind, _with_fix(sig))
        if verdict is Verdict.RECONNECT_DHT:
            return self._reconnect_or_restart(sig.kind, sig.line, now)
        action = Action.RESTART_AFTER_CLEANUP if verdict is Verdict.RESTART_AFTER_CLEANUP else Action.RESTART
        return self.restart(action, sig.kind, sig.line, now)

    def on_exit(self, returncode: int, now: float, crash: Signal | None = None, kernel_oom: str = "") -> Decision:
        """The trainer exited without being asked to: `exit_context` judges the exit
        status with the last uncaught traceback (`crash`), this run's fault lines and
        the kernel's OOM record, if any."""
        self.backoff.stopped()
        judged = judge_exit(
            ExitFacts(
                returncode,
                crash=crash if crash is not None else self._crash,
                faults=tuple(self._faults),
                kernel_oom=kernel_oom,
                exit_zero_is_failure=self._trainer.exit_zero_is_failure,
                fatal_exit_codes=frozenset(self._trainer.fatal_exit_codes),
            )
        )
        evidence = f"{judged.evidence} (fix: {judged.fix})" if judged.fix else judged.evidence
        if judged.verdict is None:
            return Decision(Action.NONE, judged.kind, evidence)
        if judged.verdict is Verdict.GIVE_UP_FATAL:
            return Decision(Action.GIVE_UP, judged.kind, evidence)
        action = Action.RESTART_AFTER_CLEANUP if judged.verdict is Verdict.RESTART_AFTER_CLEANUP else Action.RESTART
        return self.restart(action, judged.kind, evidence, now)

    def on_tick(self, now: float, health: Health) -> Decision:
        """Periodic check while a trainer runs: healthy reset, stall, peers, p2pd."""
        self.backoff.healthy(now)
        if health.network_ok is False:
            # The network is down: restarting cannot help and would burn the crash budget.
            # A trainer cut off from its peers is silent; that silence is the outage, not
            # a hang, so the stall clock starts again when the network is back.
            self._peers_low_since = None
            self._last_activity = max(self._last_activity, now)
            return NO_DECISION
        rec = self._reconnect
        if rec is not None:
            if self._healed(rec.cause, health):
                self._reconnect = None
                self._failed_reconnects = 0
                return Decision(Action.NONE, "reconnected", rec.evidence)
            if now - rec.sent_at < self._health.reconnect_timeout:
                return NO_DECISION
            self._failed_reconnects += 1
            self._reconnect = None
            # Keep the original cause, so the eventual restart names what never healed.
            return self._reconnect_or_restart(rec.cause or "reconnect_timed_out", rec.evidence, now)
        silent = now - self._last_activity
        if self._operator:
            return NO_DECISION  # waiting for a person: a restart would only ask again
        if silent > self.stall_threshold() and not self._starting(now):
            if self._waiting is not None:
                # Silent since it asked for a person: that is the wait, not a hang.
                return self._wait_operator(escalation(self._waiting))
            return self.restart(
                Action.RESTART, "stall", f"no progress and no heartbeat change for {silent:.0f}s", now
            )
        if health.p2pd_alive is False:
            evidence = health.p2pd_evidence or "the trainer's p2pd daemon is no longer running"
            return self._reconnect_or_restart(health.dht_fault or "p2pd_gone", evidence, now)
        return self._check_peers(now, health)

    def restart(self, action: Action, reason: str, evidence: str, now: float) -> Decision:
        """A restart, paced by the back-off, or `give up` once the crash-loop limit is hit."""
        if self.backoff.crash_loop(now):
            cfg = self.backoff.config
            return Decision(
                Action.GIVE_UP,
                "crash_loop",
                f"{cfg.crash_loop_max} restarts within {cfg.crash_loop_window:.0f}s; last: {reason}: {evidence}",
            )
        return Decision(action, reason, evidence, self.backoff.next_delay(now))

    # -- helpers --------------------------------------------------------------------------
    def _starting(self, now: float) -> bool:
        """Within `startup_grace` of the start and no progress yet. The grace covers
        loading and bootstrap; once the node has made progress it has started, and a
        silence is judged by the stall threshold alone (a node whose peer vanished
        right after its own restart must not wait out a whole grace)."""
        return not self._progressed and now - self._started_at <= self._health.startup_grace

    def _wait_operator(self, sig: Signal) -> Decision:
        if self._operator:
            return NO_DECISION  # reported once per episode
        self._operator = True
        return Decision(Action.WAIT_OPERATOR, "operator_needed", _with_fix(sig))

    def _healed(self, cause: str, health: Health) -> bool:
        if cause in _DHT_FAULTS:
            return health.p2pd_alive is True
        if cause == "peers_lost":
            return health.peers is not None and health.peers >= self._health.min_peers
        return False

    def _check_peers(self, now: float, health: Health) -> Decision:
        want = self._health.min_peers
        if want <= 0 or health.peers is None or health.peers >= want:
            self._peers_low_since = None
            return NO_DECISION
        if self._peers_low_since is None:
            self._peers_low_since = now
            return NO_DECISION
        if now - self._peers_low_since < self._health.peers_grace:
            return NO_DECISION
        self._peers_low_since = None
        return self._reconnect_or_restart(
            "peers_lost", f"DHT sees {health.peers} peers, fewer than min_peers={want}", now
        )

    def _reconnect_or_restart(self, reason: str, evidence: str, now: float) -> Decision:
        if self._health.reconnect == "restart":
            return self.restart(Action.RESTART, reason, evidence, now)  # the node cannot re-bootstrap in place
        if self._reconnect is not None:
            cooldown = max(_RECONNECT_COOLDOWN_FLOOR, self._health.reconnect_timeout)
            if now - self._reconnect.sent_at < cooldown:
                return NO_DECISION  # one reconnect in flight already
        if self._failed_reconnects >= self._health.reconnect_attempts:
            return self.restart(
                Action.RESTART,
                f"{reason}_after_{self._failed_reconnects}_reconnects",
                evidence,
                now,
            )
        self._reconnect = _Reconnect(now, evidence, reason)
        return Decision(Action.RECONNECT_DHT, reason, evidence)


def _with_fix(sig: Signal) -> str:
    return f"{sig.line} (fix: {sig.fix})" if sig.fix else sig.line

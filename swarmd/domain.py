"""The shared vocabulary of swarmd: states, verdicts, signals, decisions and events.

Depends on nothing outside the standard library (supervisor's `states.py` rule), so the
pure modules (classify, backoff, policy) and the I/O modules can all import it freely.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class State(enum.Enum):
    """Supervisor states; `Supervisor._transition` is the only writer."""

    STARTING = "starting"
    RUNNING = "running"
    DEGRADED = "degraded"
    RECONNECTING = "reconnecting"
    BACKOFF = "backoff"
    RESTARTING = "restarting"
    OPERATOR_NEEDED = "operator_needed"  # alive, waiting for a person; no restarts
    FATAL = "fatal"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Verdict(enum.Enum):
    """What a log line (or a whole log) calls for, in the words of the `# expect:`
    headers of the failure corpus. Ordered by `severity` for "most severe wins"."""

    HEALTHY_PROGRESS = "healthy_progress"
    HEALTHY_IDLE = "healthy_idle"
    TRANSIENT_IGNORE = "transient_ignore"
    RECONNECT_DHT = "reconnect_dht"
    RESTART = "restart"
    RESTART_AFTER_CLEANUP = "restart_after_cleanup"
    # Above every restart (a restart cannot log a person in), below give-up (the node
    # still runs and goes on by itself once the person acts).
    OPERATOR_NEEDED = "operator_needed"
    GIVE_UP_FATAL = "give_up_fatal"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def is_fault(self) -> bool:
        return self.severity >= _SEVERITY[Verdict.RECONNECT_DHT]


_SEVERITY = {v: i for i, v in enumerate(Verdict)}


@dataclass(frozen=True, slots=True)
class Signal:
    """One classified log line: which rule matched, what it calls for, and the line.

    The optional fields carry facts a rule extracted (round/stage from a join line,
    seconds per step from a tqdm bar, the trainer's own back-off from "Next check in").
    """

    kind: str
    verdict: Verdict
    line: str
    rule: str = ""
    round: int | None = None
    stage: int | None = None
    step_seconds: float | None = None
    wait_seconds: float | None = None
    # A traceback-decided signal carries its block; a fatal or operator one, the fix.
    block: tuple[str, ...] = ()
    fix: str = ""


class Action(enum.Enum):
    """What the policy tells the supervisor to do."""

    NONE = "none"
    RECONNECT_DHT = "reconnect_dht"
    RESTART = "restart"
    RESTART_AFTER_CLEANUP = "restart_after_cleanup"
    WAIT_OPERATOR = "wait_operator"
    GIVE_UP = "give_up"


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's answer: the action, why, the evidence line, and when to act.

    `delay` is the back-off in seconds before the next start (0 for "now").
    """

    action: Action
    reason: str
    evidence: str = ""
    delay: float = 0.0


NO_DECISION = Decision(Action.NONE, "")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One health probe's outcome. `ok=None` means "not applicable / not configured"."""

    name: str
    ok: bool | None
    detail: str = ""
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Health:
    """Facts the supervisor gathered about the running trainer for one policy tick."""

    network_ok: bool | None = None
    p2pd_alive: bool | None = None
    p2pd_evidence: str = ""  # why p2pd counts as dead (gone, or not answering)
    dht_fault: str = ""  # the cause when p2pd_alive is False: p2pd_gone, p2pd_silent, dht_stopped
    peers: int | None = None
    heartbeat_age: float | None = None
    probes: tuple[ProbeResult, ...] = field(default_factory=tuple)

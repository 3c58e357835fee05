"""What `swarmd status`, the status page and `/metrics` readers see: the facts the
loop records as it goes (restarts, decisions, rounds, rewards) and the read-only
snapshot it publishes for the control and web threads.

The loop is the only writer; other threads only ever get a copy of the last snapshot.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, deque
from typing import Any

from swarmd import __version__
from swarmd.domain import Signal, State
from swarmd.heartbeat import Heartbeat
from swarmd.redact import redact_text

_HISTORY = 500  # restarts / rewards kept for the status page
_PUBLISH_EVERY = 0.2


class StatusBoard:
    def __init__(self, started_mono: float) -> None:
        self.started_mono = started_mono
        self.restarts = 0
        self.restarts_by_reason: Counter[str] = Counter()
        self.restart_history: deque[tuple[float, str]] = deque(maxlen=_HISTORY)
        self.reward_history: deque[tuple[int, float]] = deque(maxlen=_HISTORY)
        self.last_decision: dict[str, Any] = {}
        self.last_signal: dict[str, Any] = {}
        self.last_progress_mono: float | None = None
        self.round: int | None = None
        self.stage: int | None = None
        self.reload_kept: list[dict[str, str]] = []  # keys the last reload could not apply
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = {}
        self._next_publish = 0.0

    # -- recording (loop thread) ------------------------------------------------------
    def signal_seen(self, sig: Signal, *, live: bool) -> None:
        """`live`: the line came from the current run while it runs (a dying child's
        last words are shown, but move no round)."""
        self.last_signal = {"kind": sig.kind, "verdict": sig.verdict.value, "line": redact_text(sig.line[:500])}
        if live and sig.round is not None:
            self.round = sig.round
            self.stage = sig.stage if sig.stage is not None else self.stage

    def decided(self, action: str, reason: str, evidence: str, wall: float) -> None:
        self.last_decision = {
            "action": action,
            "reason": reason,
            "evidence": redact_text(evidence[:500]),
            "at": wall,
        }

    def restarted(self, reason: str, wall: float) -> None:
        self.restarts += 1
        self.restarts_by_reason[reason] += 1
        self.restart_history.append((wall, reason))

    def heartbeat(self, beat: Heartbeat) -> None:
        if beat.round is not None:
            self.round, self.stage = beat.round, beat.stage
        history = self.reward_history
        if beat.last_reward is not None and beat.round is not None and (not history or history[-1][0] != beat.round):
            history.append((beat.round, beat.last_reward))

    def status_line(self, state: State, beat: Heartbeat | None) -> str:
        """The one-line STATUS systemd shows."""
        parts = [state.value]
        if self.round is not None:
            parts.append(f"round {self.round}")
        if beat is not None and beat.peers is not None:
            parts.append(f"{beat.peers} peers")
        parts.append(f"{self.restarts} restarts")
        return ", ".join(parts)

    # -- publishing -------------------------------------------------------------------
    def changed(self) -> None:
        """Publish at the next chance (a transition must show at once)."""
        self._next_publish = 0.0

    def due(self, now: float) -> bool:
        if now < self._next_publish:
            return False
        self._next_publish = now + _PUBLISH_EVERY
        return True

    def publish(self, now: float, **live: Any) -> None:
        """`live`: what only the loop knows right now (state, pid, uptime, ...)."""
        progress_age = None if self.last_progress_mono is None else now - self.last_progress_mono
        stall = live.pop("stall_threshold")
        snap: dict[str, Any] = {
            **live,
            "supervisor_pid": os.getpid(),
            "swarmd_uptime_s": round(now - self.started_mono, 1),
            "restarts": self.restarts,
            "restarts_by_reason": dict(self.restarts_by_reason),
            "last_decision": dict(self.last_decision),
            "last_signal": dict(self.last_signal),
            "round": self.round,
            "stage": self.stage,
            "last_progress_age_s": None if progress_age is None else round(progress_age, 1),
            "progressing": progress_age is not None and progress_age < stall,
            "reward_history": [list(x) for x in self.reward_history],
            "restart_history": [list(x) for x in self.restart_history],
            "reload_kept": list(self.reload_kept),
            "version": __version__,
        }
        with self._lock:
            self._snapshot = snap

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._snapshot)

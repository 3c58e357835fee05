"""The round/stage clock and reward reporting, behind one Protocol.

Upstream the chain is the clock (§3.5): a stage-manager service advances
`currentRound` and nodes poll it. Without a chain, hm's DHT coordinator was one special
node publishing `rl_swarm_rs`; when it left, the swarm stopped. `DhtCoordinator`
instead derives the round from a wall-clock schedule anchored in a DHT record that
EVERY peer re-publishes under its own subkey: the anchor is the earliest `t0` any peer
holds, so the clock survives any peer leaving, and peers that met later converge on
the oldest anchor (their round can only jump forward, which is the upstream skip-ahead).

Seam for the later web3 `ChainCoordinator` (a separate issue): implement `Coordinator`
by reading `currentRound()`/`currentStage()` and POSTing rewards; return None from
`seconds_until_next` (the chain gives no schedule). Nothing else in the node changes.

Pure decision code (`schedule_position`, `wait_seconds`) takes numbers, not clocks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Protocol

import structlog
from tenacity import RetryCallState, Retrying, wait_exponential

from trainer.exchange import Board

log = structlog.get_logger(__name__)

FIRST_WAIT = 5.0  # hm/rg: the first "Already finished round" check is 5 s later


class Coordinator(Protocol):
    def current_round(self) -> tuple[int, int]: ...

    def seconds_until_next(self) -> float | None:
        """Time to the next (round, stage) when the clock is a known schedule, else None."""
        ...

    def submit_reward(self, round: int, stage: int, reward: float, peer_id: str) -> None: ...

    def resume_from(self, round: int) -> None:
        """The node resumed from its checkpoint of `round`. A clock that must start afresh
        (no peer holds one: the whole swarm restarted) starts there, not at round 0,
        where the node would idle `round` rounds. A chain clock ignores it."""
        ...


def schedule_position(t0: float, now: float, round_seconds: float, stages: int) -> tuple[int, int, float]:
    """(round, stage, seconds until the next stage) of the fixed schedule anchored at t0."""
    stage_seconds = round_seconds / stages
    elapsed = max(0.0, now - t0)
    index = math.floor(elapsed / stage_seconds)
    remaining = stage_seconds * (index + 1) - elapsed
    return index // stages, index % stages, remaining


def wait_seconds(attempt: int, cap: float) -> float:
    """Capped exponential wait for attempt 1, 2, ...: 5, 10, 20, ... <= cap (W16: the cap
    is about one round, not upstream's 5-15 minutes). tenacity owns the curve."""
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempt
    return float(wait_exponential(multiplier=FIRST_WAIT, min=FIRST_WAIT, max=max(cap, FIRST_WAIT))(state))


class DhtCoordinator:
    """Off-chain clock: schedule anchored at the earliest t0 published by any peer."""

    def __init__(self, board: Board, peer_id: str, *, namespace: str, round_seconds: float,
                 stages: int, wall: Callable[[], float], ttl: float = 3600.0,
                 timeout: float = 5.0, republish_every: float = 60.0) -> None:
        self.board = board
        self.peer_id = peer_id
        self.namespace = namespace
        self.round_seconds = round_seconds
        self.stages = stages
        self.wall = wall
        self.ttl = ttl
        self.timeout = timeout
        self.republish_every = republish_every
        self._t0: float | None = None
        self._published_at = -math.inf
        self._resume_round = 0

    @property
    def clock_key(self) -> str:
        return f"{self.namespace}:clock"

    def anchor(self) -> float:
        """The earliest valid anchor seen so far (ours included); re-published under our
        own subkey so the record outlives whichever peer created it."""
        now = self.wall()
        seen = [t for t in (_anchor_value(v) for v in self.board.get(self.clock_key, self.timeout).values()) if t is not None]
        if self._t0 is not None:
            seen.append(self._t0)
        # Ignore anchors in the future. A new clock starts at our checkpoint's round; a
        # live swarm's anchor (at or past that round, which came from it) is older, so
        # min() still prefers it and a restarted node never drags the swarm forward.
        t0 = min((t for t in seen if t <= now + 1.0), default=now - self._resume_round * self.round_seconds)
        if t0 != self._t0 or now - self._published_at >= self.republish_every:
            payload = json.dumps({"t0": t0, "round_seconds": self.round_seconds, "stages": self.stages}).encode()
            self.board.put(self.clock_key, self.peer_id, payload, self.ttl)
            self._published_at = now
        self._t0 = t0
        return t0

    def current_round(self) -> tuple[int, int]:
        rnd, stage, _ = schedule_position(self.anchor(), self.wall(), self.round_seconds, self.stages)
        return rnd, stage

    def seconds_until_next(self) -> float | None:
        if self._t0 is None:
            return None
        return schedule_position(self._t0, self.wall(), self.round_seconds, self.stages)[2]

    def resume_from(self, round: int) -> None:
        self._resume_round = max(0, round)

    def submit_reward(self, round: int, stage: int, reward: float, peer_id: str) -> None:
        """Best effort (W18: reporting never crashes training)."""
        key = f"{self.namespace}:rewards:{round}:{stage}"
        try:
            self.board.put(key, peer_id, json.dumps({"reward": reward}).encode(), self.ttl)
        except (OSError, RuntimeError, TimeoutError) as exc:
            log.warning("reward_submit_failed", round=round, error=type(exc).__name__)


def _anchor_value(raw: bytes) -> float | None:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError, TypeError):
        return None
    t0 = obj.get("t0") if isinstance(obj, dict) else None
    if isinstance(t0, int | float) and not isinstance(t0, bool) and math.isfinite(t0) and t0 > 0:
        return float(t0)
    return None

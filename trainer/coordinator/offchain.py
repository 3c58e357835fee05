"""The round/stage clock and reward reporting, behind one Protocol.

Upstream the chain is the clock (§3.5): a stage-manager service advances
`currentRound` and nodes poll it. Without a chain, hm's DHT coordinator was one special
node publishing `rl_swarm_rs`; when it left, the swarm stopped. `DhtCoordinator`
instead derives the round from a wall-clock schedule anchored in a DHT record that
EVERY peer re-publishes under its own (signed) subkey, so the clock survives any peer
leaving.

Which anchor counts is a vote, not "the earliest": each peer's record is one vote for
the t0 it holds, and a node moves to another anchor only when more peers hold it than
hold its own (on a tie, only to an older anchor held by at least two peers). Taking the
earliest anchor from anyone let a single peer publishing a t0 in the past push every
honest node's rounds forward; now one peer cannot outvote two. Swarms that meet still
converge, on the anchor the larger side holds. A majority of fabricated peer ids can
still move the clock: that is the limit of any off-chain clock, and the reason the chain
(`trainer.coordinator.chain`, one stage manager) is the clock when one is configured.

Pure decision code (`schedule_position`, `wait_seconds`, `choose_anchor`) takes numbers,
not clocks.
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

    def poll_seconds(self) -> float | None:
        """How often a finished node re-reads a clock that has no schedule (None: the
        capped back-off alone)."""
        ...

    def submit_reward(self, round: int, stage: int, reward: float, peer_id: str) -> None: ...

    def submit_winners(self, round: int, winners: list[str], peer_id: str) -> None:
        """This node's vote for the round's best peers; one per round counts (the first)."""
        ...

    def resume_from(self, round: int) -> None:
        """The node resumed from its checkpoint of `round`. A clock that must start afresh
        (no peer holds one: the whole swarm restarted) starts there, not at round 0,
        where the node would idle `round` rounds. A chain clock ignores it."""
        ...

    def queue_depth(self) -> int | None:
        """Submissions waiting on disk to reach the chain; None when there is no queue."""
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
        """The anchor the visible peers vote for (ours included); re-published under our
        own subkey so the record outlives whichever peer created it."""
        now = self.wall()
        held = {peer: t for peer, raw in self.board.get(self.clock_key, self.timeout).items()
                if (t := _anchor_value(raw)) is not None}
        # A new clock starts at our checkpoint's round; a live swarm's anchor (at or past
        # that round, which came from it) outvotes it, so a restarted node never drags the
        # swarm forward.
        chosen = choose_anchor(self._t0, held, self.peer_id, now)
        t0 = chosen if chosen is not None else now - self._resume_round * self.round_seconds
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

    def queue_depth(self) -> int | None:
        return None

    def poll_seconds(self) -> float | None:
        return None

    def submit_winners(self, round: int, winners: list[str], peer_id: str) -> None:
        """Best effort, like rewards: the vote under the round's winners key, our subkey."""
        try:
            self.board.put(f"{self.namespace}:winners:{round}", peer_id, json.dumps({"winners": winners}).encode(),
                           self.ttl)
        except (OSError, RuntimeError, TimeoutError) as exc:
            log.warning("winners_submit_failed", round=round, error=type(exc).__name__)

    def submit_reward(self, round: int, stage: int, reward: float, peer_id: str) -> None:
        """Best effort (W18: reporting never crashes training)."""
        key = f"{self.namespace}:rewards:{round}:{stage}"
        try:
            self.board.put(key, peer_id, json.dumps({"reward": reward}).encode(), self.ttl)
        except (OSError, RuntimeError, TimeoutError) as exc:
            log.warning("reward_submit_failed", round=round, error=type(exc).__name__)


def choose_anchor(own: float | None, held: dict[str, float], me: str, now: float) -> float | None:
    """The anchor to follow, given ours (None before the first) and each peer's.

    One vote per peer id (subkeys are signed: a peer cannot vote under another's id);
    our own vote is for `own`, whatever our old record says. Anchors in the future are
    ignored (they would move the round back). With no anchor anywhere: None.
    """
    ballots = {peer: t for peer, t in held.items() if peer != me}
    mine = own if own is not None else held.get(me)  # before a restart: our old record
    if mine is not None:
        ballots[me] = mine
    votes: dict[float, int] = {}
    for t in ballots.values():
        if t <= now + 1.0:
            votes[t] = votes.get(t, 0) + 1
    if not votes:
        return None
    best = min(votes, key=lambda t: (-votes[t], t))  # most votes, then the oldest
    if own is None or own not in votes:
        return best
    if votes[best] > votes[own] or (votes[best] == votes[own] and best < own and votes[best] >= 2):
        return best
    return own


def _anchor_value(raw: bytes) -> float | None:
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError, TypeError):
        return None
    t0 = obj.get("t0") if isinstance(obj, dict) else None
    if isinstance(t0, int | float) and not isinstance(t0, bool) and math.isfinite(t0) and t0 > 0:
        return float(t0)
    return None

"""The off-chain round clock: a schedule anchored at the earliest t0 any peer holds,
re-published by every peer, and the capped back-off table of a finished node."""

from __future__ import annotations

import json

import pytest

from swarmd.clock import FakeClock
from trainer.coordinator.offchain import (
    DhtCoordinator,
    choose_anchor,
    schedule_position,
    wait_seconds,
)
from trainer.exchange import LocalBoard


def _coord(board: LocalBoard, peer: str, clock: FakeClock, **kw: float) -> DhtCoordinator:
    return DhtCoordinator(board, peer, namespace="ns", round_seconds=kw.get("round_seconds", 30.0),
                          stages=int(kw.get("stages", 1)), wall=clock.wall)


@pytest.mark.parametrize(("attempt", "expected"), [(1, 5.0), (2, 10.0), (3, 20.0), (4, 30.0), (5, 30.0), (20, 30.0)])
def test_finished_node_backoff_doubles_from_5s_capped_at_round(attempt: int, expected: float) -> None:
    """5, 10, 20, then the round length (30 s), never upstream's 15 minutes (W16)."""
    assert wait_seconds(attempt, cap=30.0) == expected


def test_backoff_cap_below_first_wait_still_waits_5s() -> None:
    """A tiny round length does not produce a busy loop."""
    assert wait_seconds(1, cap=1.0) == 5.0


@pytest.mark.parametrize(("elapsed", "expected"), [(0.0, (0, 0, 30.0)), (29.0, (0, 0, 1.0)),
                                                   (30.0, (1, 0, 30.0)), (95.0, (3, 0, 25.0))])
def test_schedule_position_counts_whole_rounds(elapsed: float, expected: tuple[int, int, float]) -> None:
    """Round = floor(elapsed / round_seconds); the remainder is the time to the next one."""
    assert schedule_position(1000.0, 1000.0 + elapsed, 30.0, 1) == expected


def test_schedule_position_with_stages_splits_each_round() -> None:
    """With 3 stages of 10 s, t0+25 s is round 0 stage 2, 5 s before round 1."""
    assert schedule_position(0.0, 25.0, 30.0, 3) == (0, 2, 5.0)


def test_first_peer_anchors_and_late_peer_skips_ahead_to_current_round() -> None:
    """A node joining 95 s after the anchor starts at round 3, not 0 (skip-ahead)."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    first = _coord(board, "A", clock)
    assert first.current_round() == (0, 0)
    clock.advance(95)
    late = _coord(board, "B", clock)
    assert late.current_round() == (3, 0)
    assert late.seconds_until_next() == pytest.approx(25.0)


def test_clock_survives_the_anchoring_peer_leaving() -> None:
    """Every peer re-publishes the anchor under its subkey, so losing A's record keeps the round."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    _coord(board, "A", clock).current_round()
    clock.advance(40)
    b = _coord(board, "B", clock)
    assert b.current_round() == (1, 0)
    board._data["ns:clock"].pop("A")  # A leaves; its record is gone
    clock.advance(30)
    c = _coord(board, "C", clock)
    assert c.current_round() == (2, 0)


def test_swarms_that_meet_converge_on_the_anchor_the_larger_side_holds() -> None:
    """A lone peer with its own newer anchor meets a swarm of two: it adopts theirs, so its
    round only jumps forward."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    _coord(board, "A", clock).current_round()
    _coord(board, "A2", clock).current_round()
    clock.advance(100)
    young = _coord(board, "B", clock)
    young._t0 = clock.wall()  # B had anchored its own isolated swarm just now
    assert young.current_round() == (3, 0)


def test_one_peer_publishing_a_past_anchor_cannot_push_honest_rounds() -> None:
    """Defect (#11): the clock took the earliest anchor from ANY signed peer, so one peer
    publishing t0 = an hour ago moved every honest node 120 rounds ahead. One vote cannot
    outvote the two honest peers' anchor."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    a, b = _coord(board, "A", clock), _coord(board, "B", clock)
    assert a.current_round() == b.current_round() == (0, 0)
    clock.advance(65)
    board.put("ns:clock", "Evil", json.dumps({"t0": clock.wall() - 3600.0}).encode(), 60)
    assert a.current_round() == (2, 0)
    assert b.current_round() == (2, 0)
    late = _coord(board, "C", clock)  # a node joining now follows the majority too
    assert late.current_round() == (2, 0)


def test_lone_node_does_not_follow_a_single_other_anchor_on_a_tie() -> None:
    """One against one is indistinguishable from an attack: each keeps its own anchor."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    a = _coord(board, "A", clock)
    a.current_round()
    clock.advance(65)
    board.put("ns:clock", "Evil", json.dumps({"t0": clock.wall() - 3600.0}).encode(), 60)
    assert a.current_round() == (2, 0)


@pytest.mark.parametrize(("own", "held", "expected"), [
    (None, {}, None),
    (None, {"X": 10.0, "Y": 20.0, "Z": 20.0}, 20.0),   # fresh: the majority, not the oldest
    (None, {"X": 10.0, "Y": 20.0}, 10.0),              # fresh, tie: the oldest
    (None, {"me": 50.0}, 50.0),                        # restarted alone: our old record
    (20.0, {"X": 10.0, "Y": 10.0}, 10.0),              # outvoted 2:1
    (20.0, {"X": 10.0, "Y": 20.0}, 20.0),              # 1:1 tie: stay
    (20.0, {"X": 10.0, "W": 10.0, "Y": 20.0}, 10.0),   # 2:2 tie, older side has >= 2: move
    (20.0, {"X": 5000.0, "Y": 5000.0}, 20.0),          # anchors in the future never count
])
def test_choose_anchor_votes(own: float | None, held: dict[str, float], expected: float | None) -> None:
    assert choose_anchor(own, held, "me", now=1000.0) == expected


def test_anchor_from_the_future_or_garbage_is_ignored() -> None:
    """A peer publishing t0 far in the future or junk cannot move the round back."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    a = _coord(board, "A", clock)
    a.current_round()
    clock.advance(65)
    board.put("ns:clock", "Evil", b'{"t0": 9e18}', 60)
    board.put("ns:clock", "Junk", b"\x00garbage", 60)
    assert a.current_round() == (2, 0)


def test_reward_is_published_under_round_key_with_peer_subkey() -> None:
    """submit_reward stores this peer's reward for (round, stage), best effort."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    _coord(board, "A", clock).submit_reward(4, 0, 0.5, "A")
    assert board.get("ns:rewards:4:0", 1.0) == {"A": b'{"reward": 0.5}'}


def test_fresh_clock_starts_at_the_resumed_checkpoint_round() -> None:
    """A whole swarm restarted: the node resuming at round 40 does not idle through 40 rounds."""
    clock = FakeClock()
    node = _coord(LocalBoard(clock.wall), "A", clock)
    node.resume_from(40)
    assert node.current_round() == (40, 0)


def test_live_swarm_clock_wins_over_a_resumed_node() -> None:
    """A node restarted alone joins the swarm's round, never drags it forward to its checkpoint."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    _coord(board, "A", clock).current_round()  # the swarm's clock, anchored now
    clock.advance(90.0)
    restarted = _coord(board, "B", clock)
    restarted.resume_from(40)
    assert restarted.current_round() == (3, 0)

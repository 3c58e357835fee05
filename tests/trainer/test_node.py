"""The round loop with an in-memory exchange, the real DHT coordinator over a local
board and a fake clock: join, share, train on peers' rollouts, skip ahead, wait with
back-off, reconnect on SIGUSR1 or lost peers, stop cleanly with a checkpoint."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from swarmd.clock import FakeClock
from swarmd.heartbeat import read_heartbeat
from trainer.coordinator import DhtCoordinator
from trainer.exchange import LocalBoard, LocalExchange, LocalLink
from trainer.node import Flags, LoopSettings, Node, StepInterrupted, pick_winner
from trainer.rollout import Rollout, Task, TaskRef

ME, PEER = "QmMe", "QmPeer"


@dataclass(frozen=True)
class Stats:
    loss: float = 0.1
    mean_reward: float = 0.5
    local_reward: float = 0.25
    external_count: int = 0
    step_seconds: float = 0.01
    peer_rewards: tuple[tuple[str, float], ...] = ()


@dataclass
class FakeLearner:
    """Records calls; `on_train` lets a test act mid-round (e.g. a signal arriving)."""

    clock: FakeClock
    resume: tuple[int, int] | None = None
    trained: list[tuple[int, int]] = field(default_factory=list)
    saved: list[tuple[int, int]] = field(default_factory=list)
    on_train: object = None
    on_generate: object = None
    fail_at_round: int | None = None
    interrupt_at_round: int | None = None  # a stop request arrives during this round's step
    flags: Flags | None = None

    def generate(self, tasks: Sequence[Task], *, round: int, stage: int, peer_id: str) -> list[Rollout]:
        if callable(self.on_generate):
            self.on_generate(round)
        self.clock.advance(1.0)
        return [Rollout(peer_id, round, stage, t.ref, ("<answer>1</answer>",)) for t in tasks]

    def train_on(self, local: Sequence[Rollout], external: Sequence[Rollout]) -> Stats:
        rnd = local[0].round
        if rnd == self.fail_at_round:
            raise RuntimeError("boom")
        if rnd == self.interrupt_at_round and self.flags is not None:
            self.flags.stop = True  # SIGTERM mid-step; the real learner undoes the step
            raise StepInterrupted("training step")
        self.trained.append((rnd, len(external)))
        if callable(self.on_train):
            self.on_train()
        self.clock.advance(1.0)
        return Stats(external_count=len(external))

    def save_checkpoint(self, round: int, stage: int) -> Path:
        self.saved.append((round, stage))
        return Path(f"round-{round:06d}")

    def load_latest_checkpoint(self) -> tuple[int, int] | None:
        return self.resume

    def maybe_push(self, round: int) -> None:
        pass


class FakeTasks:
    def sample(self, round: int, n: int, salt: str = "") -> list[Task]:
        return [Task(TaskRef("local_arith", 0, round * 100 + i), "1+0", "1") for i in range(n)]


@dataclass
class Harness:
    node: Node
    learner: FakeLearner
    clock: FakeClock
    board: LocalBoard
    link: LocalLink
    flags: Flags
    out: io.StringIO
    heartbeat: Path


def _harness(tmp_path: Path, *, max_rounds: int = 3, peers: int = 1, resume: tuple[int, int] | None = None,
             reconnect_after: float = 0.0, anchor_ago: float = 0.0) -> Harness:
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    if anchor_ago:
        board.put("ns:clock", PEER, f'{{"t0": {clock.wall() - anchor_ago}}}'.encode(), 3600)
    flags = Flags()
    learner = FakeLearner(clock, resume=resume, flags=flags)
    link = LocalLink(peers)
    out = io.StringIO()
    hb = tmp_path / "trainer.json"
    settings = LoopSettings(peer_id=ME, animal="brave tiny owl", heartbeat_path=hb, prompts_per_round=2,
                            max_external=4, gather_timeout=2.0, checkpoint_every=2, max_rounds=max_rounds,
                            round_seconds=10.0, reconnect_after_no_peers=reconnect_after)
    node = Node(settings, learner=learner, tasks=FakeTasks(), exchange=LocalExchange(ME, board, namespace="ns"),
                coordinator=DhtCoordinator(board, ME, namespace="ns", round_seconds=10.0, stages=1, wall=clock.wall),
                link=link, flags=flags, clock=clock, sleep=clock.advance, out=out)
    return Harness(node, learner, clock, board, link, flags, out, hb)


def _peer_publishes(h: Harness, rounds: range) -> None:
    peer = LocalExchange(PEER, h.board, namespace="ns")
    for r in rounds:
        peer.publish(r, 0, [Rollout(PEER, r, 0, TaskRef("local_arith", 1, i), ("x",)) for i in range(3)])


def test_each_round_trains_on_local_and_peer_rollouts(tmp_path: Path) -> None:
    """Three consecutive rounds, each with the peer's 3 rollouts, then exit 0."""
    h = _harness(tmp_path)
    _peer_publishes(h, range(5))
    assert h.node.run() == 0
    assert h.learner.trained == [(0, 3), (1, 3), (2, 3)]
    text = h.out.getvalue()
    for r in range(3):
        assert f"INFO:trainer.node:brave tiny owl:🐝 Joining round: {r} starting at stage: 0" in text
        assert f"📈 Training round: {r} stage: 0" in text
        assert f"📉 Finished training round: {r} stage: 0" in text
    assert "Already finished round: 0. Next check in" in text
    assert "|" in text
    assert "4/4" in text


def test_checkpoints_every_n_rounds_and_at_stop(tmp_path: Path) -> None:
    """checkpoint_every=2 saves after round 1, and the stop saves round 2."""
    h = _harness(tmp_path)
    h.node.run()
    assert h.learner.saved == [(1, 0), (2, 0)]


def test_late_node_skips_ahead_to_current_round(tmp_path: Path) -> None:
    """With the swarm anchored 55 s ago (10 s rounds) the node starts at round 5."""
    h = _harness(tmp_path, max_rounds=1, anchor_ago=55.0)
    h.node.run()
    assert [r for r, _ in h.learner.trained] == [5]


def test_resumed_node_waits_for_next_round_with_message(tmp_path: Path) -> None:
    """A node whose checkpoint is already at the current round waits, printing the wait."""
    h = _harness(tmp_path, max_rounds=1, resume=(0, 0))
    h.node.run()
    assert h.learner.trained[0][0] == 1
    text = h.out.getvalue()
    assert "Resumed from checkpoint: round 0 stage 0" in text
    assert "Already finished round: 0. Next check in 5.0s." in text


def test_heartbeat_reports_round_peers_reward_and_progress(tmp_path: Path) -> None:
    """After a round the heartbeat names peer, animal, round, peers, reward and step time."""
    h = _harness(tmp_path, max_rounds=1, peers=2)
    h.node.run()
    beat = read_heartbeat(h.heartbeat)
    assert beat is not None
    assert (beat.peer_id, beat.animal, beat.round, beat.stage, beat.peers) == (ME, "brave tiny owl", 0, 0, 2)
    assert beat.last_reward == 0.5
    assert beat.step_seconds == (0.01,)
    assert beat.last_progress is not None
    assert beat.status == "stopped"


def test_stop_flag_mid_round_finishes_step_saves_and_exits_zero(tmp_path: Path) -> None:
    """SIGTERM during a step: the step completes, a checkpoint is written, run() returns 0."""
    h = _harness(tmp_path, max_rounds=0)
    h.learner.on_train = lambda: setattr(h.flags, "stop", True)
    assert h.node.run() == 0
    assert h.learner.trained == [(0, 0)]
    assert h.learner.saved == [(0, 0)]
    assert "Stopped cleanly" in h.out.getvalue()


def test_stop_during_a_round_abandons_it_and_saves_the_last_completed_round(tmp_path: Path) -> None:
    """SIGTERM while round 1 generates (round 0 trained, not yet checkpointed): the
    round is abandoned before publish and train, round 0 is saved, run() returns 0."""
    h = _harness(tmp_path, max_rounds=0)

    def stop_in_round_1(rnd: int) -> None:
        if rnd == 1:
            h.flags.stop = True

    h.learner.on_generate = stop_in_round_1
    assert h.node.run() == 0
    assert h.learner.trained == [(0, 0)]
    assert h.learner.saved == [(0, 0)]
    assert h.board.get("ns:rollouts:1:0", 0.1) == {}, "an abandoned round published its rollouts"
    text = h.out.getvalue()
    assert "Stop requested during round: 1; abandoning it (last completed: round 0 stage 0)" in text
    assert "Finished training round: 1" not in text
    assert text.rstrip().endswith("Stopped cleanly")


def test_step_interrupted_by_the_learner_keeps_the_last_completed_round(tmp_path: Path) -> None:
    """A learner that undid its step on a stop request: the loop counts nothing for
    the round, saves the last completed one and exits 0."""
    h = _harness(tmp_path, max_rounds=0)
    h.learner.interrupt_at_round = 1
    assert h.node.run() == 0
    assert h.learner.trained == [(0, 0)]
    assert h.learner.saved == [(0, 0)]
    assert h.node.done == (0, 0)
    assert "abandoning it (last completed: round 0 stage 0)" in h.out.getvalue()


def test_reconnect_flag_reconnects_in_place_without_restart(tmp_path: Path) -> None:
    """SIGUSR1 makes the loop call link.reconnect() once and carry on training."""
    h = _harness(tmp_path, max_rounds=2)
    h.learner.on_train = lambda: setattr(h.flags, "reconnect", True) if len(h.learner.trained) == 1 else None
    h.node.run()
    assert h.link.reconnects == 1
    assert len(h.learner.trained) == 2
    assert "reconnecting the DHT in place" in h.out.getvalue()


def test_zero_visible_peers_for_too_long_triggers_reconnect(tmp_path: Path) -> None:
    """With no peers for longer than reconnect_after_no_peers, the DHT is re-created."""
    h = _harness(tmp_path, max_rounds=4, peers=0, reconnect_after=15.0)
    h.node.run()
    assert h.link.reconnects >= 1
    assert "No visible peers for" in h.out.getvalue()


def test_unexpected_error_propagates_for_nonzero_exit(tmp_path: Path) -> None:
    """A learner crash is not swallowed (W11): run() raises, so the process exits non-zero."""
    h = _harness(tmp_path)
    h.learner.fail_at_round = 1
    with pytest.raises(RuntimeError, match="boom"):
        h.node.run()


@pytest.mark.parametrize(("peer_rewards", "expected"), [
    ((), "me"),                                            # nothing seen: vote for ourselves
    ((("me", 0.2), ("QmB", 0.9), ("QmC", 0.5)), "QmB"),   # best recomputed reward
    ((("QmZ", 0.7), ("QmA", 0.7)), "QmA"),                 # a tie: the smaller id, the same on every node
])
def test_winner_vote_is_the_best_peer_by_local_rewards(peer_rewards: tuple[tuple[str, float], ...],
                                                        expected: str) -> None:
    assert pick_winner(peer_rewards, "me") == expected

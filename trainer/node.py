"""The round loop: join the coordinator's round, generate, share, train, checkpoint.

Why it looks like this:
- The node never waits for peers to finish a round; rounds are clock windows (§3.5).
  A lagging node skips ahead to the current round; a finished one waits with a capped
  backoff (5 s doubling, capped at about one round, W16) or until the schedule says
  the next round starts, whichever is sooner.
- Every blocking call is bounded: the gather has a timeout, DHT calls have timeouts,
  waits are sliced so SIGTERM/SIGUSR1 are seen within a second.
- Signal handlers only set `Flags`; the loop acts (reconnect in place, or stop:
  checkpoint, return 0). Any unexpected exception propagates and the process exits
  non-zero (W11: 0 is reserved for an intended stop).
- A stop must not wait for the round to end: a round (generation, gather, a step on
  a real model) can outlast swarmd's `stop_timeout`, and a SIGKILL would lose what
  was trained since the last checkpoint. So the round looks at the stop flag between
  its phases, the learner looks at it inside generation and between micro-batches,
  and an interrupted round is abandoned whole: the checkpoint written on the way out
  is the last completed step's, never a half-made one.
- Progress lines use the upstream hivemind_exp / genrl wording that swarmd's
  classifier knows (see swarmd/classify.py's docstring), prefixed
  `INFO:trainer.node:<animal>:`; a tqdm bar per round shows the four phases.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

from tqdm import tqdm  # type: ignore[import-untyped]  # no stubs in the venv (types-tqdm)

from swarmd.clock import Clock
from swarmd.heartbeat import Heartbeat, write_heartbeat
from trainer.coordinator import FIRST_WAIT, Coordinator, wait_seconds
from trainer.exchange import PeerLink, RolloutExchange
from trainer.rollout import Rollout, Task

HEARTBEAT_EVERY = 2.0  # s between heartbeats while waiting
PEERS_EVERY = 5.0  # s between peer counts (each is a DHT round trip)
SLICE = 0.5  # s: longest sleep without looking at the flags


class StepLike(Protocol):
    @property
    def loss(self) -> float: ...
    @property
    def mean_reward(self) -> float: ...
    @property
    def local_reward(self) -> float: ...
    @property
    def external_count(self) -> int: ...
    @property
    def step_seconds(self) -> float: ...
    @property
    def peer_rewards(self) -> tuple[tuple[str, float], ...]: ...


class StepInterrupted(Exception):  # noqa: N818 - names what happened, like KeyboardInterrupt
    """A learner saw the stop request mid-step and undid the step: model, optimizer
    and RNG are exactly as the last completed step left them."""


class Learner(Protocol):
    """What the loop needs from trainer.train.GRPOLearner (kept torch-free here).
    `generate` and `train_on` may raise `StepInterrupted` when a stop is requested."""

    def generate(self, tasks: Sequence[Task], *, round: int, stage: int, peer_id: str) -> list[Rollout]: ...
    def train_on(self, local: Sequence[Rollout], external: Sequence[Rollout]) -> StepLike: ...
    def save_checkpoint(self, round: int, stage: int) -> Path: ...
    def load_latest_checkpoint(self) -> tuple[int, int] | None: ...
    def maybe_push(self, round: int) -> None: ...


class Tasks(Protocol):
    def sample(self, round: int, n: int, salt: str = "") -> list[Task]: ...


@dataclass
class Flags:
    """Written by signal handlers, read by the loop (handlers do nothing else)."""

    stop: bool = False
    reconnect: bool = False


@dataclass(frozen=True)
class LoopSettings:
    peer_id: str
    animal: str
    heartbeat_path: Path
    prompts_per_round: int = 4
    max_external: int = 8
    gather_timeout: float = 10.0
    checkpoint_every: int = 1
    max_rounds: int = 0
    round_seconds: float = 30.0
    reconnect_after_no_peers: float = 0.0


@dataclass
class _Status:
    round: int | None = None
    stage: int | None = None
    peers: int | None = None
    last_progress: float | None = None
    last_reward: float | None = None
    step_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=8))


class Node:
    def __init__(self, settings: LoopSettings, *, learner: Learner, tasks: Tasks,
                 exchange: RolloutExchange, coordinator: Coordinator, link: PeerLink,
                 flags: Flags, clock: Clock, sleep: Callable[[float], None], out: TextIO,
                 on_round: Callable[[], None] = lambda: None) -> None:
        self.s = settings
        self.learner = learner
        self.tasks = tasks
        self.exchange = exchange
        self.coordinator = coordinator
        self.link = link
        self.flags = flags
        self.clock = clock
        self.sleep = sleep
        self.out = out
        self.on_round = on_round  # e.g. look after local helper peers
        self.done: tuple[int, int] | None = None
        self.saved: tuple[int, int] | None = None
        self.trained = 0
        self.external_total = 0
        self.status = _Status()
        self._peers_at = -1e18
        self._zero_since: float | None = None
        self._beat_at = -1e18

    # ---- output ----------------------------------------------------------------------

    def say(self, msg: str) -> None:
        self.out.write(f"INFO:trainer.node:{self.s.animal}:{msg}\n")
        self.out.flush()

    def beat(self, status: str) -> None:
        now = self.clock.monotonic()
        if now - self._peers_at >= PEERS_EVERY:
            self.status.peers = self.link.visible_peers()
            self._peers_at = now
        st = self.status
        write_heartbeat(self.s.heartbeat_path, Heartbeat(
            pid=os.getpid(), peer_id=self.s.peer_id, animal=self.s.animal, round=st.round,
            stage=st.stage, peers=st.peers, last_progress=st.last_progress,
            step_seconds=tuple(st.step_seconds), last_reward=st.last_reward, status=status,
            written_at=self.clock.wall(), chain_queue=self.coordinator.queue_depth(),
        ))
        self._beat_at = now

    # ---- the loop --------------------------------------------------------------------

    def run(self) -> int:
        resumed = self.learner.load_latest_checkpoint()
        if resumed is not None:
            self.done = self.saved = resumed
            self.status.round, self.status.stage = resumed
            self.coordinator.resume_from(resumed[0])
            self.say(f"Resumed from checkpoint: round {resumed[0]} stage {resumed[1]}")
        self.beat("starting")
        attempt = 0
        while not self.flags.stop:
            self._maybe_reconnect()
            self.on_round()
            try:
                rnd, stage = self.coordinator.current_round()
            except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
                self.say(f"Could not fetch round and stage: {type(exc).__name__}. Next check in {FIRST_WAIT:g}s.")
                self._wait(FIRST_WAIT, "waiting")
                continue
            if self.done is not None and (rnd, stage) <= self.done:
                attempt += 1
                delay = self._next_check(attempt)
                self.say(f"Already finished round: {rnd}. Next check in {delay:.1f}s.")
                self._wait(delay, "waiting")
                continue
            attempt = 0
            self.train_round(rnd, stage)
            if self.s.max_rounds and self.trained >= self.s.max_rounds:
                self.say(f"Reached max_rounds={self.s.max_rounds}; stopping")
                break
        self.finish()
        return 0

    def _next_check(self, attempt: int) -> float:
        delay = wait_seconds(attempt, self.s.round_seconds)
        hint = self.coordinator.seconds_until_next()
        if hint is not None:
            delay = min(delay, hint + 0.05)
        poll = self.coordinator.poll_seconds()
        if poll is not None:
            delay = min(delay, poll)
        return max(0.05, delay)

    def train_round(self, rnd: int, stage: int) -> None:
        self.status.round, self.status.stage = rnd, stage
        self.say(f"🐝 Joining round: {rnd} starting at stage: {stage}")
        self.say(f"📈 Training round: {rnd} stage: {stage}")
        self.beat("training")
        try:
            with tqdm(total=4, desc=f"round {rnd}", file=self.out, mininterval=0, ascii=False) as bar:
                tasks = self.tasks.sample(rnd, self.s.prompts_per_round, salt=self.s.peer_id)
                local = self.learner.generate(tasks, round=rnd, stage=stage, peer_id=self.s.peer_id)
                bar.update()
                self._stop_point()
                self.exchange.publish(rnd, stage, local)
                bar.update()
                self._stop_point()
                self.beat("gathering")
                hint = self.coordinator.seconds_until_next()
                timeout = self.s.gather_timeout if hint is None else max(1.0, min(self.s.gather_timeout, hint))
                external = self.exchange.gather(rnd, stage, self.s.max_external, timeout)
                bar.update()
                self._stop_point()
                stats = self.learner.train_on(local, external)
                bar.update()
        except StepInterrupted:
            last = "none" if self.done is None else f"round {self.done[0]} stage {self.done[1]}"
            self.say(f"Stop requested during round: {rnd}; abandoning it (last completed: {last})")
            return
        self.trained += 1
        self.external_total += stats.external_count
        self.done = (rnd, stage)
        st = self.status
        st.last_progress = self.clock.wall()
        st.last_reward = stats.mean_reward
        st.step_seconds.append(stats.step_seconds)
        metrics = {"loss": round(stats.loss, 5), "reward": round(stats.mean_reward, 4),
                   "local_reward": round(stats.local_reward, 4), "external": stats.external_count,
                   "gathered": len(external), "step_seconds": round(stats.step_seconds, 3)}
        self.out.write(json.dumps(metrics).replace('"', "'") + "\n")
        self.coordinator.submit_reward(rnd, stage, stats.mean_reward, self.s.peer_id)
        self.coordinator.submit_winners(rnd, [pick_winner(stats.peer_rewards, self.s.peer_id)], self.s.peer_id)
        if self.trained % self.s.checkpoint_every == 0:
            self._checkpoint()
        self.learner.maybe_push(rnd)
        self.say(f"📉 Finished training round: {rnd} stage: {stage} reward={stats.mean_reward:.4f} "
                 f"external={stats.external_count}")
        self.beat("training")

    def _stop_point(self) -> None:
        """Between two phases of a round: a stop abandons the round here."""
        if self.flags.stop:
            raise StepInterrupted

    def _checkpoint(self) -> None:
        if self.done is not None and self.done != self.saved:
            path = self.learner.save_checkpoint(*self.done)
            self.saved = self.done
            self.say(f"Checkpoint saved: {path.name}")

    def finish(self) -> None:
        """Intended stop: save what was trained since the last checkpoint."""
        self._checkpoint()
        self.beat("stopped")
        self.say("Stopped cleanly")

    def _wait(self, seconds: float, status: str) -> None:
        end = self.clock.monotonic() + seconds
        while not self.flags.stop and not self.flags.reconnect:
            left = end - self.clock.monotonic()
            if left <= 0:
                break
            if self.clock.monotonic() - self._beat_at >= HEARTBEAT_EVERY:
                self.beat(status)
            self.sleep(min(SLICE, left))

    def _maybe_reconnect(self) -> None:
        if self.flags.reconnect:
            self.flags.reconnect = False
            self.say("SIGUSR1: reconnecting the DHT in place")
            self.beat("reconnecting")
            self.link.reconnect()
            self._zero_since = None
            self._peers_at = -1e18
            return
        if self.s.reconnect_after_no_peers <= 0:
            return
        now = self.clock.monotonic()
        if now - self._peers_at >= PEERS_EVERY:
            self.status.peers = self.link.visible_peers()
            self._peers_at = now
        if self.status.peers:
            self._zero_since = None
        elif self._zero_since is None:
            self._zero_since = now
        elif now - self._zero_since >= self.s.reconnect_after_no_peers:
            self.say(f"No visible peers for {now - self._zero_since:.0f}s: reconnecting the DHT in place")
            self.beat("reconnecting")
            self.link.reconnect()
            self._zero_since = None
            self._peers_at = -1e18


def pick_winner(peer_rewards: Sequence[tuple[str, float]], me: str) -> str:
    """The round's winner vote: the peer whose rollouts scored best here (rewards recomputed
    locally, never a peer's claim); ties go to the smaller peer id so every honest node
    that saw the same rollouts votes alike. Nothing seen: ourselves, as upstream does."""
    if not peer_rewards:
        return me
    return min(peer_rewards, key=lambda pr: (-pr[1], pr[0]))[0]

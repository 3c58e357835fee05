"""The chain as the round clock, and a background sender that drains the submission queue.

Training never waits on the chain for reporting (W15, W18): `submit_reward` only writes
the queue file; a daemon thread delivers it. While the RPC is down the thread backs off
(capped) and the queue grows on disk; when the RPC returns everything queued is sent,
oldest round first. Each delivery is idempotent: the chain is asked first whether the
submission is already there (a previous process may have sent it and died before deleting
its file), and an "already done" revert counts as delivered.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import structlog
from web3.exceptions import Web3Exception, Web3RPCError

from trainer.coordinator.abi import ALREADY_DONE
from trainer.coordinator.queue import Submission, SubmissionQueue
from trainer.coordinator.rpc import ChainClient, RevertError, TransportError

log = structlog.get_logger(__name__)

Outcome = Literal["sent", "already", "rejected"]
REWARD_SCALE = 1000  # the contract takes an int256: rewards go on chain in thousandths


@dataclass(slots=True)
class SenderStats:
    sent: int = 0
    already: int = 0
    rejected: int = 0
    # queue -> receipt, s (wall clock); the recent ones only: a node runs for weeks
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


class Sender:
    """Delivers queued submissions; one item at a time, in queue order."""

    def __init__(self, queue: SubmissionQueue, client: ChainClient, *,
                 wall: Callable[[], float] = time.time, max_backoff: float = 30.0) -> None:
        self.queue = queue
        self.client = client
        self.wall = wall
        self.max_backoff = max_backoff
        self.stats = SenderStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver(self, item: Submission) -> Outcome:
        """Put one submission on chain (or find it there). Raises TransportError when the RPC is down."""
        try:
            if item.kind == "reward":
                if self.client.has_submitted_reward(item.round, item.stage, item.peer_id):
                    return "already"
                self.client.transact("submitReward", item.round, item.stage, item.reward, item.peer_id)
            else:
                if self.client.voter_votes(item.round, item.peer_id):
                    return "already"
                self.client.transact("submitWinners", item.round, list(item.winners), item.peer_id)
        except RevertError as exc:
            if exc.error in ALREADY_DONE:
                return "already"
            log.warning("chain_submission_rejected", kind=item.kind, round=item.round, stage=item.stage,
                        error=exc.error)
            return "rejected"
        return "sent"

    def drain(self) -> int:
        """Deliver everything queued now; stops at the first transport failure (raised)."""
        delivered = 0
        for item in self.queue.pending():
            outcome = self.deliver(item)
            self.queue.done(item)
            if outcome == "sent":
                self.stats.sent += 1
                self.stats.latencies.append(self.wall() - item.queued_at)
            elif outcome == "already":
                self.stats.already += 1
            else:
                self.stats.rejected += 1
            delivered += 1
        return delivered

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="chain-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                self.drain()
                backoff = 0.0
                self._wake.wait(timeout=30.0)  # also re-checks a queue filled by a previous process
            except (TransportError, Web3RPCError, OSError, ValueError) as exc:
                # RPC down, or refusing the transaction itself (no gas funds, a node error):
                # keep the queue, wait longer each time, try again. Never let the thread die.
                backoff = min(self.max_backoff, max(0.5, backoff * 2))
                log.warning("chain_rpc_down_queue_kept", depth=self.queue.depth(), retry_in=backoff,
                            error=_describe(exc))
                self._wake.wait(timeout=backoff)
            self._wake.clear()


class ChainCoordinator:
    """`Coordinator` backed by the contract: round/stage from chain, rewards via the queue."""

    def __init__(self, client: ChainClient, queue: SubmissionQueue, *, poll_seconds: float = 1.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.queue = queue
        self.poll_interval = poll_seconds
        self.wall = wall
        self.sender = Sender(queue, client, wall=wall)

    def start(self) -> None:
        self.sender.start()

    def stop(self) -> None:
        self.sender.stop()

    def current_round(self) -> tuple[int, int]:
        """Raises OSError (TransportError) for any failure to read, which the round loop
        waits out; an RPC that answers with an error is no more fatal than a silent one."""
        try:
            return self.client.round_and_stage()
        except Web3Exception as exc:
            raise TransportError(f"currentRound+currentStage: {_describe(exc)}") from None

    def seconds_until_next(self) -> float | None:
        """The chain publishes no schedule."""
        return None

    def poll_seconds(self) -> float | None:
        """Re-read at this interval so a round change is seen within about a second
        (upstream backs off to 15 minutes, W16); one batched eth_call each time."""
        return self.poll_interval

    def resume_from(self, round: int) -> None:
        """The chain is the clock; a checkpoint does not move it."""

    def submit_reward(self, round: int, stage: int, reward: float, peer_id: str) -> None:
        self._put(Submission("reward", round, stage, peer_id, reward=int(round_half(reward * REWARD_SCALE)),
                             queued_at=self.wall()))

    def submit_winners(self, round: int, winners: list[str], peer_id: str) -> None:
        self._put(Submission("winners", round, 0, peer_id, winners=tuple(dict.fromkeys(winners)),
                             queued_at=self.wall()))

    def queue_depth(self) -> int:
        return self.queue.depth()

    def _put(self, item: Submission) -> None:
        try:
            self.queue.put(item)
        except OSError as exc:  # a full disk must not stop training (W18)
            log.warning("chain_queue_write_failed", kind=item.kind, round=item.round, error=exc.strerror)
            return
        self.sender.wake()


def _describe(exc: BaseException) -> str:
    """Short, secret-free: the exception type and the first line of its message."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def round_half(x: float) -> int:
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)

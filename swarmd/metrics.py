"""Prometheus metrics for one swarmd instance, in its own registry.

An own `CollectorRegistry` (not the process-global one) so that tests and several
supervisors in one process never collide on metric names, and so that `/metrics` shows
only swarmd's series, not whatever a library registered globally.
"""

from __future__ import annotations

import math
import threading
import weakref
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from swarmd.domain import State
from swarmd.heartbeat import Heartbeat

# Restart reasons come from the policy and are a small fixed vocabulary, but a label
# per free-text reason would grow the series without bound; past this many distinct
# reasons the rest are counted under "other".
MAX_REASONS = 32
OTHER_REASON = "other"

# From "the line appeared" to "the action was taken": sub-second is the goal, minutes
# (stall detection) the worst case.
_LATENCY_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    15.0,
    60.0,
    300.0,
    1800.0,
)


class HasDroppedLines(Protocol):
    """A log file that gives lines up for good (swarmd.rotating.RotatingLog)."""

    @property
    def dropped_lines(self) -> int: ...


class HasCallbackErrors(Protocol):
    """A line reader whose consumer failed on some lines (PipeCapture, FileFollower)."""

    @property
    def callback_errors(self) -> int: ...


class Metrics:
    """The series swarmd exports; each setter is cheap enough for the event loop."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._reasons: set[str] = set()
        self._restarts = Counter(
            "swarmd_restarts",
            "Trainer restarts by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._state = Gauge(
            "swarmd_state",
            "1 for the supervisor's current state, 0 for the others.",
            ["state"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "swarmd_detection_latency_seconds",
            "Seconds from the evidence (log line, probe) to the supervisor's action.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._lines = Counter(
            "swarmd_trainer_lines",
            "Lines read from the trainer's output and followed logs.",
            registry=self.registry,
        )
        self._round = Gauge(
            "swarmd_round",
            "Current swarm round (NaN: unknown).",
            registry=self.registry,
        )
        self._peers = Gauge(
            "swarmd_peers", "DHT peers visible (NaN: unknown).", registry=self.registry
        )
        self._reward = Gauge(
            "swarmd_reward",
            "Last reward reported (NaN: unknown).",
            registry=self.registry,
        )
        self._step = Gauge(
            "swarmd_step_seconds",
            "Longest recent training step the trainer reported (NaN: unknown).",
            registry=self.registry,
        )
        self._progress_at = Gauge(
            "swarmd_last_progress_timestamp_seconds",
            "Unix time of the trainer's last progress (NaN: none seen yet).",
            registry=self.registry,
        )
        self._dropped = Counter(
            "swarmd_lines_dropped",
            "Lines given up for good by a log swarmd writes (the disk refused them past the buffer).",
            ["log"],
            registry=self.registry,
        )
        self._callback_errors = Counter(
            "swarmd_callback_errors",
            "Lines a reader could not hand to the classifier (the consumer raised).",
            ["reader"],
            registry=self.registry,
        )
        self._p2pd_up = Gauge(
            "swarmd_p2pd_up",
            "1 while the node's p2pd answers its control socket, 0 when gone or silent (NaN: unknown).",
            registry=self.registry,
        )
        self._chain_rpc_up = Gauge(
            "swarmd_chain_rpc_up", "1 when the chain RPC answered the last read (NaN: no chain probe).", registry=self.registry
        )
        self._chain_round = Gauge(
            "swarmd_chain_round", "The coordinator contract's currentRound (NaN: unknown).", registry=self.registry
        )
        self._chain_block = Gauge(
            "swarmd_chain_block", "The chain's latest block number (NaN: unknown).", registry=self.registry
        )
        self._chain_queue = Gauge(
            "swarmd_chain_queue_depth",
            "Chain submissions the trainer has queued on disk, not yet on chain (NaN: no chain).",
            registry=self.registry,
        )
        for gauge in (self._round, self._peers, self._reward, self._p2pd_up, self._chain_rpc_up, self._chain_round,
                      self._chain_block, self._chain_queue, self._step, self._progress_at):
            gauge.set(math.nan)
        # Sources of lost lines keep running totals; these remember what was exported.
        # Weak keys: a finished trainer run's capture goes away with its last count.
        self._logs: weakref.WeakKeyDictionary[HasDroppedLines, tuple[str, int]] = (
            weakref.WeakKeyDictionary()
        )
        self._readers: weakref.WeakKeyDictionary[HasCallbackErrors, tuple[str, int]] = (
            weakref.WeakKeyDictionary()
        )
        for log in ("trainer", "monitor"):
            self._dropped.labels(log=log)
        for reader in ("trainer", "follow"):
            self._callback_errors.labels(reader=reader)
        self.set_state(State.STARTING)

    def restart(self, reason: str) -> None:
        self._restarts.labels(reason=self._bounded_reason(reason)).inc()

    def set_state(self, state: State) -> None:
        # Enum style: every state is always present, so `swarmd_state{state="fatal"}==1`
        # is an alert rule that never sees a missing series.
        for s in State:
            self._state.labels(state=s.value).set(1.0 if s is state else 0.0)

    def detection_latency(self, seconds: float) -> None:
        self._latency.observe(max(0.0, seconds))

    def lines(self, n: int = 1) -> None:
        """Callers batch (one call per read chunk, not per line) to keep this off the
        hot path."""
        if n > 0:
            self._lines.inc(n)

    def set_round(self, r: int | None) -> None:
        self._round.set(math.nan if r is None else float(r))

    def set_peers(self, n: int | None) -> None:
        self._peers.set(math.nan if n is None else float(n))

    def set_reward(self, x: float | None) -> None:
        self._reward.set(math.nan if x is None else float(x))

    def heartbeat(self, beat: Heartbeat) -> None:
        """Everything the trainer's heartbeat says that a fleet alert needs."""
        self.set_round(beat.round)
        self.set_peers(beat.peers)
        if beat.last_reward is not None:
            self.set_reward(beat.last_reward)
        self.set_step_seconds(max(beat.step_seconds) if beat.step_seconds else None)
        self.set_chain_queue(beat.chain_queue)

    def set_step_seconds(self, x: float | None) -> None:
        self._step.set(math.nan if x is None else float(x))

    def set_last_progress(self, wall: float | None) -> None:
        self._progress_at.set(math.nan if wall is None else float(wall))

    def watch_log(self, name: str, log: HasDroppedLines) -> None:
        """Export `log.dropped_lines` as `swarmd_lines_dropped_total{log=name}`."""
        with self._lock:
            self._logs.setdefault(log, (name, 0))
            self._dropped.labels(log=name)

    def watch_reader(self, name: str, reader: HasCallbackErrors) -> None:
        """Export `reader.callback_errors` as `swarmd_callback_errors_total{reader=name}`."""
        with self._lock:
            self._readers.setdefault(reader, (name, 0))
            self._callback_errors.labels(reader=name)

    def sync(self) -> None:
        """Add what the watched sources lost since the last call (cheap: call per tick;
        every scrape calls it too)."""
        with self._lock:
            for log, (name, seen) in list(self._logs.items()):
                total = log.dropped_lines
                if total > seen:
                    self._dropped.labels(log=name).inc(total - seen)
                    self._logs[log] = (name, total)
            for reader, (name, seen) in list(self._readers.items()):
                total = reader.callback_errors
                if total > seen:
                    self._callback_errors.labels(reader=name).inc(total - seen)
                    self._readers[reader] = (name, total)

    def set_chain_queue(self, n: int | None) -> None:
        self._chain_queue.set(math.nan if n is None else float(n))

    def set_p2pd_up(self, alive: bool | None) -> None:
        self._p2pd_up.set(math.nan if alive is None else float(alive))

    def set_chain(self, rpc_up: bool | None, rnd: int | None, block: int | None) -> None:
        self._chain_rpc_up.set(math.nan if rpc_up is None else float(rpc_up))
        self._chain_round.set(math.nan if rnd is None else float(rnd))
        self._chain_block.set(math.nan if block is None else float(block))

    def render(self) -> bytes:
        """The Prometheus text exposition format (version 0.0.4)."""
        self.sync()
        return generate_latest(self.registry)

    def _bounded_reason(self, reason: str) -> str:
        reason = reason or "unknown"
        with self._lock:
            if reason in self._reasons:
                return reason
            if len(self._reasons) >= MAX_REASONS:
                return OTHER_REASON
            self._reasons.add(reason)
            return reason

"""Judge a series of chain readings: RPC down/up, a round that goes backwards, a round
that stands still. Pure: readings and the monotonic `now` in, events out.

- A round below the highest one seen, on two readings in a row, means the chain was
  reset or the node points at another contract: an upstream node then waits for
  `chain round >= its round` for ever. Two readings, because load-balanced public RPCs
  answer from backends a block or two apart, and one of them may lag behind a round.
- A round that stands still for `stall_rounds` round lengths while the node runs
  means the swarm's stage manager stopped; restarting the node cannot fix that, so it
  is reported, not acted on. The round length is the configured one, else learned
  from the advances seen (the median gap); without either nothing is judged.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from swarmd.chain_rpc import ChainReading

_GAPS = 8


@dataclass(frozen=True, slots=True)
class ChainEvent:
    """`kind`: chain_rpc_down, chain_rpc_up, chain_round_backwards, chain_round_stalled,
    chain_contract_silent. `fault` marks the ones a restart may cure."""

    kind: str
    evidence: str
    fault: bool = False


class ChainWatch:
    def __init__(self, *, stall_rounds: float = 3.0, round_length: float = 0.0) -> None:
        self._stall_rounds = stall_rounds
        self._round_length = round_length
        self._rpc_ok: bool | None = None
        self._contract_ok: bool | None = None
        self._highest: int | None = None
        self._below = 0
        self._round: int | None = None
        self._changed_at: float | None = None
        self._seen_change = False  # _changed_at is an advance we saw, not our first look
        self._gaps: deque[float] = deque(maxlen=_GAPS)
        self._running_since: float | None = None
        self._stall_reported = False
        self.last: ChainReading | None = None

    def round_length(self) -> float | None:
        if self._round_length > 0:
            return self._round_length
        return statistics.median(self._gaps) if self._gaps else None

    def node_running(self, now: float, running: bool) -> None:
        """Stall time counts only while the node runs (a stopped node is no evidence)."""
        if running and self._running_since is None:
            self._running_since = now
        elif not running:
            self._running_since = None

    def observe(self, now: float, reading: ChainReading) -> list[ChainEvent]:
        self.last = reading
        events: list[ChainEvent] = []
        if reading.ok != self._rpc_ok:
            if not reading.ok:
                events.append(ChainEvent("chain_rpc_down", reading.detail))
            elif self._rpc_ok is False:
                events.append(ChainEvent("chain_rpc_up", reading.detail))
            self._rpc_ok = reading.ok
        if not reading.ok:
            return events
        if reading.contract_error:
            if self._contract_ok is not False and self._highest is not None:
                events.append(ChainEvent("chain_contract_silent", reading.detail))
            self._contract_ok = False
            return events
        self._contract_ok = True
        if reading.round is not None:
            events += self._on_round(now, reading.round, reading.detail)
        return events

    def _on_round(self, now: float, rnd: int, detail: str) -> list[ChainEvent]:
        events: list[ChainEvent] = []
        if self._highest is not None and rnd < self._highest:
            self._below += 1
            if self._below < 2:
                return events  # one lagging backend is not yet a reset
            events.append(ChainEvent(
                "chain_round_backwards",
                f"chain round went back from {self._highest} to {rnd} (chain reset, or another contract): {detail}",
                fault=True,
            ))
            self._highest, self._round, self._changed_at = rnd, rnd, now
            self._seen_change = False
            self._below = 0
            self._gaps.clear()
            return events
        self._below = 0
        self._highest = rnd if self._highest is None else max(self._highest, rnd)
        if rnd != self._round:
            if self._seen_change and self._changed_at is not None and self._round is not None and rnd == self._round + 1:
                self._gaps.append(now - self._changed_at)
            self._seen_change = self._round is not None
            self._round, self._changed_at = rnd, now
            self._stall_reported = False
            return events
        return self._stalled(now, rnd, detail)

    def _stalled(self, now: float, rnd: int, detail: str) -> list[ChainEvent]:
        length = self.round_length()
        if length is None or self._changed_at is None or self._running_since is None or self._stall_reported:
            return []
        still = now - max(self._changed_at, self._running_since)
        if still < self._stall_rounds * length:
            return []
        self._stall_reported = True
        return [ChainEvent(
            "chain_round_stalled",
            f"chain round {rnd} has not advanced for {still:.0f}s ({self._stall_rounds:g} round lengths of {length:.0f}s) "
            f"while the node runs: {detail}",
        )]

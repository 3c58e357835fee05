"""Time as a collaborator: decisions read `monotonic()`, timestamps read `wall()`.

Nothing in swarmd calls `time.monotonic()` or `time.time()` directly for a decision;
it is handed a `Clock`, so tests drive time with `FakeClock.advance()` (trio's
`Clock` ABC and `MockClock` are the model).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clocks. `monotonic` never jumps with NTP or suspend adjustments."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to; for tests and simulated soak runs."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset

    def monotonic(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds

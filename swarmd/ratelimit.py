"""How often a repeating failure may reach the log.

A reader that fails on every line (a classifier bug, a full disk) must not write a
log line per trainer line: that would stall the pipe drain and fill the disk it is
complaining about. Logging only the first occurrence hides the rest for ever. The
middle way is one report per interval that carries how many were held back since the
last one, so the log stays short and the totals in it stay true.
"""

from __future__ import annotations

import threading

from swarmd.clock import Clock

REPORT_EVERY = 60.0  # s between reports of one repeating failure


class ReportLimiter:
    """Decides whether this occurrence is reported; thread-safe, pure apart from the
    injected clock.

    `occurred(n)` records n occurrences and returns None when they are to be held back,
    or the number of occurrences the report should speak for (these n plus every one
    held back since the last report). The first occurrence is always reported.
    """

    def __init__(self, clock: Clock, interval: float = REPORT_EVERY) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._held = 0

    def occurred(self, n: int = 1) -> int | None:
        now = self._clock.monotonic()
        with self._lock:
            self._held += n
            if now < self._next:
                return None
            self._next = now + self._interval
            count, self._held = self._held, 0
            return count

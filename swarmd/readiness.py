"""How long systemd waits for READY=1, asked for in steps while the trainer starts.

With `ready_on = "progress"` READY=1 waits for the trainer's first progress line, and
a first model download or a crash loop before it can outlast the unit's
`TimeoutStartSec`: systemd would then kill swarmd for being slow to start, although
swarmd is doing its job. So until READY=1 swarmd sends `EXTEND_TIMEOUT_USEC` every
few seconds, each asking for a little more than the gap to the next one (a lost or
late datagram costs nothing), and never past `[health] ready_timeout` after swarmd's
own start: a node that cannot get going within that bound is left to systemd's
timeout, as the operator configured.

Pure: the caller passes the monotonic time and sends what `due` returns.
"""

from __future__ import annotations

EXTEND_EVERY = 10.0  # s between two EXTEND_TIMEOUT_USEC datagrams at most
_HEADROOM = 3.0  # each asks for this many gaps: two may be lost before systemd acts


class StartExtension:
    """The `EXTEND_TIMEOUT_USEC` schedule from `started` until `budget` seconds later.

    The gap is `EXTEND_EVERY`, or a third of the budget when that is shorter, so even
    a small budget is asked for in several steps. `done()` (READY=1 was sent) ends it.
    """

    def __init__(self, budget: float, started: float, every: float = EXTEND_EVERY) -> None:
        if budget < 0 or every <= 0:
            raise ValueError("budget must be >= 0 and every > 0")
        self._deadline = started + budget
        self._gap = min(every, budget / 3) if budget > 0 else every
        self._next = started if budget > 0 else float("inf")

    def due(self, now: float) -> int | None:
        """Microseconds to ask for now, or None when nothing is to be sent."""
        if now < self._next:
            return None
        left = self._deadline - now
        if left <= 0:
            self._next = float("inf")
            return None
        self._next = now + self._gap
        return max(1, round(min(_HEADROOM * self._gap, left) * 1_000_000))

    def done(self) -> None:
        self._next = float("inf")

    @property
    def next_due(self) -> float:
        """When `due` may next return a value (inf: never), for the loop's wake-up."""
        return self._next

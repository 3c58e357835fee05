"""systemd's view of the daemon: READY once (after the first real progress, or at
start with `ready_on = "start"`), WATCHDOG pings on the loop's cadence, so a wedged
loop (not a slow trainer) is what systemd's watchdog catches, and, until READY, more
start time asked for in steps.

Why the steps: with `ready_on = "progress"` READY=1 waits for the trainer's first
progress line, and a first model download or a crash loop before it can outlast the
unit's `TimeoutStartSec`: systemd would kill swarmd for being slow to start although
swarmd is doing its job. So until READY=1 swarmd sends `EXTEND_TIMEOUT_USEC` every
few seconds, each asking for a little more than the gap to the next one (a lost or
late datagram costs nothing), and never past `[health] ready_timeout` after swarmd's
own start: a node that cannot get going within that bound is left to systemd's
timeout, as the operator configured.
"""

from __future__ import annotations

from swarmd.config import Config
from swarmd.notify import Notifier
from swarmd.parts import Kept

EXTEND_EVERY = 10.0  # s between two EXTEND_TIMEOUT_USEC datagrams at most
_HEADROOM = 3.0  # each asks for this many gaps: two may be lost before systemd acts


class StartExtension:
    """The `EXTEND_TIMEOUT_USEC` schedule from `started` until `budget` seconds later;
    pure (the caller passes the monotonic time and sends what `due` returns).

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


class Readiness:
    name = "notify"

    def __init__(self, notifier: Notifier, ready_on: str, ready_timeout: float = 0.0, started: float = 0.0) -> None:
        self.notifier = notifier
        self.ready_on = ready_on
        self.ready_sent = False
        self._next_watchdog = 0.0
        self._started = started
        self._extension = StartExtension(ready_timeout, started)

    def start(self) -> None:
        """Nothing to open: the notifier's socket comes from systemd's environment."""

    def reconfigure(self, config: Config) -> list[Kept]:
        self.ready_on = config.health.ready_on
        if not self.ready_sent:  # a new bound, still counted from swarmd's start
            self._extension = StartExtension(config.health.ready_timeout, self._started)
        return []

    def stop(self) -> None:
        """The notifier outlives the loop (the last STOPPING is sent after it)."""

    def mark_ready(self, status: str) -> bool:
        """READY=1 the first time only; True when this call sent it."""
        if self.ready_sent:
            return False
        self.ready_sent = True
        self._extension.done()
        self.notifier.ready(status)
        return True

    def watchdog_due(self) -> float:
        """When the loop must next wake for a WATCHDOG ping or a start extension."""
        due = self._extension.next_due if self.notifier.enabled else float("inf")
        return min(due, self._next_watchdog) if self.notifier.watchdog_interval() else due

    def maybe_watchdog(self, now: float) -> None:
        interval = self.notifier.watchdog_interval()
        if interval and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + interval
        if self.notifier.enabled:
            usec = self._extension.due(now)
            if usec is not None:
                self.notifier.extend_timeout(usec)

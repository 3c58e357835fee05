"""systemd's view of the daemon: READY once (after the first real progress, or at
start with `ready_on = "start"`), and WATCHDOG pings on the loop's cadence, so a
wedged loop (not a slow trainer) is what systemd's watchdog catches.
"""

from __future__ import annotations

from swarmd.config import Config
from swarmd.notify import Notifier
from swarmd.parts import Kept


class Readiness:
    name = "notify"

    def __init__(self, notifier: Notifier, ready_on: str) -> None:
        self.notifier = notifier
        self.ready_on = ready_on
        self.ready_sent = False
        self._next_watchdog = 0.0

    def start(self) -> None:
        """Nothing to open: the notifier's socket comes from systemd's environment."""

    def reconfigure(self, config: Config) -> list[Kept]:
        self.ready_on = config.health.ready_on
        return []

    def stop(self) -> None:
        """The notifier outlives the loop (the last STOPPING is sent after it)."""

    def mark_ready(self, status: str) -> bool:
        """READY=1 the first time only; True when this call sent it."""
        if self.ready_sent:
            return False
        self.ready_sent = True
        self.notifier.ready(status)
        return True

    def watchdog_due(self) -> float:
        return self._next_watchdog if self.notifier.watchdog_interval() else float("inf")

    def maybe_watchdog(self, now: float) -> None:
        interval = self.notifier.watchdog_interval()
        if interval and now >= self._next_watchdog:
            self.notifier.watchdog()
            self._next_watchdog = now + interval

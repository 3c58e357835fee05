"""`trainer.log` and `monitor.log` as parts: a reload applies `[logs]` to the files
that are open now.

`max_bytes`, `keep` and `compress` change in place. A new path opens a new file and
retires the old one: it stays open (and is closed at exit) because a writer may still
hold it: the running trainer's pipe reader until the restart that follows every
reload, or a thread in the middle of a log call.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from swarmd.config import Config, LogsConfig
from swarmd.logs import configure
from swarmd.parts import Kept
from swarmd.rotating import RotatingLog

# Told about every log file opened (the metrics export its dropped lines).
WatchLog = Callable[[str, RotatingLog], None]


def _unwatched(name: str, log: RotatingLog) -> None:
    """The default: nobody counts this log's dropped lines."""


class TrainerLog:
    """The file the trainer's output goes to; `current` is what a new run writes to."""

    name = "trainer_log"

    def __init__(
        self, logs: LogsConfig, on_error: Callable[[OSError], None], watch: WatchLog = _unwatched
    ) -> None:
        self._on_error = on_error
        self._watch = watch
        self.current = RotatingLog(logs.trainer_log, logs.max_bytes, logs.keep, logs.compress, on_error=on_error)
        watch("trainer", self.current)
        self._retired: list[RotatingLog] = []

    def start(self) -> None:
        """Opened lazily by the first write."""

    def reconfigure(self, config: Config) -> list[Kept]:
        logs = config.logs
        if logs.trainer_log != self.current.path:
            self._retired.append(self.current)
            self.current = RotatingLog(
                logs.trainer_log, logs.max_bytes, logs.keep, logs.compress, on_error=self._on_error
            )
            self._watch("trainer", self.current)
        else:
            self.current.reconfigure(logs.max_bytes, logs.keep, logs.compress)
        return []

    def release(self, log: RotatingLog) -> None:
        """A run that wrote to `log` is over: close it if a reload retired it."""
        if log in self._retired:
            self._retired.remove(log)
            log.close()

    def stop(self) -> None:
        for log in (*self._retired, self.current):
            log.close()
        self._retired.clear()


class MonitorLog:
    """swarmd's own log (`monitor.log`) and its console echo. Owned by the CLI, which
    writes the last line after the loop has stopped: `stop` leaves it open, `close`
    ends it."""

    name = "monitor_log"

    def __init__(self, logs: LogsConfig, *, console_allowed: bool, watch: WatchLog = _unwatched) -> None:
        self._console_allowed = console_allowed
        self._watch = watch
        self.current = RotatingLog(logs.monitor_log, logs.max_bytes, logs.keep, logs.compress)
        watch("monitor", self.current)
        self._wanted_console = logs.console
        self.console = logs.console and console_allowed
        self._retired: list[RotatingLog] = []
        configure(self.current, sys.stderr if self.console else None)

    def start(self) -> None:
        """Configured at construction, so the first event already has its sink."""

    def reconfigure(self, config: Config) -> list[Kept]:
        logs = config.logs
        kept = []
        if logs.console and logs.console != self._wanted_console and not self._console_allowed:
            kept.append(Kept("logs.console", "swarmd runs with --no-console"))
        self._wanted_console = logs.console
        console = logs.console and self._console_allowed
        moved = logs.monitor_log != self.current.path
        if moved:
            self._retired.append(self.current)
            self.current = RotatingLog(logs.monitor_log, logs.max_bytes, logs.keep, logs.compress)
            self._watch("monitor", self.current)
        else:
            self.current.reconfigure(logs.max_bytes, logs.keep, logs.compress)
        if moved or console != self.console:
            self.console = console
            configure(self.current, sys.stderr if console else None)
        return kept

    def stop(self) -> None:
        """The CLI logs `swarmd_exited` after the loop; `close` comes after that."""

    def close(self) -> None:
        for log in (*self._retired, self.current):
            log.close()
        self._retired.clear()

"""structlog set-up: one JSON object per line in `monitor.log`, a readable console on
stderr, and secret redaction as a processor so no code path can forget it.

Configured once, by `cli`. Components receive a bound logger; tests use
`structlog.testing.capture_logs()` (logger caching is off so that works).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, Protocol, TextIO

import structlog

from swarmd.redact import redact_mapping


class LineSink(Protocol):
    def write(self, data: bytes) -> None: ...

    def flush(self) -> None: ...


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return redact_mapping(event_dict)


class _TeeRenderer:
    """Final processor: JSON line to the monitor log, pretty line to the console."""

    def __init__(self, sink: LineSink | None, console: TextIO | None) -> None:
        self._sink = sink
        self._console = console
        self._lock = threading.Lock()
        colors = bool(console is not None and getattr(console, "isatty", lambda: False)())
        self._pretty = structlog.dev.ConsoleRenderer(colors=colors)

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        line = json.dumps(event_dict, default=str, ensure_ascii=False)
        with self._lock:
            if self._sink is not None:
                self._sink.write(line.encode("utf-8", errors="replace") + b"\n")
                self._sink.flush()
            if self._console is not None:
                try:
                    self._console.write(str(self._pretty(logger, name, dict(event_dict))) + "\n")
                    self._console.flush()
                except (OSError, ValueError):
                    pass  # a closed terminal must not take the daemon down
        return line


class _NullLogger:
    """The renderer already wrote everything; structlog still wants a logger."""

    def msg(self, message: str) -> None:
        return None

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def configure(sink: LineSink | None, console: TextIO | None = sys.stderr, level: str = "info") -> None:
    """Install the processor chain. `sink` is a `capture.RotatingLog` for monitor.log."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _redact,
            _TeeRenderer(sink, console),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, 20)),
        logger_factory=lambda *_: _NullLogger(),
        cache_logger_on_first_use=False,
    )


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger(**initial)

"""OS signals -> events. The handlers only enqueue; the supervisor's loop does the work.

`queue.SimpleQueue.put` is documented as reentrant, which is exactly what a Python
signal handler needs (it may interrupt the main thread inside `get`). Doing real work
in a handler (honcho's `loop._terminate` prints and kills there) races with the loop.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


@dataclass(frozen=True, slots=True)
class OsSignal:
    signum: int


def install(put: Callable[[Any], None], signals: Iterable[int] = HANDLED) -> Callable[[], None]:
    """Route `signals` to `put(OsSignal(n))`; returns a function restoring the old handlers."""
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: FrameType | None) -> None:
        put(OsSignal(signum))

    for sig in signals:
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore

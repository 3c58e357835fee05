"""The reader-side gate: tracebacks judged as blocks, noise coalesced, the last crash
kept for the exit."""

from __future__ import annotations

from typing import Any

from swarmd.classify import Classifier
from swarmd.domain import Verdict
from swarmd.events import LineSeen
from swarmd.inputs import LineGate

CAUGHT = [
    "Jul 19 09:22:42.251 [WARN] [petals.server.reachability.check:148] Reachability check failed",
    "Traceback (most recent call last):",
    '  File "/x/reachability.py", line 40, in check',
    "ConnectionRefusedError: [Errno 111] Connection refused",
]


def gate() -> tuple[LineGate, list[Any]]:
    posted: list[Any] = []
    clf = Classifier()
    return LineGate(lambda: clf, posted.append, lambda: 1, "stdout"), posted


def test_caught_tracebacks_by_the_hundred_reach_the_loop_a_few_times_a_second() -> None:
    g, posted = gate()
    for i in range(100):
        for line in CAUGHT:
            g(line, i * 0.01)  # 100 blocks in one second
    g("INFO: a line that closes the last block", 1.0)
    noise = [e for e in posted if isinstance(e, LineSeen) and e.signal.verdict is Verdict.TRANSIENT_IGNORE]
    assert 1 <= len(noise) <= 5


def test_the_last_uncaught_traceback_is_kept_for_the_exit() -> None:
    g, _ = gate()
    for line in ["Traceback (most recent call last):", '  File "/x/launcher.py", line 3, in <module>',
                 "ModuleNotFoundError: No module named 'hydra'"]:
        g(line, 0.0)
    crash = g.last_crash()  # the writer exited: the open block closes here
    assert crash is not None
    assert (crash.verdict, crash.kind) == (Verdict.GIVE_UP_FATAL, "dependency_missing")

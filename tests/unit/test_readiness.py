"""The EXTEND_TIMEOUT_USEC schedule while systemd waits for READY=1: exact tables on
an injected clock."""

from __future__ import annotations

import pytest

from swarmd.readiness import StartExtension


def _schedule(ext: StartExtension, until: float, step: float = 0.5) -> list[tuple[float, float]]:
    """(time, seconds asked for) of every datagram from t=0 to `until`."""
    sent = []
    t = 0.0
    while t <= until:
        usec = ext.due(t)
        if usec is not None:
            sent.append((t, usec / 1e6))
        t += step
    return sent


def test_asks_every_gap_for_three_gaps_and_never_past_the_budget() -> None:
    """budget 60 s, gap 10 s: asks at 0, 10, ... 50 s; the last ones only up to 60 s."""
    ext = StartExtension(60.0, started=0.0, every=10.0)
    assert _schedule(ext, 120.0) == [(0.0, 30.0), (10.0, 30.0), (20.0, 30.0), (30.0, 30.0), (40.0, 20.0), (50.0, 10.0)]


def test_small_budget_is_asked_for_in_three_steps() -> None:
    """budget 3 s (shorter than 3 gaps): gap 1 s, asks at 0, 1, 2 s for what is left."""
    ext = StartExtension(3.0, started=0.0, every=10.0)
    assert _schedule(ext, 10.0) == [(0.0, 3.0), (1.0, 2.0), (2.0, 1.0)]


def test_done_stops_the_schedule() -> None:
    """After READY=1 nothing more is asked for."""
    ext = StartExtension(60.0, started=0.0, every=10.0)
    assert ext.due(0.0) == 30_000_000
    ext.done()
    assert ext.next_due == float("inf")
    assert _schedule(ext, 60.0) == []


def test_zero_budget_never_extends() -> None:
    """ready_timeout = 0: systemd's own TimeoutStartSec alone decides."""
    assert _schedule(StartExtension(0.0, started=0.0), 30.0) == []


def test_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        StartExtension(-1.0, started=0.0)

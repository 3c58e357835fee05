"""ReportLimiter: the first occurrence is reported, then one report per interval that
speaks for everything held back since the previous one."""

from __future__ import annotations

from swarmd.clock import FakeClock
from swarmd.ratelimit import ReportLimiter


def test_first_then_one_report_per_interval_carrying_the_held_count() -> None:
    """Over 3 intervals of steady failures, exactly 3 reports, and their counts add up."""
    clock = FakeClock()
    limiter = ReportLimiter(clock, interval=10.0)
    reports: list[tuple[float, int]] = []
    for _ in range(240):  # one failure every 0.125 s (exact in binary) for 30 s
        count = limiter.occurred()
        if count is not None:
            reports.append((clock.monotonic() - 1000.0, count))
        clock.advance(0.125)
    assert [round(t, 1) for t, _ in reports] == [0.0, 10.0, 20.0]
    assert [n for _, n in reports] == [1, 80, 80]


def test_batches_count_every_occurrence() -> None:
    """`occurred(n)` counts n at once (a log dropping a chunk of lines)."""
    clock = FakeClock()
    limiter = ReportLimiter(clock, interval=5.0)
    assert limiter.occurred(7) == 7
    assert limiter.occurred(3) is None
    clock.advance(5.0)
    assert limiter.occurred(2) == 5

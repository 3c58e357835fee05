"""Back-off pacing: exact schedules (jitter pinned to 0), jitter bounds, healthy reset,
minimum start interval and the crash-loop window."""

from __future__ import annotations

import pytest

from swarmd.backoff import Backoff
from swarmd.config import RestartConfig


def _backoff(**kw: float) -> Backoff:
    cfg = RestartConfig(**{"jitter": 0.0, **kw})  # type: ignore[arg-type]
    return Backoff(cfg)


def test_default_schedule_doubles_from_5s_and_caps_at_15_minutes() -> None:
    """The whole default curve, cap included: 5, 10, 20 ... 640, 900, 900 s."""
    b = _backoff()
    assert [b.delay_for(n) for n in range(1, 11)] == [5, 10, 20, 40, 80, 160, 320, 640, 900, 900]


@pytest.mark.parametrize(
    ("initial", "mult", "cap", "expected"),
    [
        (1.0, 2.0, 8.0, [1, 2, 4, 8, 8]),
        (0.5, 3.0, 10.0, [0.5, 1.5, 4.5, 10, 10]),
        (2.0, 1.5, 100.0, [2, 3, 4.5, 6.75, 10.125]),
    ],
)
def test_custom_schedule_follows_initial_multiplier_and_cap(
    initial: float, mult: float, cap: float, expected: list[float]
) -> None:
    """Each configured curve is reproduced exactly, attempt by attempt."""
    b = _backoff(initial_delay=initial, multiplier=mult, max_delay=cap)
    assert [b.delay_for(n) for n in range(1, 6)] == pytest.approx(expected)


def test_jitter_stays_within_its_bounds_and_never_exceeds_the_cap() -> None:
    """Over many draws jitter adds [0, jitter] seconds and the cap still holds."""
    b = Backoff(RestartConfig(jitter=3.0, max_delay=900.0))
    draws = [b.delay_for(2) for _ in range(2000)]
    assert min(draws) >= 10.0
    assert max(draws) <= 13.0
    assert max(draws) - min(draws) > 2.0  # it really varies
    assert all(b.delay_for(20) <= 900.0 for _ in range(500))


def test_next_delay_counts_attempts_in_order() -> None:
    """Successive restarts walk up the curve."""
    b = _backoff()
    assert [b.next_delay(float(t)) for t in range(4)] == [5, 10, 20, 40]
    assert b.attempts == 4


def test_running_for_the_healthy_period_resets_the_curve() -> None:
    """After `healthy_reset_after` seconds of running, the next restart waits the initial delay."""
    b = _backoff(healthy_reset_after=600.0)
    b.next_delay(0.0)
    b.next_delay(10.0)
    b.started(100.0)
    assert not b.healthy(699.0)
    assert b.healthy(700.0)
    assert b.next_delay(701.0) == 5


def test_min_interval_holds_even_with_a_zero_curve() -> None:
    """Two starts are never closer than `min_interval`."""
    b = _backoff(initial_delay=0.0, min_interval=2.0)
    b.started(100.0)
    assert b.next_delay(100.5) == pytest.approx(1.5)


def test_crash_loop_trips_after_max_restarts_within_the_window() -> None:
    """N restarts inside the window is a crash loop; old restarts fall out of the window."""
    b = _backoff(crash_loop_max=3, crash_loop_window=60.0)
    for t in (0.0, 10.0):
        b.next_delay(t)
    assert not b.crash_loop(20.0)
    b.next_delay(30.0)
    assert b.crash_loop(30.0)
    assert not b.crash_loop(61.0)  # the restart at t=0 left the window


def test_reset_forgets_attempts_and_window() -> None:
    """A SIGHUP or new config leaves fatal with a clean slate."""
    b = _backoff(crash_loop_max=2)
    b.next_delay(0.0)
    b.next_delay(1.0)
    b.reset()
    assert b.attempts == 0
    assert not b.crash_loop(2.0)

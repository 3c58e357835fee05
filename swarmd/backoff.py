"""Restart pacing: capped exponential back-off with jitter, reset after a healthy
period, a minimum start interval, and the crash-loop window that ends in `fatal`.

The curve itself is tenacity's (`wait_exponential` + `wait_random`), evaluated on a
synthetic `RetryCallState` so the attempt number is ours to keep; this module never
sleeps and never reads a clock: every method takes `now` (monotonic seconds).
"""

from __future__ import annotations

from collections import deque

import tenacity

from swarmd.config import RestartConfig


def _retry_state(attempt: int) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


class Backoff:
    """Counts restart attempts and turns them into delays.

    attempt 1 waits `initial_delay`, each further attempt multiplies by `multiplier`,
    capped at `max_delay` (jitter included: the cap is a promise to the operator).
    """

    def __init__(self, cfg: RestartConfig) -> None:
        self._cfg = cfg
        wait: tenacity.wait.wait_base = tenacity.wait_exponential(
            multiplier=cfg.initial_delay, exp_base=cfg.multiplier, max=cfg.max_delay
        )
        if cfg.jitter > 0:
            wait = wait + tenacity.wait_random(0, cfg.jitter)
        self._wait = wait
        self.attempts = 0
        self._last_start: float | None = None
        self._running_since: float | None = None
        self._restarts: deque[float] = deque()

    @property
    def config(self) -> RestartConfig:
        return self._cfg

    def delay_for(self, attempt: int) -> float:
        """The delay before restart number `attempt` (1-based), jitter included."""
        return min(self._cfg.max_delay, self._wait(_retry_state(max(1, attempt))))

    def next_delay(self, now: float) -> float:
        """Register one restart at `now` and return how long to wait before starting.

        The wait also honours `min_interval` between two starts, whatever the curve says.
        """
        self.attempts += 1
        self._restarts.append(now)
        self._trim(now)
        delay = self.delay_for(self.attempts)
        if self._last_start is not None:
            delay = max(delay, self._cfg.min_interval - (now - self._last_start))
        return max(0.0, delay)

    def min_wait(self, now: float) -> float:
        """What is left of `min_interval` since the last start: the floor even for an
        operator-forced restart (a SIGHUP storm must not start the trainer in a loop)."""
        if self._last_start is None:
            return 0.0
        return max(0.0, self._cfg.min_interval - (now - self._last_start))

    def keep_last_start(self, old: Backoff) -> None:
        """A reloaded config gets a new Backoff; `min_interval` still counts from the
        start the old one saw."""
        self._last_start = old._last_start

    def started(self, now: float) -> None:
        self._last_start = now
        self._running_since = now

    def stopped(self) -> None:
        self._running_since = None

    def healthy(self, now: float) -> bool:
        """Reset the attempt count once the child has run `healthy_reset_after` seconds.

        Returns True when this call reset it (so the caller can log the event once).
        """
        if (
            self.attempts
            and self._running_since is not None
            and now - self._running_since >= self._cfg.healthy_reset_after
        ):
            self.attempts = 0
            return True
        return False

    def restarts_in_window(self, now: float) -> int:
        self._trim(now)
        return len(self._restarts)

    def crash_loop(self, now: float) -> bool:
        """True when `crash_loop_max` restarts happened within `crash_loop_window`."""
        return self.restarts_in_window(now) >= self._cfg.crash_loop_max

    def reset(self) -> None:
        """Forget everything (SIGHUP or a new config leaves `fatal` with a clean slate)."""
        self.attempts = 0
        self._restarts.clear()

    def _trim(self, now: float) -> None:
        horizon = now - self._cfg.crash_loop_window
        while self._restarts and self._restarts[0] <= horizon:
            self._restarts.popleft()

"""Lost lines are visible: in monitor.log (rate-limited, not only the first) and in
`/metrics`, for the three places a line can be lost: the pipe reader's consumer, a
followed file's consumer, and a log the disk refuses past its buffer."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from swarmd.capture import PipeCapture
from swarmd.clock import FakeClock
from swarmd.follow import FileFollower
from swarmd.metrics import Metrics
from swarmd.ratelimit import REPORT_EVERY
from swarmd.rotating import RotatingLog
from tests.conftest import wait_until

pytestmark = pytest.mark.io


def _series(metrics: Metrics, name: str, label: str) -> float:
    text = metrics.render().decode()
    m = re.search(rf"^{name}\{{{label}\}} (\S+)$", text, re.MULTILINE)
    assert m is not None, f"{name}{{{label}}} not exported:\n{text}"
    return float(m.group(1))


def _failing(text: str, *_: object) -> None:
    raise RuntimeError(f"consumer bug on {text[:20]!r}")


@pytest.fixture
def closers() -> Iterator[list[Callable[[], None]]]:
    todo: list[Callable[[], None]] = []
    yield todo
    for fn in reversed(todo):
        fn()


def test_pipe_consumer_errors_are_reported_again_after_the_interval_and_exported(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """Every line of a failing call is counted in /metrics; the log gets the first
    failure at once and a later report, carrying how many failed meanwhile, once the
    interval has passed."""
    clock = FakeClock()
    metrics = Metrics()
    log = RotatingLog(tmp_path / "trainer.log", 1 << 20, 1)
    closers.append(log.close)
    read_fd, write_fd = os.pipe()
    closers.append(lambda: os.close(read_fd))
    cap = PipeCapture(read_fd, log, _failing, clock=clock, poll_interval=0.05)
    metrics.watch_reader("trainer", cap)
    with capture_logs() as logs:
        cap.start()
        closers.append(lambda: cap.stop(10))
        os.write(write_fd, b"a\n" * 10)
        wait_until(lambda: cap.callback_errors == 10, 20, lambda: f"errors={cap.callback_errors}")
        clock.advance(REPORT_EVERY + 1)
        os.write(write_fd, b"b\n" * 5)
        wait_until(lambda: cap.callback_errors == 15, 20, lambda: f"errors={cap.callback_errors}")
        os.close(write_fd)
        cap.join(20)
    reports = [e for e in logs if e["event"] == "capture_callback_failed"]
    # One write, one read, one call: the first report names its 10 lines; the second
    # (after the interval) the 5 of the next read.
    assert [(r["lines"], r["total"]) for r in reports] == [(10, 10), (5, 15)]
    assert "consumer bug" in reports[-1]["error"]
    assert _series(metrics, "swarmd_callback_errors_total", 'reader="trainer"') == 15


def test_followed_file_consumer_errors_are_reported_again_and_exported(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """The same for a followed log file: counted, exported, reported more than once."""
    clock = FakeClock()
    metrics = Metrics()
    path = tmp_path / "node.log"
    path.write_text("")
    follower = FileFollower([path], _failing, clock=clock, rescan_interval=0.05)
    metrics.watch_reader("follow", follower)
    with capture_logs() as logs:
        follower.start()
        closers.append(follower.stop)
        with path.open("a") as fh:
            fh.write("x\n" * 3)
        wait_until(lambda: follower.callback_errors == 3, 20, lambda: f"errors={follower.callback_errors}")
        clock.advance(REPORT_EVERY + 1)
        with path.open("a") as fh:
            fh.write("y\n" * 2)
        wait_until(lambda: follower.callback_errors == 5, 20, lambda: f"errors={follower.callback_errors}")
    reports = [e for e in logs if e["event"] == "follow_callback_failed"]
    assert [(r["lines"], r["total"]) for r in reports] == [(1, 1), (3, 4)]
    assert _series(metrics, "swarmd_callback_errors_total", 'reader="follow"') == 5


def test_lines_a_full_disk_drops_are_logged_with_their_count_and_exported(tmp_path: Path) -> None:
    """Past the in-memory bound on /dev/full the oldest lines go: monitor.log says how
    many (at once, then once per interval) and /metrics counts every one."""
    clock = FakeClock()
    metrics = Metrics()
    full = Path("/dev/full")
    log = RotatingLog(
        tmp_path / "trainer.log", 1 << 20, 1, max_pending=100, clock=clock,
        open_log=lambda p: full.open("ab", buffering=0),
    )
    metrics.watch_log("trainer", log)
    try:
        with capture_logs() as logs:
            for i in range(50):
                log.write(b"line %02d\n" % i)  # 8 bytes each: 12 fit in the buffer
            clock.advance(REPORT_EVERY + 1)
            log.write(b"line 50\n")
    finally:
        log.close()
    reports = [e for e in logs if e["event"] == "log_lines_dropped"]
    assert len(reports) == 2
    assert sum(r["lines"] for r in reports) == reports[-1]["total"]
    # close() gives up what is still buffered: those count too.
    assert _series(metrics, "swarmd_lines_dropped_total", 'log="trainer"') == log.dropped_lines == 51

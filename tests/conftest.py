"""Fixtures shared by every test directory: real children from tests/fakes, bounded
waits that say what they saw, and a fake clock.

    def test_x(fake_argv, wait_until): ...
        argv = fake_argv("hang")                       # [python, tests/fakes/hang.py]
        wait_until(lambda: path.exists(), 5, lambda: f"files: {list(tmp_path.iterdir())}")
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from swarmd.clock import FakeClock

FAKES_DIR = Path(__file__).parent / "fakes"
T = TypeVar("T")


def wait_until(
    pred: Callable[[], T],
    timeout: float,
    describe: Callable[[], str] | str = "",
    interval: float = 0.02,
) -> T:
    """Poll `pred` until it returns something truthy (returned), or raise
    AssertionError after `timeout` seconds with `describe()` as last observed."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            seen = describe() if callable(describe) else describe
            raise AssertionError(f"condition not met within {timeout}s; last seen: {seen}")
        time.sleep(interval)


class PipeReader:
    """Collects what a child writes to a pipe fd without ever blocking for long, so a
    test can wait for a line (`wait_for`) or for EOF with a bounded timeout."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = b""
        self.eof = False

    def pump(self, timeout: float = 0.02) -> None:
        if self.eof:
            return
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            chunk = os.read(self.fd, 65536)
            self.data += chunk
            self.eof = not chunk

    def wait_for(self, needle: bytes, timeout: float = 10.0, count: int = 1) -> bytes:
        """Wait until `needle` has appeared `count` times; returns all data so far."""

        def seen() -> bool:
            self.pump()
            return self.data.count(needle) >= count

        wait_until(seen, timeout, lambda: f"{needle!r} x{count} not in {self.data[-800:]!r}", interval=0)
        return self.data

    def wait_eof(self, timeout: float = 10.0) -> bytes:
        def done() -> bool:
            self.pump()
            return self.eof

        wait_until(done, timeout, lambda: f"no EOF; output so far {self.data[-800:]!r}", interval=0)
        return self.data


@pytest.fixture
def pipe_reader() -> Callable[[int], PipeReader]:
    """`pipe_reader(child.stdout_fd)` -> a PipeReader (the test still owns the fd)."""
    return PipeReader


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., object]:
    """`wait_until(pred, timeout, describe)`; see the module function."""
    return wait_until


@pytest.fixture
def python_exe() -> str:
    """The interpreter running the tests (the project venv), for child processes."""
    return sys.executable


def _fake_script(name: str) -> Path:
    path = FAKES_DIR / f"{name.removesuffix('.py')}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no fake child script {path}")
    return path


@pytest.fixture
def fake_script() -> Callable[[str], Path]:
    """`fake_script("hang")` -> path of tests/fakes/hang.py (fails if absent)."""
    return _fake_script


@pytest.fixture
def fake_argv(python_exe: str) -> Callable[..., list[str]]:
    """`fake_argv("spew", "--lines", "10")` -> argv running that fake with our python."""

    def build(name: str, *args: str) -> list[str]:
        return [python_exe, str(_fake_script(name)), *args]

    return build


@pytest.fixture
def python(python_exe: str) -> Callable[[str], list[str]]:
    """`python("print(1)")` -> argv running that code (trio's `python(code)` helper)."""

    def build(code: str) -> list[str]:
        return [python_exe, "-c", code]

    return build


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """An empty state directory (heartbeat, pid file, sockets) for one test."""
    path = tmp_path / "state"
    path.mkdir()
    return path

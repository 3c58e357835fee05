"""Recording test doubles for `swarmd.spawn.Spawner`/`Child` (supervisor unit tests).

`FakeChild.stdout_fd` is the read end of a real pipe, so a capture reader can run on
it unchanged; the test writes the child's output with `emit()` and ends it with
`exit()`. Pids start above the kernel's PID_MAX_LIMIT (2**22), so code that wrongly
hands a fake pid to the real OS (kill, psutil) hits ESRCH and never a real process.

    spawner = FakeSpawner()
    spawner.fail_next(errno.EAGAIN)            # the next spawn raises OSError(EAGAIN)
    child = spawner.spawn(["trainer"], {}, Path("."))
    child.emit(b"Joining round: 3\\n"); child.exit(137)
    spawner.close_all()                        # in teardown: closes the pipes
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

FAKE_PID_BASE = 2**22 + 1000  # above PID_MAX_LIMIT: no real process can have it


@dataclass(frozen=True)
class SpawnCall:
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    stdin_data: bytes | None


class FakeChild:
    """A child that exits when told (`exit`) or when a group signal in `dies_on` hits.

    `signals` records `send_signal` (main pid), `group_signals` records `signal_group`.
    By default SIGTERM and SIGKILL to the group end it with -SIGTERM / -SIGKILL;
    `ignore_term=True` models a trainer that needs the SIGKILL escalation.
    """

    def __init__(self, pid: int, create_time: float = 1_700_000_000.0, *, ignore_term: bool = False) -> None:
        self.pid = pid
        self.pgid = pid
        self.create_time = create_time
        self.stdout_fd, self._write_fd = os.pipe()
        self._write_open = True
        self._read_open = True
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.group_signals: list[int] = []
        self.dies_on: dict[int, int] = {signal.SIGKILL: -signal.SIGKILL}
        if not ignore_term:
            self.dies_on[signal.SIGTERM] = -signal.SIGTERM
        self.group_survivor = False  # True: group_alive() stays True after the main exit
        self.unhandled: set[int] = set()  # signals it has no handler for (upstream: {SIGUSR1})
        self.wait_calls: list[float] = []
        self.closed = False

    # -- driven by the test ---------------------------------------------------
    def emit(self, data: bytes) -> None:
        """Write bytes as if the child printed them (stdout and stderr share the pipe)."""
        os.write(self._write_fd, data)

    def exit(self, returncode: int) -> None:
        """The child exits: set its code and close its end of the pipe (reader sees EOF)."""
        if self.returncode is None:
            self.returncode = returncode
        self._close_write()

    # -- the Child protocol ---------------------------------------------------
    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None) -> int | None:
        """Never sleeps: the fake's state changes only when the test (or a signal) says."""
        self.wait_calls.append(-1.0 if timeout is None else timeout)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            self.signals.append(sig)

    def signal_group(self, sig: int) -> None:
        self.group_signals.append(sig)
        if sig == signal.SIGKILL:
            self.group_survivor = False
        if sig in self.dies_on and self.returncode is None:
            self.exit(self.dies_on[sig])

    def group_alive(self) -> bool:
        return self.returncode is None or self.group_survivor

    def handles_signal(self, sig: int) -> bool | None:
        return sig not in self.unhandled

    def close(self) -> None:
        self.closed = True
        self._close_write()
        if self._read_open:
            self._read_open = False
            os.close(self.stdout_fd)

    def _close_write(self) -> None:
        if self._write_open:
            self._write_open = False
            os.close(self._write_fd)


@dataclass
class FakeSpawner:
    """Records every spawn; raises queued errors first (`fail_next`), like supervisor's
    `DummyOptions.fork_exception`."""

    ignore_term: bool = False
    calls: list[SpawnCall] = field(default_factory=list)
    children: list[FakeChild] = field(default_factory=list)
    _failures: list[BaseException] = field(default_factory=list)
    _next_pid: int = FAKE_PID_BASE

    def fail_next(self, err: int | BaseException, times: int = 1) -> None:
        """Queue a failure: an errno (EAGAIN, ENOENT, EACCES...) becomes an OSError with
        the matching message; an exception instance (e.g. a SpawnError) is raised as is."""
        exc = OSError(err, os.strerror(err)) if isinstance(err, int) else err
        self._failures.extend([exc] * times)

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        stdin_data: bytes | None = None,
    ) -> FakeChild:
        self.calls.append(SpawnCall(tuple(argv), dict(env), cwd, stdin_data))
        if self._failures:
            raise self._failures.pop(0)
        child = FakeChild(self._next_pid, create_time=1_700_000_000.0 + len(self.children), ignore_term=self.ignore_term)
        self._next_pid += 1
        self.children.append(child)
        return child

    @property
    def last(self) -> FakeChild:
        return self.children[-1]

    def close_all(self) -> None:
        for child in self.children:
            child.close()


__all__ = ["FAKE_PID_BASE", "FakeChild", "FakeSpawner", "SpawnCall"]

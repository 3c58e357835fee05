"""What the supervisor's loop consumes, posted by the threads around it (pipe readers,
the exit waiter, stop workers, probes). Frozen values: a thread hands one over and
never touches it again. Signals and control requests come as `signal_bridge.OsSignal`
and `control.ControlRequest`."""

from __future__ import annotations

from dataclasses import dataclass

from swarmd.domain import ProbeResult, Signal


@dataclass(frozen=True, slots=True)
class LineSeen:
    gen: int
    signal: Signal
    t: float  # monotonic time the reader got the line
    source: str


@dataclass(frozen=True, slots=True)
class ChildExited:
    gen: int
    returncode: int


@dataclass(frozen=True, slots=True)
class ChildDown:
    """The stop worker finished: group ended, orphans swept, sockets cleaned."""

    gen: int
    returncode: int | None
    escalated: bool
    orphans: int
    sockets: int


@dataclass(frozen=True, slots=True)
class KernelOom:
    """The kernel's OOM killer killed `pid` (`name`); `line` is its record."""

    pid: int
    name: str
    line: str


@dataclass(frozen=True, slots=True)
class ProbeDone:
    result: ProbeResult

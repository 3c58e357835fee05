"""The OS process layer after a spawn (`spawn` starts the trainer): stop its whole group
with TERM -> KILL escalation, and find and end what it left behind (orphaned p2pd
daemons, their unix sockets, listening ports).

It never decides *when*; the supervisor does. Identity of a process is always
`(pid, create_time)`, never a pid alone (pids are reused) and never a name (an unrelated
`p2pd` of another user or another swarm on the same host must survive us).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import structlog

from swarmd import p2pd
from swarmd.p2pd import end_processes

if TYPE_CHECKING:
    from swarmd.spawn import Child

# psutil derives create_time from boot ticks + /proc/stat btime; btime is recomputed
# from the wall clock and can wobble by a second, so equality needs a tolerance. Two
# processes with the same pid created within this window would need a full pid wrap.
_CREATE_TIME_TOLERANCE = 1.0
_POLL = 0.05
_KILL_WAIT = 5.0  # after SIGKILL the kernel needs only to schedule the exit

Logger = structlog.typing.FilteringBoundLogger


@dataclass(frozen=True, slots=True)
class ProcRef:
    """A process as recorded at one moment; `(pid, create_time)` is its identity."""

    pid: int
    create_time: float
    name: str
    cmdline: tuple[str, ...]


def _ref(proc: psutil.Process) -> ProcRef | None:
    try:
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None  # already dead; only its parent's wait() is missing
            create_time = proc.create_time()
            name = proc.name()
            try:
                cmdline = tuple(proc.cmdline())
            except (psutil.ZombieProcess, psutil.AccessDenied):
                cmdline = ()
    except psutil.Error:
        return None
    return ProcRef(proc.pid, create_time, name, cmdline)


def snapshot_tree(pid: int, create_time: float | None = None) -> list[ProcRef]:
    """The process and its descendants now, zombies left out; empty if it is gone (or,
    with `create_time`, if `pid` now belongs to another process). Record this while
    the trainer runs: once a daemon is orphaned it is no longer anyone's descendant."""
    try:
        root = psutil.Process(pid)
        if create_time is not None and abs(root.create_time() - create_time) > _CREATE_TIME_TOLERANCE:
            return []  # the pid was reused: that tree is not ours
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    return [ref for ref in map(_ref, procs) if ref is not None]


def live_process(ref: ProcRef) -> psutil.Process | None:
    """The process `ref` names if it still runs (not a zombie) with the same identity."""
    try:
        proc = psutil.Process(ref.pid)
        same = abs(proc.create_time() - ref.create_time) <= _CREATE_TIME_TOLERANCE
        if not same or proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except psutil.Error:
        return None
    return proc


def is_alive(ref: ProcRef) -> bool:
    """True while the exact recorded process runs (pid reuse and zombies are False)."""
    return live_process(ref) is not None


@dataclass(frozen=True, slots=True)
class StopResult:
    """`survivors`: processes of the tree recorded before the stop that still run
    (they left the group with setsid); hand them to `sweep_orphans`."""

    returncode: int | None
    escalated: bool
    survivors: list[ProcRef] = field(default_factory=list)


def _wait_group(child: Child, deadline: float) -> int | None:
    rc = child.wait(deadline - time.monotonic())
    while child.group_alive() and time.monotonic() < deadline:
        time.sleep(_POLL)
    return rc


def stop_group(child: Child, term_timeout: float, *, log: Logger | None = None) -> StopResult:
    """SIGTERM the whole group, give it `term_timeout` to exit, then SIGKILL the group
    and reap. The group, not the pid: p2pd and vLLM children must die with it."""
    before = snapshot_tree(child.pid, child.create_time)
    child.signal_group(signal.SIGTERM)
    if child.group_alive():
        # A stopped process (SIGSTOP, a debugger: what the stall check catches) keeps
        # SIGTERM pending until continued; without this every stop of a stopped trainer
        # costs the full term_timeout and ends in a KILL that lets it save nothing.
        child.signal_group(signal.SIGCONT)
    rc = _wait_group(child, time.monotonic() + term_timeout)
    escalated = rc is None or child.group_alive()
    if escalated:
        if log is not None:
            log.warning("stop_escalated", pid=child.pid, pgid=child.pgid, term_timeout=term_timeout)
        child.signal_group(signal.SIGKILL)
        rc = _wait_group(child, time.monotonic() + _KILL_WAIT)
    survivors = [ref for ref in before if ref.pid != child.pid and is_alive(ref)]
    if log is not None:
        log.info("child_stopped", pid=child.pid, rc=rc, escalated=escalated, survivors=[r.pid for r in survivors])
    return StopResult(rc, escalated, survivors)


def _not_us(ref: ProcRef) -> bool:
    """Never our own process or an ancestor of it, whatever a stale record says."""
    ours = {os.getpid()}
    with contextlib.suppress(psutil.Error):
        ours.update(p.pid for p in psutil.Process().parents())
    return ref.pid not in ours


def sweep_orphans(
    refs: Iterable[ProcRef], term_timeout: float, *, log: Logger | None = None
) -> list[ProcRef]:
    """End recorded processes that outlived their trainer: TERM, wait, KILL.

    Only the exact recorded processes (same pid AND create_time) are touched, so a
    recycled pid or an unrelated daemon with the same name is never signalled.
    Returns the ones that were running and are now gone.
    """
    targets: dict[ProcRef, psutil.Process] = {}
    for ref in refs:
        proc = live_process(ref)
        if proc is not None and _not_us(ref):
            targets[ref] = proc
    if not targets:
        return []
    stuck = {p.pid for p in end_processes(list(targets.values()), term_timeout, _KILL_WAIT)}
    ended = [ref for ref in targets if ref.pid not in stuck]
    alive = [ref for ref in targets if ref.pid in stuck]
    if log is not None:
        log.info("orphans_swept", ended=[(r.pid, r.name) for r in ended], stuck=[r.pid for r in alive])
    return ended


def catches_signal(pid: int, signum: int) -> bool | None:
    """Whether `pid` has a handler for `signum` (its SigCgt mask in /proc); None when
    that cannot be read. SIGUSR1's default action terminates: a node without a
    handler must never get it."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            try:
                mask = int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
            return bool(mask >> (signum - 1) & 1)
    return None


def is_p2pd(ref: ProcRef) -> bool:
    return p2pd.is_p2pd(ref.name, ref.cmdline)


def p2pd_sockets(refs: Iterable[ProcRef]) -> list[Path]:
    """Unix socket paths the recorded p2pd processes listened on (see `p2pd`)."""
    return list(dict.fromkeys(path for ref in filter(is_p2pd, refs) for path in p2pd.listen_sockets(ref.cmdline)))


def find_leftover(record: tuple[int, float] | None) -> ProcRef | None:
    """The recorded trainer if it still runs as the same process (pid reuse safe)."""
    if record is None:
        return None
    recorded = ProcRef(record[0], record[1], "", ())
    proc = live_process(recorded)
    if proc is None or not _not_us(recorded):
        return None
    return _ref(proc)

"""The OS process layer: spawn the trainer in its own session, stop its whole group
with TERM -> KILL escalation, and find and end what it left behind (orphaned p2pd
daemons, their unix sockets, listening ports).

It never decides *when*; the supervisor does. Identity of a process is always
`(pid, create_time)`, never a pid alone (pids are reused) and never a name (an unrelated
`p2pd` of another user or another swarm on the same host must survive us).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil
import structlog

from swarmd import p2pd
from swarmd.errors import NoPermission, NotExecutable, NotFound
from swarmd.p2pd import end_processes

# psutil derives create_time from boot ticks + /proc/stat btime; btime is recomputed
# from the wall clock and can wobble by a second, so equality needs a tolerance. Two
# processes with the same pid created within this window would need a full pid wrap.
_CREATE_TIME_TOLERANCE = 1.0
_POLL = 0.05
_SCAN_EVERY = 1.0  # the most often a stop may look through every process of the host
_KILL_WAIT = 5.0  # after SIGKILL the kernel needs only to schedule the exit
_STDIN_INLINE_MAX = 4096  # one page always fits an empty pipe: write without a thread

Logger = structlog.typing.FilteringBoundLogger


@dataclass(frozen=True, slots=True)
class ProcRef:
    """A process as recorded at one moment; `(pid, create_time)` is its identity."""

    pid: int
    create_time: float
    name: str
    cmdline: tuple[str, ...]


class Child(Protocol):
    """A started trainer. `stdout_fd` is the read end of ONE pipe carrying stdout and
    stderr merged (one pipe keeps their order); the capture reader reads it, and
    `close()` closes it, so call `close()` only after the reader has finished."""

    pid: int
    pgid: int
    create_time: float
    stdout_fd: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def signal_group(self, sig: int) -> None: ...

    def group_alive(self) -> bool: ...

    def handles_signal(self, sig: int) -> bool | None:
        """Whether the trainer has a handler for `sig` (None: cannot tell)."""
        ...

    def close(self) -> None: ...


class Spawner(Protocol):
    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        stdin_data: bytes | None = None,
    ) -> Child: ...


class PosixChild:
    """`Child` over `subprocess.Popen`; returncodes follow Popen (-N = killed by N)."""

    def __init__(self, popen: subprocess.Popen[bytes], create_time: float) -> None:
        if popen.stdout is None:
            raise ValueError("PosixChild needs stdout=PIPE")
        self._popen = popen
        self.pid = popen.pid
        # start_new_session ran setsid() before exec, so the child leads its group.
        self.pgid = popen.pid
        self.create_time = create_time
        self.stdout_fd = popen.stdout.fileno()
        self._members: set[int] = set()  # the group as last seen: where the next look starts
        self._last_scan = float("-inf")

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float | None) -> int | None:
        """None blocks in waitpid (no polling); the exit waiter thread uses that."""
        try:
            return self._popen.wait(timeout=None if timeout is None else max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        # Popen.send_signal does nothing once the child is reaped, so a recycled pid
        # is never signalled.
        self._popen.send_signal(sig)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def group_alive(self) -> bool:
        """Whether a process of the group still runs (zombies do not count).

        Judged on the group's own tree: the members seen last time, the trainer's
        descendants and theirs, so a stop polling this every 50 ms costs what the tree
        costs, not what the host does. Only when the kernel still reports a member
        that the tree does not show (a process orphaned before we ever saw it) is the
        host scanned, at most once a second."""
        try:
            os.killpg(self.pgid, 0)
        except ProcessLookupError:
            self._members.clear()
            return False
        except PermissionError:
            pass
        self._members = _members_among(self.pgid, _tree_pids({self.pid, *self._members}))
        now = time.monotonic()
        if not self._members and now - self._last_scan >= _SCAN_EVERY:
            self._last_scan = now
            self._members = _members_among(self.pgid, psutil.pids())
        return bool(self._members)

    def handles_signal(self, sig: int) -> bool | None:
        return catches_signal(self.pid, sig) if self._popen.poll() is None else None

    def close(self) -> None:
        if self._popen.stdout is not None:
            self._popen.stdout.close()


class PosixSpawner:
    """Start commands in a new session with stdout+stderr on one pipe."""

    def spawn(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: Path,
        stdin_data: bytes | None = None,
    ) -> PosixChild:
        if not argv:
            raise NotFound("", "empty command", "set trainer.command in monitor.toml")
        try:
            popen = subprocess.Popen(
                list(argv),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                close_fds=True,
                start_new_session=True,
            )
        except OSError as err:
            raise map_spawn_error(err, argv[0], cwd) from err
        if stdin_data is not None:
            _feed_stdin(popen, stdin_data)
        try:
            create_time = psutil.Process(popen.pid).create_time()
        except psutil.Error:  # unreaped zombies still have /proc entries; belt and braces
            create_time = time.time()
        return PosixChild(popen, create_time)


def map_spawn_error(err: OSError, argv0: str, cwd: Path) -> OSError | NotFound | NotExecutable | NoPermission:
    """Map a failed exec to a one-line SpawnError; EAGAIN and the rest stay OSError
    (retryable: out of processes or memory is not a config mistake)."""
    about_cwd = err.filename is not None and str(err.filename) == str(cwd)
    if about_cwd and err.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(argv0, f"working directory {cwd} does not exist", "create it or fix trainer.cwd")
    if about_cwd and err.errno == errno.EACCES:
        return NoPermission(argv0, f"working directory {cwd} is not accessible", "fix its permissions or trainer.cwd")
    if err.errno == errno.ENOENT:
        return NotFound(argv0, "no such file", "check trainer.command (the path, or PATH for a bare name)")
    if err.errno == errno.EACCES:
        return NotExecutable(argv0, "permission denied", f"chmod +x {argv0}, or run it through its interpreter")
    if err.errno == errno.ENOEXEC:
        return NotExecutable(argv0, "not a valid executable", "add a '#!' line or run it through its interpreter")
    return err


def _feed_stdin(popen: subprocess.Popen[bytes], data: bytes) -> None:
    """Write answers for interactive prompts, then close stdin so reads see EOF.

    More than a page could fill the pipe before the child reads, so that is written
    from a daemon thread; it ends on EPIPE when the child dies without reading.
    """
    stdin = popen.stdin
    if stdin is None:
        raise ValueError("stdin_data needs stdin=PIPE")

    def write() -> None:
        try:
            stdin.write(data)
            stdin.flush()
        except BrokenPipeError:
            pass
        finally:
            with contextlib.suppress(BrokenPipeError):
                stdin.close()

    if len(data) <= _STDIN_INLINE_MAX:
        write()
    else:
        threading.Thread(target=write, name=f"stdin-{popen.pid}", daemon=True).start()


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


def _tree_pids(roots: Iterable[int]) -> set[int]:
    """`roots` and all their descendants that exist now."""
    pids: set[int] = set()
    for pid in roots:
        try:
            proc = psutil.Process(pid)
            pids.add(pid)
            pids.update(c.pid for c in proc.children(recursive=True))
        except psutil.Error:
            continue
    return pids


def _members_among(pgid: int, pids: Iterable[int]) -> set[int]:
    """Those of `pids` that are live (not zombie) members of group `pgid`."""
    members = set()
    for pid in pids:
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                members.add(pid)
        except (OSError, psutil.Error):
            continue
    return members


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

"""Starting the trainer: a new session and process group, stdout and stderr on one
pipe, optional stdin, and spawn errors turned into one line naming the fix.

`Child` is what the rest of swarmd holds of a started trainer; `group_alive` asks
whether anything of its process group is left, by looking only at the child's own
tree while it has members (a scan of the whole host at most once a second otherwise).
Stopping and cleaning up after a child are `process`'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import psutil

from swarmd.errors import NoPermission, NotExecutable, NotFound
from swarmd.process import catches_signal

__all__ = ["Child", "PosixChild", "PosixSpawner", "Spawner", "map_spawn_error"]

_SCAN_EVERY = 1.0  # the most often a stop may look through every process of the host
_STDIN_INLINE_MAX = 4096  # one page always fits an empty pipe: write without a thread


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

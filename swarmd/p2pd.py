"""hivemind's p2pd seen from outside: which process is one, which unix sockets it
leaves behind, when such a socket is stale, and how a set of daemons is ended.

One copy of each rule, used by swarmd (ending a trainer's tree) and by the trainer
(ending a dead incarnation's daemon before it starts its own). Only psutil and the
standard library: the trainer imports it without pulling in the rest of swarmd.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import unquote

import psutil

_DAEMON = "hivemind-p2pd-"
_CLIENT = "hivemind-p2pclient-"


def is_p2pd(name: str, cmdline: Sequence[str]) -> bool:
    """hivemind runs `.../hivemind_cli/p2pd -listen=/unix/tmp/hivemind-p2pd-<n>.sock ...`
    (kernel name or argv[0] ending in `p2pd`)."""
    argv0 = Path(cmdline[0]).name if cmdline else ""
    return name.endswith("p2pd") or argv0.endswith("p2pd")


def _unix_path(maddr: str) -> Path | None:
    # A multiaddr's /unix component holds the rest of the address as the path.
    if not maddr.startswith("/unix/"):
        return None
    rest = unquote(maddr[len("/unix") :])
    return Path(rest if rest.startswith("/") else "/" + rest)


def listen_sockets(cmdline: Sequence[str]) -> list[Path]:
    """The unix sockets a p2pd command line names: its `-listen` socket and hivemind's
    client socket beside it (`hivemind-p2pclient-<n>.sock`). Both outlive a killed
    daemon; hivemind removes them on a clean shutdown only."""
    paths: list[Path] = []
    for arg in cmdline[1:]:
        path = _unix_path(arg.removeprefix("-listen=")) if arg.startswith("-listen=") else None
        if path is None:
            continue
        paths.append(path)
        if path.name.startswith(_DAEMON):
            paths.append(path.with_name(path.name.replace(_DAEMON, _CLIENT, 1)))
    return list(dict.fromkeys(paths))


def _bound_unix_paths() -> set[str]:
    # /proc/net/unix lists every bound socket of this network namespace, whoever owns
    # it, so an in-use path shows up even when its owner is another user's process.
    paths: set[str] = set()
    for conn in psutil.net_connections(kind="unix"):
        laddr: object = conn.laddr  # a str for AF_UNIX, whatever the stubs say
        if isinstance(laddr, str) and laddr:
            paths.add(laddr)
    return paths


def remove_stale_sockets(paths: Iterable[Path]) -> list[Path]:
    """Remove socket files that no live socket is bound to; return those removed.
    Regular files and sockets still in use (another node's) are left alone."""
    wanted = list(paths)
    if not wanted:
        return []
    in_use = _bound_unix_paths()
    removed = []
    for path in wanted:
        try:
            if not path.is_socket() or str(path) in in_use:
                continue
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


_POLL = 0.05


def _ended(proc: psutil.Process) -> bool:
    """Gone, or a zombie. A zombie has exited: its memory, sockets and ports are
    released, only its pid-table entry waits for its parent. An orphan's parent is
    init, and not every init reaps at once (this project's CI host reaps ~2 s late),
    so waiting for the entry to vanish would add that to every restart."""
    try:
        if proc.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    if proc.ppid() == os.getpid():
        with contextlib.suppress(psutil.Error):
            proc.wait(0)  # our own child: reap it (psutil's wait is a waitpid here)
    return True


def _wait_ended(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _ended(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL)
        alive = [p for p in alive if not _ended(p)]
    return alive


def end_processes(procs: Sequence[psutil.Process], term_timeout: float, kill_timeout: float = 5.0) -> list[psutil.Process]:
    """TERM, wait up to `term_timeout`, KILL the rest, wait up to `kill_timeout`; the
    ones still running are returned (a zombie has ended). psutil checks each process's
    start time before signalling, so a pid reused meanwhile is never hit."""
    if not procs:
        return []
    _signal_all(procs, signal.SIGTERM)
    alive = _wait_ended(procs, term_timeout)
    if alive:
        _signal_all(alive, signal.SIGKILL)
        alive = _wait_ended(alive, kill_timeout)
    return alive

"""hivemind's p2pd seen from outside: which process is one, which unix sockets it
leaves behind, when such a socket is stale, and how a set of daemons is ended.

One copy of each rule, used by swarmd (ending a trainer's tree) and by the trainer
(ending a dead incarnation's daemon before it starts its own). Only psutil and the
standard library: the trainer imports it without pulling in the rest of swarmd.
"""

from __future__ import annotations

import contextlib
import signal
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


def end_processes(procs: Sequence[psutil.Process], term_timeout: float, kill_timeout: float = 5.0) -> list[psutil.Process]:
    """TERM, wait up to `term_timeout`, KILL the rest, wait up to `kill_timeout`; the
    ones still running are returned. psutil checks each process's start time before
    signalling, so a pid reused meanwhile is never hit."""
    if not procs:
        return []
    _signal_all(procs, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=term_timeout)
    if alive:
        _signal_all(alive, signal.SIGKILL)
        _, alive = psutil.wait_procs(alive, timeout=kill_timeout)
    return list(alive)

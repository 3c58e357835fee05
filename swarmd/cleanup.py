"""Ending a trainer tree completely: the group stop, the orphans that left the group,
the stale p2pd sockets, the ports. Used before every restart and at start-up for the
tree a killed swarmd left behind. Decides nothing: the supervisor says when.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from swarmd.p2pd import remove_stale_sockets
from swarmd.pidfile import PidFile
from swarmd.process import (
    ProcRef,
    find_leftover,
    is_alive,
    live_process,
    p2pd_sockets,
    snapshot_tree,
    stop_group,
    sweep_orphans,
)
from swarmd.spawn import Child


@dataclass(frozen=True, slots=True)
class Cleaned:
    returncode: int | None
    escalated: bool
    orphans: int
    sockets: int


def stop_and_clean(child: Child, refs: Sequence[ProcRef], stop_timeout: float, log: Any) -> Cleaned:
    """TERM -> wait -> KILL the group, end recorded processes that left it, remove the
    tree's stale p2pd sockets, and wait until its listening ports are free."""
    ports = listening_ports(refs)  # while the tree still holds them
    result = stop_group(child, stop_timeout, log=log)
    ended = sweep_orphans(refs, stop_timeout)
    removed = remove_stale_sockets(p2pd_sockets(refs))
    if ports and not ports_free(ports, stop_timeout):
        log.warning("ports_still_busy", ports=sorted(ports), fix="another process holds the trainer's ports")
    return Cleaned(result.returncode, result.escalated, len(ended), len(removed))


def find_leftover_tree(pidfile: PidFile) -> tuple[int | None, list[ProcRef]] | None:
    """The recorded trainer (if it still runs as the same process) and every recorded
    process of its tree still alive: the trainer itself may be gone (EPIPE once our end
    of its pipe closed) while its p2pd and DHT processes hold the identity."""
    record = pidfile.read()
    if record is None:
        return None
    leftover = find_leftover(record)
    refs = {(r.pid, r.create_time): r for r in pidfile.read_tree() if is_alive(r)}
    if leftover is not None:
        refs.update({(r.pid, r.create_time): r for r in snapshot_tree(leftover.pid, leftover.create_time) or [leftover]})
    if not refs:
        pidfile.remove()
        return None
    return (leftover.pid if leftover else None), list(refs.values())


def end_leftover_tree(pid: int | None, refs: Sequence[ProcRef], stop_timeout: float) -> int:
    """TERM (+CONT, for a stopped one) to the leftover's group, then end every recorded
    process by identity; returns how many were ended."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
            os.killpg(pid, signal.SIGCONT)  # a stopped leftover holds TERM pending
    ended = sweep_orphans(refs, stop_timeout)
    remove_stale_sockets(p2pd_sockets(refs))
    return len(ended)


_PORT_POLL = 0.1


def _listening(ports: set[int]) -> set[int]:
    return {
        c.laddr.port
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports
    }


def listening_ports(refs: Iterable[ProcRef]) -> set[int]:
    """TCP ports the recorded processes (still the same processes) listen on now."""
    ports: set[int] = set()
    for ref in refs:
        proc = live_process(ref)
        if proc is None:
            continue
        with contextlib.suppress(psutil.Error):
            ports.update(
                c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN and c.laddr
            )
    return ports


def ports_free(ports: Iterable[int], timeout: float) -> bool:
    """Wait (at most `timeout`) until nothing LISTENs on these TCP ports, so a restart
    with fixed host ports does not fail with EADDRINUSE."""
    wanted = set(ports)
    deadline = time.monotonic() + timeout
    while _listening(wanted):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_PORT_POLL)
    return True

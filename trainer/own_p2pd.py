"""This node's p2pd daemons seen from outside: a dead incarnation's leftovers that
still hold our identity, and our own daemon's sockets once it is gone.

Why: hivemind refuses to start with "identity already taken" while a p2pd from a
killed incarnation still runs with our key, and a killed p2pd leaves its socket in
/tmp for good. The naming and ending rules themselves are `swarmd.p2pd`'s, shared
with the supervisor; this module applies them to one node's identity. `trainer.dht`
calls it around every start and stop, and says what was cleaned.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import psutil

from swarmd.p2pd import end_processes, is_p2pd, listen_sockets, remove_stale_sockets

__all__ = ["clean_stale_p2pd", "own_p2pd_sockets", "remove_dead_sockets"]


def clean_stale_p2pd(identity_path: Path, timeout: float = 5.0) -> list[int]:
    """End p2pd daemons left over by a dead incarnation of THIS node, and their sockets.

    Identified by `-id=<our identity path>` (a key file is never shared, §2.1), and
    stale when not our own descendant and no live trainer above it (its DHT parent was
    orphaned by a kill -9). Another live trainer misconfigured with our key is left
    alone (hivemind then reports "identity taken", which is the right error).
    """
    flag = f"-id={identity_path}"
    me = os.getpid()
    victims: list[psutil.Process] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if not is_p2pd(proc.info.get("name") or "", cmd) or flag not in cmd:
            continue
        try:
            ancestors = proc.parents()
        except psutil.Error:
            continue
        if any(p.pid == me for p in ancestors):
            continue  # ours and alive
        if _owned_by_live_trainer(ancestors):
            continue
        victims.append(proc)
        parent = ancestors[0] if ancestors else None
        if parent is not None and parent.pid != 1 and _is_orphaned_dht(parent):
            victims.append(parent)
    if not victims:
        return []
    sockets = [path for v in victims for path in listen_sockets(_cmdline(v))]
    end_processes(victims, timeout, timeout)
    remove_stale_sockets(sockets)
    return [v.pid for v in victims]


def own_p2pd_sockets(identity_path: Path) -> list[Path]:
    """Sockets of the p2pd our DHT process just started (found among our descendants)."""
    flag = f"-id={identity_path}"
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    return [path for p in procs if flag in (cmd := _cmdline(p)) for path in listen_sockets(cmd)]


def remove_dead_sockets(paths: Sequence[Path]) -> list[Path]:
    """Remove the sockets of our p2pd once it is gone; the ones removed. hivemind removes
    them on a clean shutdown only: a p2pd that was killed leaves its socket in /tmp for good."""
    return remove_stale_sockets(paths)


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _is_orphaned_dht(proc: psutil.Process) -> bool:
    """The DHT child hivemind forked from a trainer that has since died."""
    try:
        parent = proc.parent()
    except psutil.Error:
        return False
    return parent is None or parent.pid == 1 or "trainer" not in " ".join(_cmdline(parent))


def _owned_by_live_trainer(ancestors: list[psutil.Process]) -> bool:
    # p2pd <- DHT child (a fork: same cmdline as the trainer) <- the trainer itself.
    if len(ancestors) < 2:
        return False
    dht_child, trainer = ancestors[0], ancestors[1]
    return trainer.pid != 1 and "trainer" in " ".join(_cmdline(trainer)) and not _is_orphaned_dht(dht_child)

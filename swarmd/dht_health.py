"""The node's DHT as one part of the daemon: a watcher thread looks at the current
trainer's tree every second (`p2pd_probe`), the loop judges each look (`liveness`)
and reads the verdict into the health facts the policy decides on.

Heartbeat or not: upstream nodes write none, and their p2pd can die without a word.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swarmd.config import Config
from swarmd.liveness import UNKNOWN, Judgement, P2pdLiveness, Sighting
from swarmd.p2pd_probe import DhtLook, DhtWatcher
from swarmd.parts import Kept

LOOK_INTERVAL = 1.0  # seconds between looks: p2pd death is seen within ~4 s
ASK_TIMEOUT = 2.0  # an IDENTIFY answer takes milliseconds; 2 s is a wedged daemon


class DhtHealth:
    name = "dht"

    def __init__(self, post: Callable[[DhtLook], None], *, interval: float = LOOK_INTERVAL, timeout: float = ASK_TIMEOUT) -> None:
        self._watcher = DhtWatcher(post, interval=interval, timeout=timeout)
        self._tracker = P2pdLiveness()
        self._gen = 0
        self.judgement: Judgement = UNKNOWN
        self.last: DhtLook | None = None

    def start(self) -> None:
        """The watcher thread starts with the first `watch`."""

    def reconfigure(self, config: Config) -> list[Kept]:
        return []  # nothing configurable: the node's own tree is always watched

    def stop(self) -> None:
        self._watcher.stop()

    def watch(self, gen: int, pid: int, create_time: float) -> None:
        """A new trainer: forget the old one's daemon and look at this tree."""
        self._gen = gen
        self._tracker.reset()
        self.judgement = UNKNOWN
        self.last = None
        self._watcher.watch(gen, pid, create_time)

    def unwatch(self) -> None:
        self._watcher.unwatch()
        self._gen = 0

    def on_look(self, look: DhtLook) -> Judgement:
        """Judge one look (in the loop). Looks at an earlier trainer, or at a tree
        whose root already ended (the exit is being handled), change nothing."""
        if look.gen != self._gen or not look.tree_alive:
            return self.judgement
        p2pd = look.parts.p2pd
        key = None if p2pd is None else (p2pd.pid, p2pd.create_time)
        answered = None if look.answer is None else look.answer.ok
        detail = "" if look.answer is None else look.answer.detail
        self.last = look
        dht = look.parts.dht
        sighting = Sighting(
            look.at, key, answered, detail, dht.pid if dht else None, dht.stopped if dht else False, look.pids
        )
        self.judgement = self._tracker.observe(sighting)
        return self.judgement

    def status(self) -> dict[str, Any]:
        look = self.last
        parts = look.parts if look is not None else None
        return {
            "p2pd_alive": self.judgement.alive,
            "p2pd_pid": parts.p2pd.pid if parts is not None and parts.p2pd is not None else None,
            "dht_pid": parts.dht.pid if parts is not None and parts.dht is not None else None,
            "p2pd_socket": str(parts.control) if parts is not None and parts.control is not None else None,
            "p2pd_answered": None if look is None or look.answer is None else look.answer.ok,
            "p2pd_peer_id": look.answer.peer_id if look is not None and look.answer is not None else "",
            "p2pd_evidence": self.judgement.evidence if self.judgement.alive is False else "",
        }

"""Heartbeat health: what the trainer's heartbeat file and its process tree say each
tick (peers; p2pd alive, from `dht_health`, heartbeat or not), as the `Health` facts
the policy decides on.

Only a heartbeat written by a process of the current trainer's tree counts: a stale
file from an earlier run, or another node's, proves nothing.
"""

from __future__ import annotations

from pathlib import Path

from swarmd.config import Config
from swarmd.dht_health import DhtHealth
from swarmd.domain import Health
from swarmd.heartbeat import Heartbeat, read_heartbeat
from swarmd.parts import Kept
from swarmd.trainer_run import Run


class HeartbeatHealth:
    name = "health"

    def __init__(self, heartbeat_file: Path, dht: DhtHealth) -> None:
        self.heartbeat_file = heartbeat_file
        self.dht = dht
        self.last: Heartbeat | None = None

    def start(self) -> None:
        """Nothing runs in the background: the loop calls `check` on its tick."""

    def reconfigure(self, config: Config) -> list[Kept]:
        self.heartbeat_file = config.health.heartbeat_file
        return []

    def stop(self) -> None:
        """Nothing to release."""

    def check(self, run: Run, network_ok: bool | None) -> tuple[Health, Heartbeat | None]:
        """The health facts now, and the heartbeat if it is new since the last check."""
        beat = read_heartbeat(self.heartbeat_file)
        peers: int | None = None
        fresh: Heartbeat | None = None
        if beat is not None and beat.pid in run.pids():
            if beat != self.last:
                fresh = beat
            peers = beat.peers
        self.last = beat
        dht = self.dht.judgement
        health = Health(network_ok=network_ok, p2pd_alive=dht.alive, peers=peers,
                        p2pd_evidence=dht.evidence, dht_fault=dht.cause)
        return health, fresh

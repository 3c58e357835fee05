"""The chain as one part of the daemon: a thread reads the chain every `interval`
(`chain_rpc`), the loop judges each reading (`chain_watch`) and keeps the last one for
`swarmd status`, the status page and /metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from swarmd.chain_rpc import ChainReading, read_chain, resolve_contract
from swarmd.chain_watch import ChainEvent, ChainWatch
from swarmd.config import Config
from swarmd.config_net import ChainConfig
from swarmd.parts import Kept


@dataclass(frozen=True, slots=True)
class ChainRead:
    """One reading, posted to the loop."""

    at: float  # monotonic time the read started
    reading: ChainReading


class ChainMonitor:
    name = "chain"

    def __init__(self, config: Config, env: Mapping[str, str], post: Callable[[ChainRead], None]) -> None:
        self.settings: ChainConfig = config.chain
        self._env = dict(env)
        self.contract = self._contract(config)
        self._post = post
        self._watch = ChainWatch(stall_rounds=self.settings.stall_rounds, round_length=self.settings.round_length)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.rpc_url)

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="chain", daemon=True)
        self._thread.start()

    def reconfigure(self, config: Config) -> list[Kept]:
        """New settings apply from the next read; round history is kept unless the
        judging parameters or the chain itself changed. A probe turned on by the new
        file starts now; one turned off stops reading (its thread idles)."""
        old, self.settings = self.settings, config.chain
        self.contract = self._contract(config)
        judged = (old.stall_rounds, old.round_length, old.rpc_url)
        if judged != (config.chain.stall_rounds, config.chain.round_length, config.chain.rpc_url):
            self._watch = ChainWatch(stall_rounds=config.chain.stall_rounds, round_length=config.chain.round_length)
        if not self._stop.is_set():
            self.start()
        return []

    def stop(self) -> None:
        self._stop.set()

    def _contract(self, config: Config) -> str:
        """The configured address, else the node's own SWARM_CONTRACT (its env, or ours)."""
        return resolve_contract(config.chain.contract, dict(config.trainer.env), self._env)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            settings, contract = self.settings, self.contract
            if settings.rpc_url:  # turned off by a reload: idle until turned on again
                self._post(ChainRead(began, read_chain(settings.rpc_url, contract, settings.timeout)))
            self._stop.wait(max(0.0, settings.interval - (time.monotonic() - began)))

    def on_read(self, read: ChainRead, node_running: bool) -> list[ChainEvent]:
        """Judge one reading in the loop; stall time counts only while the node runs."""
        self._watch.node_running(read.at, node_running)
        return self._watch.observe(read.at, read.reading)

    def status(self) -> dict[str, Any]:
        last = self._watch.last
        if not self.enabled:
            return {"enabled": False}
        length = self._watch.round_length()
        return {
            "enabled": True,
            "rpc_ok": None if last is None else last.ok,
            "chain_id": None if last is None else last.chain_id,
            "block": None if last is None else last.block,
            "round": None if last is None else last.round,
            "stage": None if last is None else last.stage,
            "contract": self.contract,
            "detail": "" if last is None else last.detail,
            "round_length_s": None if length is None else round(length, 1),
        }

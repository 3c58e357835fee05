"""The lifecycle every long-lived part of the daemon shares: start, reconfigure, stop.

The supervisor's loop drives the parts (followers, probes, the trainer log, the web
server, the control socket, ...) and never reaches into them. A reload is then one
call per part with the new config; a part that cannot apply a key live says so with a
`Kept` note instead of silently keeping the old value, and the loop logs every note in
its `config_reloaded` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from swarmd.config import Config


@dataclass(frozen=True, slots=True)
class Kept:
    """A config key a reload could not apply; the old value stays in force."""

    key: str
    reason: str


class Part(Protocol):
    name: str

    def start(self) -> None: ...

    def reconfigure(self, config: Config) -> list[Kept]:
        """Apply `config` now; return the keys that could not change live, with why."""
        ...

    def stop(self) -> None: ...


class Parts:
    """The parts the loop owns, started in order and stopped in reverse."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._parts: list[Part] = []
        self._started: list[Part] = []

    def add(self, part: Part) -> None:
        self._parts.append(part)

    def start_all(self) -> None:
        for part in self._parts:
            if part not in self._started:
                part.start()
                self._started.append(part)

    def reconfigure_all(self, config: Config) -> list[Kept]:
        kept: list[Kept] = []
        for part in self._parts:
            kept.extend(part.reconfigure(config))
        return kept

    def stop_all(self) -> None:
        """Stop every started part; one failing to stop must not keep the rest open."""
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception as err:  # noqa: BLE001 - shutdown continues whatever broke
                self._log.error("part_stop_failed", part=part.name, error=f"{type(err).__name__}: {err}")

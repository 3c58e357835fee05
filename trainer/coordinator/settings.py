"""The chain settings of trainer.toml, and the one-line error each bad one produces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ChainSettingError(Exception):
    """A chain setting is wrong: the message names the config key and the fix (the caller
    prefixes the config file's path)."""

    def __init__(self, key: str, reason: str, fix: str, *, transient: bool = False) -> None:
        super().__init__(f"[{key}] {reason}; fix: {fix}")
        self.key = key
        # True when the setting may be right and the service merely down (an unreachable
        # RPC): worth a restart with back-off, unlike a wrong chain id.
        self.transient = transient


@dataclass(frozen=True, slots=True)
class ChainSettings:
    rpc_url: str
    contract: str
    chain_id: int
    key_path: Path
    queue_dir: Path
    rpc_timeout: float = 10.0
    poll_seconds: float = 1.0
    queue_max: int = 10_000

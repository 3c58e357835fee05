"""The committed contract artifacts, and revert data -> custom error name.

The node treats three reverts as "already done" (the state it wanted is on chain:
a restart re-sent a submission that had landed) and every other revert as final: a
revert is a verdict of the contract, retrying it only burns gas.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from eth_utils.crypto import keccak

HERE = Path(__file__).resolve().parent
ALREADY_DONE = frozenset({"RewardAlreadySubmitted", "PeerIdAlreadyRegistered", "WinnerAlreadyVoted"})


@cache
def abi(stem: str = "SwarmCoordinator") -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((HERE / f"{stem}.abi.json").read_text(encoding="utf-8"))
    return loaded


@cache
def bytecode(stem: str = "SwarmCoordinator") -> str:
    return "0x" + (HERE / f"{stem}.bin").read_text(encoding="utf-8").strip()


def signature(item: dict[str, Any]) -> str:
    """`name(type,...)` of an ABI item (tuples do not occur in this contract)."""
    return f"{item['name']}({','.join(i['type'] for i in item.get('inputs', []))})"


@cache
def error_names() -> dict[bytes, str]:
    """4-byte selector -> custom error name, for every error the coordinator can raise."""
    names = {}
    for stem in ("SwarmCoordinator", "ERC1967Proxy"):
        for item in abi(stem):
            if item["type"] == "error":
                names[keccak(text=signature(item))[:4]] = item["name"]
    return names


def decode_error(data: object) -> str:
    """Name of the custom error in revert `data` (hex text or bytes); a readable fallback
    for anything else (plain `revert("...")` strings, empty data)."""
    raw: bytes
    if isinstance(data, bytes | bytearray):
        raw = bytes(data)
    elif isinstance(data, str):
        text = data[2:] if data.startswith("0x") else data
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return data or "revert"
    else:
        return "revert"
    if len(raw) < 4:
        return "revert (no data)"
    return error_names().get(raw[:4], f"unknown error 0x{raw[:4].hex()}")

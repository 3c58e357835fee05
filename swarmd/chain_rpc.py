"""Read the swarm's chain the way the node does: JSON-RPC over HTTP, no web3.

An upstream node that cannot reach its chain RPC says nothing and waits; a chain that
was reset puts its round back to 0 while the node waits for a round it has already
played. Neither is visible in the node's output, so swarmd reads the chain itself:
`eth_chainId`, `eth_blockNumber`, and, with the coordinator contract's address,
`currentRound()` / `currentStage()` by their selectors. Every call is bounded by one
deadline. The URL is shown without credentials (RPC URLs often carry an API key).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from swarmd.probes import safe_url

CURRENT_ROUND = "0x8a19c8bc"  # currentRound() -> uint256
CURRENT_STAGE = "0x5bf5d54c"  # currentStage() -> uint256
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_CONTRACT_VARS = ("SWARM_CONTRACT", "SWARM_CONTRACT_ADDRESS", "SMART_CONTRACT_ADDRESS")


@dataclass(frozen=True, slots=True)
class ChainReading:
    """One read of the chain. `ok`: the RPC answered. round/stage are None without a
    contract, or when the contract did not answer (`contract_error` says why)."""

    ok: bool
    detail: str
    chain_id: int | None = None
    block: int | None = None
    round: int | None = None
    stage: int | None = None
    latency_ms: float | None = None
    contract_error: str = ""


class RpcError(Exception):
    pass


def is_address(text: str) -> bool:
    return bool(_ADDRESS.match(text))


def resolve_contract(explicit: str, trainer_env: Mapping[str, str], env: Mapping[str, str]) -> str:
    """The coordinator's address: the config key, else the variable the node itself
    reads (rl-swarm exports SWARM_CONTRACT; modal-login's .env has the other names)."""
    if explicit:
        return explicit
    for source in (trainer_env, env):
        for name in _CONTRACT_VARS:
            value = source.get(name, "").strip()
            if is_address(value):
                return value
    return ""


def read_chain(url: str, contract: str, timeout: float, session: requests.Session | None = None) -> ChainReading:
    started = time.monotonic()
    deadline = started + timeout
    shown = safe_url(url)
    own = session is None
    sess = requests.Session() if session is None else session
    try:
        call = _Caller(url, sess, deadline)
        chain_id = _int(call("eth_chainId", []))
        block = _int(call("eth_blockNumber", []))
        rnd, stage, contract_error = _read_contract(call, contract)
    except requests.Timeout:
        return ChainReading(False, f"{shown}: no answer within {timeout:g}s", latency_ms=_ms(started))
    except requests.RequestException as err:
        return ChainReading(False, f"{shown}: {type(err).__name__}", latency_ms=_ms(started))
    except RpcError as err:
        return ChainReading(False, f"{shown}: {err}", latency_ms=_ms(started))
    finally:
        if own:
            sess.close()
    what = f"chain {chain_id}, block {block}"
    if rnd is not None:
        what += f", round {rnd} stage {stage}"
    elif contract_error:
        what += f", contract {contract}: {contract_error}"
    return ChainReading(True, f"{shown}: {what}", chain_id, block, rnd, stage, _ms(started), contract_error)


def _read_contract(call: _Caller, contract: str) -> tuple[int | None, int | None, str]:
    """(round, stage, error): a contract that does not answer is not an RPC outage."""
    if not contract:
        return None, None, ""
    try:
        rnd = _uint256(call("eth_call", [{"to": contract, "data": CURRENT_ROUND}, "latest"]))
        stage = _uint256(call("eth_call", [{"to": contract, "data": CURRENT_STAGE}, "latest"]))
    except RpcError as err:
        return None, None, str(err)
    return rnd, stage, ""


class _Caller:
    def __init__(self, url: str, session: requests.Session, deadline: float) -> None:
        self._url = url
        self._session = session
        self._deadline = deadline
        self._id = 0

    def __call__(self, method: str, params: list[Any]) -> Any:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise requests.Timeout
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
        resp = self._session.post(self._url, json=body, timeout=(remaining, remaining), allow_redirects=False)
        if resp.status_code != 200:
            raise RpcError(f"{method}: HTTP {resp.status_code}")
        try:
            answer = resp.json()
        except ValueError:
            raise RpcError(f"{method}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise RpcError(f"{method}: the answer is not a JSON-RPC object")
        if "error" in answer:
            err = answer["error"]
            message = err.get("message", "") if isinstance(err, dict) else str(err)
            raise RpcError(f"{method}: error {str(message)[:200]}")
        return answer.get("result")


def _int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError(f"expected a hex number, got {str(value)[:40]!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise RpcError(f"expected a hex number, got {value[:40]!r}") from None


def _uint256(value: Any) -> int:
    """An eth_call result of one uint256: 32 bytes; an empty `0x` means no such
    function at that address (wrong contract, or a chain that was reset)."""
    if value == "0x":
        raise RpcError("the contract returned nothing (no contract at that address?)")
    number = _int(value)
    if len(value) != 66:
        raise RpcError(f"expected 32 bytes, got {(len(value) - 2) // 2}")
    return number


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)

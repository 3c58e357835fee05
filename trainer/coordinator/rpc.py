"""A web3 client for the coordinator contract that fails in the three ways a caller can act on.

- `TransportError`: the RPC could not be reached or answered garbage, after capped-backoff
  retries (tenacity). The caller keeps its work and tries again later.
- `RevertError`: the contract said no. Never retried (it would say no again and cost gas);
  carries the decoded custom error so a log line says `RewardAlreadySubmitted`, not hex.
- anything else is a bug and propagates.

Writes handle a key that is also used elsewhere (another process, a wallet): the nonce is
the *pending* count at send time, and "nonce too low" / "replacement underpriced" (the
other user took it first) re-read it and send again, a bounded number of times.
Every request has a time-out; HTTPProvider's own retry is off so tenacity is the only one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import structlog
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TimeExhausted,
    Web3RPCError,
)

from trainer.coordinator.abi import abi, decode_error

log = structlog.get_logger(__name__)
T = TypeVar("T")
NONCE_RETRIES = 5
_HAS_SUBMITTED = keccak(text="hasSubmittedRoundStageReward(uint256,uint256,string)")[:4]


class TransportError(ConnectionError):
    """The RPC endpoint is unreachable or misbehaving (after retries). An OSError, so the
    node's round loop waits it out like any other network failure."""


class RevertError(Exception):
    """The contract rejected the call; `error` is the decoded custom error name."""

    def __init__(self, function: str, error: str) -> None:
        super().__init__(f"{function} reverted: {error}")
        self.function = function
        self.error = error


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    first_wait: float = 0.25
    max_wait: float = 4.0


# Connection refused/reset, time-outs, HTTP errors from the endpoint (429 and 5xx from
# hosted RPCs): worth another try. A JSON-RPC error or a revert is an answer: not retried.
_TRANSPORT = (requests.ConnectionError, requests.Timeout, requests.HTTPError, ConnectionError, TimeoutError,
              TimeExhausted)


class ChainClient:
    """The coordinator contract at `address` on `url`, optionally with a signing key."""

    def __init__(self, url: str, address: str, *, account: LocalAccount | None = None, chain_id: int,
                 timeout: float = 10.0, retry: RetryPolicy = RetryPolicy(),
                 receipt_timeout: float = 60.0) -> None:
        provider = Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        self.w3 = Web3(provider)
        self.url = url
        self.address = Web3.to_checksum_address(address)
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=abi())
        self.account = account
        self.chain_id = chain_id
        self.retry = retry
        self.receipt_timeout = receipt_timeout

    # ---- plumbing ----------------------------------------------------------------------

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying transport failures only, with capped exponential waits."""
        retrying = Retrying(
            retry=retry_if_exception_type(_TRANSPORT),
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(multiplier=self.retry.first_wait, max=self.retry.max_wait),
            reraise=True,
        )
        try:
            return retrying(fn)
        except _TRANSPORT as exc:
            raise TransportError(f"{what}: {type(exc).__name__} talking to the RPC") from None

    def _call(self, function: str, *args: Any) -> Any:
        def once() -> Any:
            try:
                return getattr(self.contract.functions, function)(*args).call()
            except (ContractCustomError, ContractLogicError) as exc:
                raise RevertError(function, decode_error(exc.data)) from None
        return self._retrying(function, once)

    # ---- reads -------------------------------------------------------------------------

    def chain_id_now(self) -> int:
        return int(self._retrying("eth_chainId", lambda: self.w3.eth.chain_id))

    def has_code(self) -> bool:
        return len(self._retrying("eth_getCode", lambda: self.w3.eth.get_code(self.address))) > 0

    def round_and_stage(self) -> tuple[int, int]:
        """Both in one JSON-RPC batch, as upstream reads them (one round trip, one snapshot)."""
        def once() -> tuple[int, int]:
            with self.w3.batch_requests() as batch:
                batch.add(self.contract.functions.currentRound())
                batch.add(self.contract.functions.currentStage())
                rnd, stage = batch.execute()
            return int(rnd), int(stage)  # type: ignore[call-overload]  # eth_call results of uint256
        return self._retrying("currentRound+currentStage", once)

    def stage_count(self) -> int:
        return int(self._call("stageCount"))

    def bootnodes(self) -> list[str]:
        return [str(b) for b in self._call("getBootnodes")]

    def has_role(self, role: str, who: str) -> bool:
        return bool(self._call("hasRole", self._call(role), Web3.to_checksum_address(who)))

    def has_submitted_reward(self, rnd: int, stage: int, peer_id: str) -> bool:
        """The peer-id overload (web3 resolves overloads by trying ENS on strings: encode by hand)."""
        data = _HAS_SUBMITTED + self.w3.codec.encode(["uint256", "uint256", "string"], [rnd, stage, peer_id])

        def once() -> bool:
            try:
                out = self.w3.eth.call({"to": self.address, "data": data})
            except (ContractCustomError, ContractLogicError) as exc:
                raise RevertError("hasSubmittedRoundStageReward", decode_error(exc.data)) from None
            return bool(self.w3.codec.decode(["bool"], out)[0])
        return self._retrying("hasSubmittedRoundStageReward", once)

    def voter_votes(self, rnd: int, peer_id: str) -> list[str]:
        return [str(v) for v in self._call("getVoterVotes", rnd, peer_id)]

    def eoa_of(self, peer_id: str) -> str:
        return str(self._call("getEoa", [peer_id])[0])

    def call(self, function: str, *args: Any) -> Any:
        """Any read-only function by name (tests, diagnostics)."""
        return self._call(function, *args)

    # ---- writes ------------------------------------------------------------------------

    def transact(self, function: str, *args: Any) -> dict[str, Any]:
        """Send `function(*args)` signed by our key and wait for its receipt.

        Gas is estimated, which runs the call first: a revert surfaces here as `RevertError`
        before anything is sent. A transaction mined with status 0 (state changed between
        estimate and inclusion) is replayed as a call at its block to decode the reason.
        """
        if self.account is None:
            raise RuntimeError("transact needs a signing key")
        account = self.account
        call = getattr(self.contract.functions, function)(*args)

        def once() -> dict[str, Any]:
            for _ in range(NONCE_RETRIES):
                nonce = self._pending_nonce(account.address)
                try:
                    tx = call.build_transaction({"from": account.address, "nonce": nonce, "chainId": self.chain_id})
                except (ContractCustomError, ContractLogicError) as exc:
                    raise RevertError(function, decode_error(exc.data)) from None
                signed = account.sign_transaction(tx)
                try:
                    tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
                except Web3RPCError as exc:
                    if _nonce_taken(exc):
                        log.info("chain_nonce_taken", function=function, nonce=nonce)
                        continue
                    raise
                receipt = dict(self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.receipt_timeout))
                if receipt.get("status") == 1:
                    return receipt
                raise RevertError(function, self._replay(call, account.address, receipt))
            raise TransportError(f"{function}: nonce kept being taken by another sender ({NONCE_RETRIES} tries)")

        return self._retrying(function, once)

    def _pending_nonce(self, address: str) -> int:
        """Counts our transactions still in the pool, so a key shared with another sender
        does not reuse a nonce that sender has queued."""
        return int(self.w3.eth.get_transaction_count(address, "pending"))  # type: ignore[arg-type]

    def _replay(self, call: Any, sender: str, receipt: dict[str, Any]) -> str:
        try:
            call.call({"from": sender}, block_identifier=receipt["blockNumber"] - 1)
        except (ContractCustomError, ContractLogicError) as exc:
            if exc.data:
                return decode_error(exc.data)
        try:
            call.call({"from": sender}, block_identifier="latest")
        except (ContractCustomError, ContractLogicError) as exc:
            return decode_error(exc.data)
        return "reverted on chain (reason not reproducible)"


def _nonce_taken(exc: Web3RPCError) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("nonce too low", "replacement transaction underpriced",
                                   "already known", "nonce has already been used"))


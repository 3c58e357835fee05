"""Start-up of the chain coordinator: check each setting against the real chain, then
link the node's identity to its peer id and publish it as a bootnode where allowed.

Each bad setting is one `ChainSettingError` line naming the trainer.toml key and the fix,
raised before training starts; a wrong chain id or an address without code would
otherwise surface hours later as a stream of failed submissions. The RPC URL may carry
an API key in its path or query, so messages show only scheme://host:port.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

import structlog
from web3.exceptions import Web3RPCError

from trainer.coordinator.abi import ALREADY_DONE
from trainer.coordinator.chain import ChainCoordinator
from trainer.coordinator.keyfile import load_or_create
from trainer.coordinator.queue import SubmissionQueue
from trainer.coordinator.rpc import (
    ChainClient,
    RetryPolicy,
    RevertError,
    TransportError,
)
from trainer.coordinator.settings import ChainSettingError, ChainSettings

log = structlog.get_logger(__name__)
START_RETRY = RetryPolicy(attempts=3)  # a node that cannot reach its RPC at start says so in seconds


def safe_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


class ChainLink:
    """The node's connection to the coordinator contract, from start-up checks to the
    running `ChainCoordinator`."""

    def __init__(self, client: ChainClient, settings: ChainSettings) -> None:
        self.client = client
        self.settings = settings
        self.coordinator: ChainCoordinator | None = None

    @property
    def address(self) -> str:
        return _address(self.client)

    @classmethod
    def open(cls, settings: ChainSettings, peer_id: str, *,
             start_retry: RetryPolicy = START_RETRY) -> ChainLink:
        """Key, RPC, chain id, contract code, then `registerPeer`; ChainSettingError on a bad setting."""
        account = load_or_create(settings.key_path)
        client = ChainClient(settings.rpc_url, settings.contract, account=account, chain_id=settings.chain_id,
                             timeout=settings.rpc_timeout, retry=start_retry)
        check(client, settings)
        client.retry = RetryPolicy()
        log.info("chain_connected", rpc=safe_url(settings.rpc_url), chain_id=settings.chain_id,
                 contract=client.address, account=account.address)
        register(client, peer_id)
        return cls(client, settings)

    def bootnodes(self, exclude: str = "") -> list[str]:
        """The contract's bootnode list, minus our own addresses; empty when unreadable."""
        try:
            found = self.client.bootnodes()
        except (TransportError, RevertError) as exc:
            log.warning("chain_bootnodes_unreadable", error=str(exc))
            return []
        return [b for b in found if not (exclude and b.endswith(f"/p2p/{exclude}"))]

    def publish_bootnodes(self, own_maddrs: Sequence[str]) -> None:
        try:
            publish_bootnodes(self.client, own_maddrs)
        except (TransportError, RevertError) as exc:
            log.warning("chain_bootnodes_not_published", error=str(exc))

    def start(self) -> ChainCoordinator:
        self.coordinator = ChainCoordinator(
            self.client, SubmissionQueue(self.settings.queue_dir, self.settings.queue_max),
            poll_seconds=self.settings.poll_seconds)
        self.coordinator.start()
        return self.coordinator

    def stop(self) -> None:
        if self.coordinator is not None:
            self.coordinator.stop()


def check(client: ChainClient, settings: ChainSettings) -> None:
    """RPC reachable, the chain id we expect, contract code at the address."""
    try:
        actual = client.chain_id_now()
    except TransportError:
        raise ChainSettingError("chain_rpc_url", f"no answer from {safe_url(settings.rpc_url)}",
                                "start the chain node (scripts/demo.sh starts anvil) or fix chain_rpc_url",
                                transient=True) from None
    if actual != settings.chain_id:
        raise ChainSettingError("chain_id", f"the RPC serves chain {actual}, not {settings.chain_id}",
                                f"set chain_id = {actual}, or point chain_rpc_url at chain {settings.chain_id}")
    if not client.has_code():
        raise ChainSettingError("chain_contract", f"no contract code at {client.address} on chain {actual}",
                                "deploy it (python -m trainer.coordinator.deploy) or fix chain_contract")


def register(client: ChainClient, peer_id: str) -> None:
    """Link our peer id to our account; already linked (to us) is success."""
    me = _address(client)
    try:
        client.transact("registerPeer", peer_id)
        log.info("chain_peer_registered", peer_id=peer_id, account=me)
    except RevertError as exc:
        if exc.error not in ALREADY_DONE:
            raise
        owner = client.eoa_of(peer_id)
        if owner.lower() != me.lower():
            log.warning("chain_peer_owned_by_another_account", peer_id=peer_id, owner=owner, account=me,
                        fix="use the chain key that registered this peer id (chain_key_path)")
    except Web3RPCError as exc:
        if "insufficient funds" in str(exc).lower():
            raise ChainSettingError("chain_key_path", f"account {me} has no funds for gas",
                                    f"send gas funds to {me}, or use a funded key file") from None
        raise


def publish_bootnodes(client: ChainClient, own_maddrs: Sequence[str]) -> None:
    """addBootnodes for our addresses not listed yet, when our account has the role."""
    if not client.has_role("BOOTNODE_MANAGER_ROLE", _address(client)):
        return
    missing = [m for m in own_maddrs if m not in set(client.bootnodes())]
    if missing:
        client.transact("addBootnodes", missing)
        log.info("chain_bootnodes_added", count=len(missing))


def _address(client: ChainClient) -> str:
    if client.account is None:
        raise RuntimeError("the chain client has no key")
    return str(client.account.address)

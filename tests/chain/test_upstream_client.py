"""Upstream's own chain client (gensyn-genrl 0.3.0, `genrl.blockchain`, unmodified) against
our contract on anvil: the proof that "same ABI" holds for the code the original node runs.

It reads round/stage (a JSON-RPC batch) and bootnodes, and its wallet path
(`send_chain_txn`, hm's WalletSwarmCoordinator flow) registers a peer and submits a reward
that our client then reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from tests.chain.conftest import Deployed
from trainer.coordinator.abi import abi
from trainer.coordinator.localchain import DEFAULT_CHAIN_ID

coordinator = pytest.importorskip("genrl.blockchain.coordinator", reason="needs gensyn-genrl==0.3.0 (.[upstream])")
connections = pytest.importorskip("genrl.blockchain.connections")


@pytest.fixture
def upstream(deployed: Deployed, tmp_path: Path) -> object:
    abi_file = tmp_path / "SwarmCoordinator_0.4.2.json"
    abi_file.write_text(json.dumps({"abi": abi()}))  # genrl wants a hardhat-style artifact
    return coordinator.SwarmCoordinator(deployed.anvil.url, deployed.address, str(abi_file))


def test_upstream_client_reads_round_stage_and_bootnodes(deployed: Deployed, upstream: object) -> None:
    deployed.owner.transact("addBootnodes", ["/ip4/127.0.0.1/tcp/38331/p2p/QmBoot"])
    assert upstream.get_round_and_stage() == (0, 0)  # type: ignore[attr-defined]
    for _ in range(4):
        deployed.owner.transact("updateStageAndRound")
    assert upstream.get_round_and_stage() == (1, 1)  # type: ignore[attr-defined]
    assert upstream.get_bootnodes() == ["/ip4/127.0.0.1/tcp/38331/p2p/QmBoot"]  # type: ignore[attr-defined]


def test_upstream_wallet_path_registers_and_submits(deployed: Deployed, upstream: object) -> None:
    account = Account.create()
    deployed.anvil.fund(account.address)
    web3 = upstream.web3  # type: ignore[attr-defined]
    contract = upstream.contract  # type: ignore[attr-defined]
    wallet = connections.setup_account(web3, account.key)

    def send(factory: object) -> None:
        connections.send_chain_txn(web3, wallet, factory, DEFAULT_CHAIN_ID)

    send(lambda: contract.functions.registerPeer("QmUp").build_transaction({"from": account.address}))
    web3.eth.wait_for_transaction_receipt(web3.eth.get_block("latest")["transactions"][-1])
    send(lambda: contract.functions.submitReward(0, 0, 42, "QmUp").build_transaction({"from": account.address}))
    reader = deployed.client()
    assert reader.eoa_of("QmUp") == account.address
    assert reader.call("getTotalRewards", ["QmUp"]) == [42]
    # Both overloads exist (0.4.2: account; 0.4.3+: peer id). web3 matches a hex string to
    # `string` too, so the account form is called by its signature (ours encodes by hand).
    by_account = contract.get_function_by_signature("hasSubmittedRoundStageReward(uint256,uint256,address)")
    assert by_account(0, 0, account.address).call() is True

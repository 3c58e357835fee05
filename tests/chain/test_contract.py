"""SwarmCoordinator on a real anvil: every function, every revert decoded to its custom
error, the three roles, and round/stage advance by the stage manager."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.logs import DISCARD

from tests.chain.conftest import Deployed
from trainer.coordinator.deploy import _create
from trainer.coordinator.localchain import DEFAULT_CHAIN_ID, DEV_KEY
from trainer.coordinator.rpc import ChainClient, RevertError

Party = Callable[[], tuple[LocalAccount, ChainClient]]


def reverts(error: str, fn: Callable[[], object]) -> None:
    with pytest.raises(RevertError) as info:
        fn()
    assert info.value.error == error


def events(client: ChainClient, receipt: dict[str, object], name: str) -> list[dict[str, object]]:
    return [dict(e["args"]) for e in getattr(client.contract.events, name)().process_receipt(receipt, errors=DISCARD)]


def test_initialize_gives_the_owner_all_three_roles_once(deployed: Deployed) -> None:
    owner = deployed.owner
    for role in ("OWNER_ROLE", "STAGE_MANAGER_ROLE", "BOOTNODE_MANAGER_ROLE"):
        assert owner.call(role) == keccak(text=role)
        assert owner.has_role(role, owner.account.address)  # type: ignore[union-attr]
    reverts("InvalidInitialization", lambda: owner.transact("initialize", owner.account.address))  # type: ignore[union-attr]


def test_implementation_behind_the_proxy_cannot_be_initialized(deployed: Deployed) -> None:
    owner = Account.from_key(DEV_KEY)
    impl = _create(deployed.owner.w3, owner, DEFAULT_CHAIN_ID, "SwarmCoordinator")
    direct = ChainClient(deployed.anvil.url, impl, account=owner, chain_id=DEFAULT_CHAIN_ID)
    reverts("InvalidInitialization", lambda: direct.transact("initialize", owner.address))


def test_stage_manager_advances_stages_then_the_round(deployed: Deployed) -> None:
    owner = deployed.owner
    assert owner.stage_count() == 3
    assert owner.round_and_stage() == (0, 0)
    r1 = owner.transact("updateStageAndRound")
    assert events(owner, r1, "StageAdvanced") == [{"roundNumber": 0, "newStage": 1}]
    assert events(owner, r1, "RoundAdvanced") == []
    owner.transact("updateStageAndRound")
    assert owner.round_and_stage() == (0, 2)
    r3 = owner.transact("updateStageAndRound")
    assert events(owner, r3, "RoundAdvanced") == [{"newRoundNumber": 1}]
    assert events(owner, r3, "StageAdvanced") == [{"roundNumber": 1, "newStage": 0}]
    assert (owner.call("currentRound"), owner.call("currentStage")) == (1, 0)


def test_only_a_stage_manager_advances_and_the_owner_grants_and_revokes(deployed: Deployed, new_party: Party) -> None:
    account, other = new_party()
    reverts("OnlyStageManager", lambda: other.transact("updateStageAndRound"))
    role = deployed.owner.call("STAGE_MANAGER_ROLE")
    granted = deployed.owner.transact("grantRole", role, account.address)
    assert events(deployed.owner, granted, "RoleGranted")[0]["account"] == account.address
    other.transact("updateStageAndRound")
    assert other.round_and_stage() == (0, 1)
    revoked = deployed.owner.transact("revokeRole", role, account.address)
    assert events(deployed.owner, revoked, "RoleRevoked")[0]["account"] == account.address
    reverts("OnlyStageManager", lambda: other.transact("updateStageAndRound"))


def test_only_the_owner_manages_roles(deployed: Deployed, new_party: Party) -> None:
    account, other = new_party()
    role = deployed.owner.call("OWNER_ROLE")
    reverts("OnlyOwner", lambda: other.transact("grantRole", role, account.address))
    reverts("OnlyOwner", lambda: other.transact("revokeRole", role, deployed.owner.account.address))  # type: ignore[union-attr]
    assert not other.has_role("OWNER_ROLE", account.address)


def test_bootnodes_add_remove_by_swap_and_pop_and_clear(deployed: Deployed) -> None:
    owner = deployed.owner
    added = owner.transact("addBootnodes", ["/a", "/b", "/c"])
    assert events(owner, added, "BootnodesAdded")[0]["count"] == 3
    assert owner.bootnodes() == ["/a", "/b", "/c"]
    assert owner.call("getBootnodesCount") == 3
    removed = owner.transact("removeBootnode", 0)
    assert events(owner, removed, "BootnodeRemoved")[0]["index"] == 0
    assert owner.bootnodes() == ["/c", "/b"]
    reverts("InvalidBootnodeIndex", lambda: owner.transact("removeBootnode", 2))
    cleared = owner.transact("clearBootnodes")
    assert len(events(owner, cleared, "AllBootnodesCleared")) == 1
    assert owner.bootnodes() == []


def test_only_a_bootnode_manager_changes_bootnodes(deployed: Deployed, new_party: Party) -> None:
    deployed.owner.transact("addBootnodes", ["/a"])
    _, other = new_party()
    reverts("OnlyBootnodeManager", lambda: other.transact("addBootnodes", ["/x"]))
    reverts("OnlyBootnodeManager", lambda: other.transact("removeBootnode", 0))
    reverts("OnlyBootnodeManager", lambda: other.transact("clearBootnodes"))
    assert other.bootnodes() == ["/a"]


def test_register_peer_links_once_and_maps_both_ways(deployed: Deployed, new_party: Party) -> None:
    a, ca = new_party()
    b, cb = new_party()
    receipt = ca.transact("registerPeer", "QmA1")
    assert events(ca, receipt, "PeerRegistered") == [{"eoa": a.address, "peerId": "QmA1"}]
    ca.transact("registerPeer", "QmA2")
    reverts("PeerIdAlreadyRegistered", lambda: cb.transact("registerPeer", "QmA1"))
    reverts("PeerIdAlreadyRegistered", lambda: ca.transact("registerPeer", "QmA2"))
    assert ca.call("getPeerId", [a.address, b.address]) == [["QmA1", "QmA2"], []]
    assert ca.call("getEoa", ["QmA2", "QmNone"]) == [a.address, "0x" + "0" * 40]


def test_submit_reward_checks_round_stage_owner_and_duplicates(deployed: Deployed, new_party: Party) -> None:
    a, ca = new_party()
    _, cb = new_party()
    ca.transact("registerPeer", "QmA")
    reverts("InvalidRoundNumber", lambda: ca.transact("submitReward", 1, 0, 5, "QmA"))
    reverts("InvalidStageNumber", lambda: ca.transact("submitReward", 0, 1, 5, "QmA"))
    reverts("InvalidVoterPeerId", lambda: cb.transact("submitReward", 0, 0, 5, "QmA"))
    reverts("InvalidVoterPeerId", lambda: ca.transact("submitReward", 0, 0, 5, "QmUnregistered"))
    receipt = ca.transact("submitReward", 0, 0, 7, "QmA")
    assert events(ca, receipt, "RewardSubmitted") == [
        {"account": a.address, "roundNumber": 0, "stageNumber": 0, "reward": 7, "peerId": "QmA"}]
    assert events(ca, receipt, "CumulativeRewardsUpdated") == [
        {"account": a.address, "peerId": "QmA", "totalRewards": 7}]
    reverts("RewardAlreadySubmitted", lambda: ca.transact("submitReward", 0, 0, 7, "QmA"))
    for _ in range(3):
        deployed.owner.transact("updateStageAndRound")
    reverts("InvalidStageNumber", lambda: ca.transact("submitReward", 0, 3, 1, "QmA"))
    ca.transact("submitReward", 0, 2, -3, "QmA")  # a past round: any stage below stageCount
    assert ca.call("getTotalRewards", ["QmA", "QmB"]) == [4, 0]
    assert ca.call("getRoundStageReward", 0, 2, [a.address]) == [-3]
    reverts("StageOutOfBounds", lambda: ca.call("getRoundStageReward", 0, 3, [a.address]))


def test_has_submitted_answers_per_account_and_per_peer(deployed: Deployed, new_party: Party) -> None:
    a, ca = new_party()
    ca.transact("registerPeer", "QmA")
    ca.transact("registerPeer", "QmA2")
    by_account = ca.contract.get_function_by_signature("hasSubmittedRoundStageReward(uint256,uint256,address)")
    assert by_account(0, 0, a.address).call() is False
    assert ca.has_submitted_reward(0, 0, "QmA") is False
    ca.transact("submitReward", 0, 0, 1, "QmA")
    assert by_account(0, 0, a.address).call() is True
    assert ca.has_submitted_reward(0, 0, "QmA") is True
    assert ca.has_submitted_reward(0, 0, "QmA2") is False
    reverts("StageOutOfBounds", lambda: ca.has_submitted_reward(0, 3, "QmA"))


def test_submit_winners_counts_votes_wins_and_leaderboards(deployed: Deployed, new_party: Party) -> None:
    a, ca = new_party()
    _, cb = new_party()
    ca.transact("registerPeer", "QmA")
    cb.transact("registerPeer", "QmB")
    reverts("InvalidRoundNumber", lambda: ca.transact("submitWinners", 1, ["QmB"], "QmA"))
    reverts("InvalidVoterPeerId", lambda: cb.transact("submitWinners", 0, ["QmB"], "QmA"))
    reverts("InvalidVote", lambda: ca.transact("submitWinners", 0, ["QmB", "QmB"], "QmA"))
    reverts("InvalidVote", lambda: ca.transact("submitWinners", 0, [], "QmA"))
    receipt = ca.transact("submitWinners", 0, ["QmB", "QmC"], "QmA")
    assert events(ca, receipt, "WinnerSubmitted") == [
        {"account": a.address, "peerId": "QmA", "roundNumber": 0, "winners": ["QmB", "QmC"]}]
    reverts("WinnerAlreadyVoted", lambda: ca.transact("submitWinners", 0, ["QmC"], "QmA"))
    cb.transact("submitWinners", 0, ["QmC"], "QmB")
    assert ca.call("getTotalWins", "QmC") == 2
    assert ca.call("getVoterVoteCount", "QmA") == 1
    assert ca.voter_votes(0, "QmA") == ["QmB", "QmC"]
    assert ca.call("getPeerVoteCount", 0, "QmC") == 2
    assert (ca.call("uniqueVoters"), ca.call("uniqueVotedPeers")) == (2, 2)
    assert ca.call("winnerLeaderboard", 0, 10) == [["QmC", "QmB"], [2, 1]]
    assert ca.call("winnerLeaderboard", 1, 2) == [["QmB"], [1]]
    assert ca.call("voterLeaderboard", 0, 10) == [["QmA", "QmB"], [1, 1]]
    assert ca.call("voterLeaderboard", 5, 1) == [[], []]


def test_upgrade_is_owner_only_and_keeps_state(deployed: Deployed, new_party: Party) -> None:
    owner = deployed.owner
    owner.transact("addBootnodes", ["/keep"])
    owner.transact("updateStageAndRound")
    account = Account.from_key(DEV_KEY)
    new_impl = _create(owner.w3, account, DEFAULT_CHAIN_ID, "SwarmCoordinator")
    _, other = new_party()
    reverts("OnlyOwner", lambda: other.transact("upgradeToAndCall", new_impl, b""))
    # The proxy itself is not an implementation: its proxiableUUID refuses a delegated call.
    reverts("ERC1967InvalidImplementation", lambda: owner.transact("upgradeToAndCall", deployed.address, b""))
    reverts("UUPSUnauthorizedCallContext", lambda: owner.call("proxiableUUID"))
    assert owner.call("UPGRADE_INTERFACE_VERSION") == "5.0.0"
    receipt = owner.transact("upgradeToAndCall", new_impl, b"")
    assert events(owner, receipt, "Upgraded") == [{"implementation": Web3.to_checksum_address(new_impl)}]
    assert owner.bootnodes() == ["/keep"]
    assert owner.round_and_stage() == (0, 1)

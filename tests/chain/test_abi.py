"""The committed ABI is the original's (§5.2 selectors, events, errors) and is exactly what
the committed source compiles to."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from trainer.coordinator import build
from trainer.coordinator.abi import abi, decode_error, signature

# Function selectors of Gensyn's SwarmCoordinator 0.4.2 ABI, from the reference (§5.2).
ORIGINAL_SELECTORS = {
    "currentRound": "8a19c8bc", "currentStage": "5bf5d54c", "stageCount": "f33261ac",
    "updateStageAndRound": "e28b0586", "getBootnodes": "6370ae4f", "getBootnodesCount": "48495bdb",
    "addBootnodes": "d90d8573", "removeBootnode": "4f52ca36", "clearBootnodes": "4179a759",
    "registerPeer": "33e7fb45", "getPeerId": "b894a469", "getEoa": "96bac35a", "submitReward": "5194e15f",
    "submitWinners": "fbe94d68", "getRoundStageReward": "098f027f", "hasSubmittedRoundStageReward": "9291fee5",
    "getTotalRewards": "80c3d97f", "getTotalWins": "099c4002", "getVoterVoteCount": "dfb3c7df",
    "getVoterVotes": "2bdd8ea6", "getPeerVoteCount": "4f4026c3", "voterLeaderboard": "18a6fd88",
    "winnerLeaderboard": "2f4be652", "uniqueVoters": "b0c77404", "uniqueVotedPeers": "42d2c6a0",
    "OWNER_ROLE": "e58378bb", "STAGE_MANAGER_ROLE": "068dc322", "BOOTNODE_MANAGER_ROLE": "7c8973c7",
    "grantRole": "2f2ff15d", "revokeRole": "d547741f", "hasRole": "91d14854", "initialize": "c4d66de8",
    "proxiableUUID": "52d1902d", "UPGRADE_INTERFACE_VERSION": "ad3cb1cc", "upgradeToAndCall": "4f1ef286",
}
ORIGINAL_EVENTS = {
    "PeerRegistered", "RewardSubmitted", "CumulativeRewardsUpdated", "WinnerSubmitted", "RoundAdvanced",
    "StageAdvanced", "BootnodesAdded", "BootnodeRemoved", "AllBootnodesCleared", "RoleGranted", "RoleRevoked",
    "Initialized", "Upgraded",
}
ORIGINAL_ERRORS = {
    "PeerIdAlreadyRegistered", "RewardAlreadySubmitted", "WinnerAlreadyVoted", "InvalidRoundNumber",
    "InvalidStageNumber", "InvalidVote", "InvalidVoterPeerId", "InvalidBootnodeIndex", "StageOutOfBounds",
    "OnlyOwner", "OnlyStageManager", "OnlyBootnodeManager", "AddressEmptyCode", "ERC1967InvalidImplementation",
    "ERC1967NonPayable", "FailedCall", "InvalidInitialization", "NotInitializing", "UUPSUnauthorizedCallContext",
    "UUPSUnsupportedProxiableUUID",
}


def _selectors() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for item in abi():
        if item["type"] == "function":
            found.setdefault(item["name"], set()).add(keccak(text=signature(item))[:4].hex())
    return found


def test_every_original_function_selector_is_present() -> None:
    found = _selectors()
    missing = {n: s for n, s in ORIGINAL_SELECTORS.items() if s not in found.get(n, set())}
    assert missing == {}


def test_only_addition_is_the_peer_id_overload_of_has_submitted() -> None:
    extra = {(n, s) for n, sels in _selectors().items() for s in sels if ORIGINAL_SELECTORS.get(n) != s}
    assert extra == {("hasSubmittedRoundStageReward", "1fcaf676")}


def test_events_and_custom_errors_match_the_original() -> None:
    assert {i["name"] for i in abi() if i["type"] == "event"} == ORIGINAL_EVENTS
    assert {i["name"] for i in abi() if i["type"] == "error"} == ORIGINAL_ERRORS


@pytest.mark.parametrize(("data", "name"), [
    ("0x" + keccak(text="RewardAlreadySubmitted()")[:4].hex(), "RewardAlreadySubmitted"),
    (keccak(text="OnlyOwner()")[:4], "OnlyOwner"),
    ("0x", "revert (no data)"),
    ("0xdeadbeef", "unknown error 0xdeadbeef"),
])
def test_revert_data_decodes_to_the_custom_error_name(data: object, name: str) -> None:
    assert decode_error(data) == name


@pytest.mark.slow
def test_committed_artifacts_are_what_the_source_compiles_to() -> None:
    if not build.SOLC_JS.is_file():
        pytest.skip(f"{build.SOLC_JS} missing: run bash scripts/setup.sh (needs npm)")
    assert build.differences(build.compile_artifacts()) == []

"""The node's chain client against a real anvil: reverts decoded and never retried,
"already done" as success, transport failures retried and bounded, a key shared by two
senders, the durable queue delivered across an RPC outage and across kill -9 restarts
more frequent than the submission cadence, and one clear line per bad setting."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import structlog
from eth_account import Account

from tests.chain.conftest import Deployed
from tests.conftest import wait_until
from trainer.coordinator.chain import ChainCoordinator, Sender
from trainer.coordinator.connect import ChainLink, safe_url
from trainer.coordinator.keyfile import load_or_create
from trainer.coordinator.localchain import DEFAULT_CHAIN_ID, RpcGate, free_port
from trainer.coordinator.queue import Submission, SubmissionQueue
from trainer.coordinator.rpc import (
    ChainClient,
    RetryPolicy,
    RevertError,
    TransportError,
)
from trainer.coordinator.settings import ChainSettingError, ChainSettings

FAST = RetryPolicy(attempts=3, first_wait=0.05, max_wait=0.2)


def _settings(deployed: Deployed, tmp_path: Path, **kw: object) -> ChainSettings:
    values: dict[str, object] = {
        "rpc_url": deployed.anvil.url, "contract": deployed.address, "chain_id": DEFAULT_CHAIN_ID,
        "key_path": tmp_path / "chain.key", "queue_dir": tmp_path / "queue", "rpc_timeout": 2.0,
        "poll_seconds": 0.2,
    }
    values.update(kw)
    return ChainSettings(**values)  # type: ignore[arg-type]


def _linked(deployed: Deployed, tmp_path: Path, peer: str, **kw: object) -> ChainLink:
    settings = _settings(deployed, tmp_path, **kw)
    deployed.anvil.fund(load_or_create(settings.key_path).address)
    return ChainLink.open(settings, peer, start_retry=FAST)


# ---- client ---------------------------------------------------------------------------

def test_revert_is_not_retried_and_names_its_custom_error(deployed: Deployed) -> None:
    _, client = deployed.funded()
    client.retry = RetryPolicy(attempts=5, first_wait=5.0, max_wait=5.0)
    started = time.monotonic()
    with pytest.raises(RevertError) as info:
        client.transact("submitReward", 0, 0, 1, "QmNotMine")
    assert info.value.error == "InvalidVoterPeerId"
    assert time.monotonic() - started < 4.0  # a retry would have waited 5 s


def test_unreachable_rpc_is_retried_with_capped_backoff_then_reported() -> None:
    client = ChainClient(f"http://127.0.0.1:{free_port()}", "0x" + "11" * 20, chain_id=1, timeout=1.0,
                         retry=RetryPolicy(attempts=3, first_wait=0.1, max_wait=0.15))
    started = time.monotonic()
    with pytest.raises(TransportError):
        client.round_and_stage()
    assert 0.2 <= time.monotonic() - started < 5.0  # two waits: 0.1 + 0.15 (capped)


def test_round_and_stage_come_in_one_batch_after_each_advance(deployed: Deployed) -> None:
    reader = deployed.client()
    for expected in [(0, 1), (0, 2), (1, 0)]:
        deployed.owner.transact("updateStageAndRound")
        assert reader.round_and_stage() == expected


def test_a_key_used_by_two_senders_at_once_loses_no_transaction(deployed: Deployed) -> None:
    account, first = deployed.funded()
    second = deployed.client(account)
    errors: list[BaseException] = []

    def register(client: ChainClient, prefix: str) -> None:
        try:
            for i in range(4):
                client.transact("registerPeer", f"{prefix}{i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(c, p)) for c, p in ((first, "QmX"), (second, "QmY"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(first.call("getPeerId", [account.address])[0]) == [f"Qm{p}{i}" for p in "XY" for i in range(4)]


# ---- sender ---------------------------------------------------------------------------

def test_sender_delivers_and_treats_already_on_chain_as_done(deployed: Deployed, tmp_path: Path) -> None:
    _account, client = deployed.funded()
    client.transact("registerPeer", "QmA")
    client.transact("submitReward", 0, 0, 3, "QmA")  # sent by a previous life of the node
    deployed.owner.transact("updateStageAndRound")
    queue = SubmissionQueue(tmp_path)
    queue.put(Submission("reward", 0, 0, "QmA", reward=3))
    queue.put(Submission("reward", 0, 1, "QmA", reward=4))
    queue.put(Submission("winners", 0, 0, "QmA", winners=("QmB",)))
    sender = Sender(queue, client)
    assert sender.drain() == 3
    assert (sender.stats.sent, sender.stats.already, queue.depth()) == (2, 1, 0)
    assert client.call("getTotalRewards", ["QmA"]) == [7]
    assert client.voter_votes(0, "QmA") == ["QmB"]
    queue.put(Submission("winners", 0, 0, "QmA", winners=("QmC",)))  # re-queued after a crash
    assert sender.deliver(queue.pending()[0]) == "already"


def test_rejected_submission_is_logged_with_its_error_and_dropped(deployed: Deployed, tmp_path: Path) -> None:
    _, client = deployed.funded()
    queue = SubmissionQueue(tmp_path)
    queue.put(Submission("reward", 0, 0, "QmNotMine", reward=1))
    with structlog.testing.capture_logs() as logs:
        Sender(queue, client).drain()
    assert queue.depth() == 0
    assert [(e["event"], e["error"]) for e in logs if e["event"] == "chain_submission_rejected"] == [
        ("chain_submission_rejected", "InvalidVoterPeerId")]


def test_rpc_outage_queues_on_disk_and_delivers_everything_after(deployed: Deployed, tmp_path: Path) -> None:
    gate = RpcGate(deployed.anvil.port)
    gate.open()
    try:
        link = _linked(deployed, tmp_path, "QmA", rpc_url=gate.url)
        coord = link.start()
        coord.sender.max_backoff = 0.3
        coord.client.retry = FAST
        gate.shut()
        with pytest.raises(OSError, match="currentRound"):  # the node's round loop waits OSErrors out
            coord.current_round()
        for rnd in range(3):
            deployed.owner.transact("updateStageAndRound")  # the owner talks to anvil directly
            coord.submit_reward(0, rnd, 0.5, "QmA")
        time.sleep(1.0)
        assert coord.queue_depth() == 3
        gate.open()
        wait_until(lambda: coord.queue_depth() == 0, 60, lambda: f"depth {coord.queue_depth()}")
        assert [deployed.client().has_submitted_reward(0, s, "QmA") for s in range(3)] == [True] * 3
        link.stop()
    finally:
        gate.shut()


_CHILD = """
import sys, time
from pathlib import Path
from trainer.coordinator.connect import ChainLink
from trainer.coordinator.settings import ChainSettings
url, contract, state, rnd = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
link = ChainLink.open(ChainSettings(rpc_url=url, contract=contract, chain_id=685685,
                      key_path=state / "chain.key", queue_dir=state / "queue"), "QmRestarts")
coord = link.start()
coord.submit_reward(rnd, 0, 1.0, "QmRestarts")
print("queued", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_restarts_more_frequent_than_the_cadence_still_submit_every_round(deployed: Deployed, tmp_path: Path) -> None:
    """W17: upstream's 3-hour timer starts at process start, so a node that lives shorter
    never submits. Here each life queues its round's reward and is killed with SIGKILL at
    once; the next life (or the last) delivers whatever is left."""
    deployed.anvil.fund(load_or_create(tmp_path / "chain.key").address)
    lives = 4
    for rnd in range(lives):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, deployed.anvil.url, deployed.address, str(tmp_path),
                                 str(rnd)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            seen = []
            while (line := proc.stdout.readline()) and line.strip() != "queued":  # log lines, then ours
                seen.append(line)
            assert line.strip() == "queued", seen
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            proc.stdout.close()  # type: ignore[union-attr]
        for _ in range(3):
            deployed.owner.transact("updateStageAndRound")
    link = ChainLink.open(_settings(deployed, tmp_path), "QmRestarts", start_retry=FAST)
    coord = link.start()
    try:
        wait_until(lambda: coord.queue_depth() == 0, 60, lambda: f"depth {coord.queue_depth()}")
    finally:
        link.stop()
    reader = deployed.client()
    assert [reader.has_submitted_reward(r, 0, "QmRestarts") for r in range(lives)] == [True] * lives


# ---- start-up: identity and settings ----------------------------------------------------

def test_key_file_is_created_0600_once_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "chain.key"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path).address == first.address
    path.chmod(0o644)
    load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_start_registers_the_peer_and_a_second_start_is_fine(deployed: Deployed, tmp_path: Path) -> None:
    link = _linked(deployed, tmp_path, "QmMe")
    assert deployed.client().eoa_of("QmMe") == link.address
    again = ChainLink.open(_settings(deployed, tmp_path), "QmMe", start_retry=FAST)  # PeerIdAlreadyRegistered
    assert again.address == link.address


def test_bootnode_manager_publishes_its_addresses_once(deployed: Deployed, tmp_path: Path) -> None:
    link = _linked(deployed, tmp_path, "QmBoot")
    role = deployed.owner.call("BOOTNODE_MANAGER_ROLE")
    link.publish_bootnodes(["/ip4/127.0.0.1/tcp/1/p2p/QmBoot"])  # no role yet: nothing
    assert deployed.client().bootnodes() == []
    deployed.owner.transact("grantRole", role, link.address)
    link.publish_bootnodes(["/ip4/127.0.0.1/tcp/1/p2p/QmBoot"])
    link.publish_bootnodes(["/ip4/127.0.0.1/tcp/1/p2p/QmBoot"])
    assert deployed.client().bootnodes() == ["/ip4/127.0.0.1/tcp/1/p2p/QmBoot"]
    assert link.bootnodes(exclude="QmBoot") == []


@pytest.mark.parametrize(("change", "key", "words"), [
    ({"chain_id": 1}, "chain_id", "serves chain 685685"),
    ({"contract": "0x" + "12" * 20}, "chain_contract", "no contract code"),
    ({"rpc_url": "http://127.0.0.1:{port}/v2/SECRETKEY"}, "chain_rpc_url", "no answer from http://127.0.0.1"),
])
def test_each_bad_setting_is_one_line_naming_it(deployed: Deployed, tmp_path: Path, change: dict[str, object],
                                                key: str, words: str) -> None:
    if "rpc_url" in change:
        change = {"rpc_url": str(change["rpc_url"]).format(port=free_port())}
    with pytest.raises(ChainSettingError) as info:
        ChainLink.open(_settings(deployed, tmp_path, **change), "QmBad", start_retry=FAST)
    message = str(info.value)
    assert info.value.key == key
    assert words in message
    assert "fix:" in message
    assert "\n" not in message
    assert "SECRETKEY" not in message


def test_unreadable_or_foreign_key_file_is_one_line_without_its_content(deployed: Deployed, tmp_path: Path) -> None:
    path = tmp_path / "chain.key"
    path.write_text("not a key but maybe a secret\n")
    with pytest.raises(ChainSettingError) as info:
        ChainLink.open(_settings(deployed, tmp_path), "QmBad", start_retry=FAST)
    assert info.value.key == "chain_key_path"
    assert "secret" not in str(info.value)
    if os.geteuid() != 0:  # root reads anything
        path.write_text(Account.create().key.hex())
        path.chmod(0)
        with pytest.raises(ChainSettingError, match="cannot read"):
            load_or_create(path)


def test_key_never_reaches_a_log_line(deployed: Deployed, tmp_path: Path) -> None:
    with structlog.testing.capture_logs() as logs:
        link = _linked(deployed, tmp_path, "QmQuiet")
    secret = (tmp_path / "chain.key").read_text().strip()
    assert link.address
    assert logs
    assert secret[2:] not in repr(logs)


def test_safe_url_drops_path_and_query() -> None:
    assert safe_url("https://gensyn.example.com:8443/v2/KEY?token=x") == "https://gensyn.example.com:8443"


def test_chain_coordinator_polls_instead_of_backing_off(deployed: Deployed, tmp_path: Path) -> None:
    coord = ChainCoordinator(deployed.client(), SubmissionQueue(tmp_path), poll_seconds=0.5)
    assert coord.seconds_until_next() is None
    assert coord.poll_seconds() == 0.5
    assert coord.current_round() == (0, 0)


def test_a_round_read_that_fails_on_the_rpc_side_is_an_oserror_not_a_crash(deployed: Deployed,
                                                                           tmp_path: Path) -> None:
    """E.g. the chain was reset under a running node: no code at the address any more."""
    gone = ChainClient(deployed.anvil.url, "0x" + "34" * 20, chain_id=DEFAULT_CHAIN_ID)
    coord = ChainCoordinator(gone, SubmissionQueue(tmp_path))
    with pytest.raises(OSError, match="currentRound"):
        coord.current_round()


class _RacedClient(ChainClient):
    """Reads the nonce just before another sender of the same key spends it: the first
    read is one behind, as if the other transaction landed between read and send."""

    stale_reads = 1

    def _pending_nonce(self, address: str) -> int:
        nonce = super()._pending_nonce(address)
        if self.stale_reads:
            self.stale_reads -= 1
            return nonce - 1
        return nonce


def test_nonce_spent_by_another_sender_is_reread_and_the_call_sent(deployed: Deployed) -> None:
    account, client = deployed.funded()
    client.transact("registerPeer", "QmFirst")  # nonce 0 is spent
    raced = _RacedClient(deployed.anvil.url, deployed.address, account=account, chain_id=DEFAULT_CHAIN_ID)
    with structlog.testing.capture_logs() as logs:
        raced.transact("registerPeer", "QmSecond")  # first try: nonce 0 again, refused by anvil
    assert [e["event"] for e in logs] == ["chain_nonce_taken"]
    assert client.call("getPeerId", [account.address]) == [["QmFirst", "QmSecond"]]

"""The real node (`python -m trainer`) with its clock on a real chain: it registers its
peer id, trains the rounds the stage manager opens, and every reward and winner vote it
reports is on chain or still queued on disk (none lost); a wrong chain id stops it at
start with one line naming the key, exit 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from tests.chain.conftest import Deployed
from trainer.coordinator.keyfile import load_or_create
from trainer.coordinator.localchain import free_port
from trainer.coordinator.queue import SubmissionQueue

REPO = Path(__file__).resolve().parents[2]
FINISHED = re.compile(r"📉 Finished training round: (\d+) stage: (\d+) reward=")
HELLO = re.compile(r"🐱 Hello 🐈 \[[^\]]+\] 🦮 \[(\w+)\]!")


def _trainer(tmp: Path, deployed: Deployed, *extra: str) -> list[str]:
    config = tmp / "trainer.toml"
    config.write_text(f"""
model = "tiny"
device = "cpu"
host_maddrs = ["/ip4/127.0.0.1/tcp/0"]
namespace = "chain-{os.getpid()}"
round_seconds = 10.0
gather_timeout = 1.0
prompts_per_round = 1
num_generations = 2
max_new_tokens = 8
chain_rpc_url = "{deployed.anvil.url}"
chain_contract = "{deployed.address}"
chain_poll_seconds = 0.5
""", encoding="utf-8")
    argv = [sys.executable, "-m", "trainer", "--config", str(config), "--override", f'state_dir="{tmp / "node"}"']
    for item in extra:
        argv += ["--override", item]
    return argv


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def test_wrong_chain_id_stops_the_node_with_one_line(deployed: Deployed, tmp_path: Path) -> None:
    """A wrong setting is fatal (exit 2: swarmd does not restart into the same error)."""
    proc = subprocess.run(_trainer(tmp_path, deployed, "chain_id=1"), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("trainer:")]
    assert lines == [f"trainer: {tmp_path / 'trainer.toml'}: [chain_id] the RPC serves chain 685685, not 1; "
                     "fix: set chain_id = 685685, or point chain_rpc_url at chain 1"]


def test_rpc_down_at_start_is_one_line_and_a_restartable_exit(deployed: Deployed, tmp_path: Path) -> None:
    """The setting may be right and the RPC merely down: exit 69, which swarmd restarts with
    back-off (2 and 78 are its fatal codes)."""
    url = f"http://127.0.0.1:{free_port()}/v2/SECRET"
    proc = subprocess.run(_trainer(tmp_path, deployed, f'chain_rpc_url="{url}"'), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 69
    lines = [line for line in proc.stderr.splitlines() if line.startswith("trainer:")]
    assert len(lines) == 1
    assert "[chain_rpc_url] no answer from http://127.0.0.1:" in lines[0]
    assert "SECRET" not in proc.stderr + proc.stdout


@pytest.mark.slow
@pytest.mark.swarm
@pytest.mark.timeout(480)  # model build + DHT start under a loaded 2-core box
def test_node_trains_the_chain_rounds_and_loses_no_reward(deployed: Deployed, tmp_path: Path) -> None:
    deployed.anvil.fund(load_or_create(tmp_path / "node" / "chain.key").address)
    stop = threading.Event()

    def stage_manager() -> None:
        while not stop.wait(2.0):
            deployed.owner.transact("updateStageAndRound")

    log = tmp_path / "stdout.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(_trainer(tmp_path, deployed, "max_rounds=2"), cwd=REPO, env=_env(), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    manager = threading.Thread(target=stage_manager, daemon=True)
    manager.start()
    try:
        code = proc.wait(420)
    finally:
        stop.set()
        manager.join(10)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        for p in psutil.process_iter(["name", "cmdline"]):  # never leak this test's p2pd
            if p.info["name"] == "p2pd" and any(str(tmp_path) in a for a in p.info["cmdline"] or []):
                p.kill()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert code == 0, text[-2000:]
    peer_id = HELLO.search(text).group(1)  # type: ignore[union-attr]
    trained = [(int(r), int(s)) for r, s in FINISHED.findall(text)]
    assert len(trained) == 2, text[-2000:]
    reader = deployed.client()
    assert reader.eoa_of(peer_id) == load_or_create(tmp_path / "node" / "chain.key").address
    queued = {(i.round, i.stage) for i in SubmissionQueue(tmp_path / "node" / "chain-queue").pending()}
    on_chain = {rs for rs in trained if reader.has_submitted_reward(rs[0], rs[1], peer_id)}
    assert on_chain, "no reward reached the chain"
    assert set(trained) == on_chain | queued  # delivered, or durable for the next start
    voted = {r for r, _ in trained if reader.voter_votes(r, peer_id) == [peer_id]}  # alone: it votes for itself
    queued_votes = {i.round for i in SubmissionQueue(tmp_path / "node" / "chain-queue").pending() if i.kind == "winners"}
    assert voted
    assert {r for r, _ in trained} == voted | queued_votes

"""The demo chain's parts on anvil: the stage manager advances by time until told to stop,
and a demo peer is linked with the identity and key files the trainer will use."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.chain.conftest import Deployed
from tests.conftest import wait_until
from trainer.coordinator.demo_chain import link_peer, run_stage_manager
from trainer.coordinator.keyfile import load_or_create as load_key
from trainer.identity import load_or_create as load_identity


def test_stage_manager_advances_on_its_interval_and_stops(deployed: Deployed) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=run_stage_manager, args=(deployed.owner, 0.3, stop))

    def advances() -> int:
        rnd, stage = deployed.owner.round_and_stage()
        return rnd * 3 + stage

    started = time.monotonic()
    thread.start()
    wait_until(lambda: advances() >= 4, 60, lambda: f"{advances()} advances")  # a round and a stage
    stop.set()
    thread.join(30)
    elapsed = time.monotonic() - started
    assert not thread.is_alive()
    done = advances()
    assert done <= elapsed / 0.3 + 1  # never faster than its interval
    time.sleep(0.9)
    assert advances() == done  # stopped means stopped


def test_link_peer_registers_the_trainers_own_files(deployed: Deployed, tmp_path: Path) -> None:
    peer_id = link_peer(deployed.anvil, deployed.address, tmp_path)
    assert peer_id == load_identity(tmp_path / "swarm.pem").peer_id
    assert deployed.client().eoa_of(peer_id) == load_key(tmp_path / "chain.key").address
    assert link_peer(deployed.anvil, deployed.address, tmp_path) == peer_id  # a second demo start

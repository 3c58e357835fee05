"""The demo chain's parts on anvil: the stage manager advances by time until told to stop,
and a demo peer is linked with the identity and key files the trainer will use."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.chain.conftest import Deployed
from trainer.coordinator.demo_chain import link_peer, run_stage_manager
from trainer.coordinator.keyfile import load_or_create as load_key
from trainer.identity import load_or_create as load_identity


def test_stage_manager_advances_on_its_interval_and_stops(deployed: Deployed) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=run_stage_manager, args=(deployed.owner, 0.3, stop))
    thread.start()
    time.sleep(2.0)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    rnd, stage = deployed.owner.round_and_stage()
    advances = rnd * 3 + stage
    assert 3 <= advances <= 7  # ~6 ticks of 0.3 s in 2 s, on a loaded machine fewer
    time.sleep(0.6)
    assert deployed.owner.round_and_stage() == (rnd, stage)  # stopped means stopped


def test_link_peer_registers_the_trainers_own_files(deployed: Deployed, tmp_path: Path) -> None:
    peer_id = link_peer(deployed.anvil, deployed.address, tmp_path)
    assert peer_id == load_identity(tmp_path / "swarm.pem").peer_id
    assert deployed.client().eoa_of(peer_id) == load_key(tmp_path / "chain.key").address
    assert link_peer(deployed.anvil, deployed.address, tmp_path) == peer_id  # a second demo start

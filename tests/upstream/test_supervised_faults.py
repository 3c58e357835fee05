"""Two unmodified genrl 0.3.0 nodes on loopback, each under a real `swarmd run`; every
fault hits the second node, is detected, and ends with the node back in a round with its
peer, without an orphan, a stale socket, or two trees of one identity.

The faults run in order on one pair (a genrl start costs ~20 s on this machine, and a
restarted node replays the rounds it missed: see genrl_swarm.py), so each test depends on
the previous one having recovered; every test prints its measured figures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.upstream.genrl_swarm import make_pair
from tests.upstream.supervised import (
    FAULTS,
    Fault,
    IdentitySampler,
    SupervisedNode,
    measure,
    supervised_pair,
    wait_in_round,
)

pytestmark = [pytest.mark.upstream, pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(330)]


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, genrl_assets: tuple[Path, Path]
) -> Iterator[tuple[SupervisedNode, SupervisedNode, IdentitySampler]]:
    root = tmp_path_factory.mktemp("genrl-pair")
    a_node, b_node = make_pair(root, *genrl_assets)
    with supervised_pair(root, a_node, b_node) as (a, b), IdentitySampler(b_node.identity) as sampler:
        yield a, b, sampler
    assert sampler.max_seen <= 1, f"{sampler.max_seen} p2pd daemons of one identity at once"


def test_two_supervised_upstream_nodes_run_rounds_together(pair: tuple[SupervisedNode, SupervisedNode, IdentitySampler]) -> None:
    """Both launchers start under swarmd, meet through the rendezvous file and advance
    in lockstep (each gather waits for both), with no complaint about the swarm."""
    a, b, _ = pair
    wait_in_round(a, b, timeout=150)
    for node in (a, b):
        assert "Error with swarm payloads" not in node.trainer_log.read_text(errors="replace")
        assert any(e.get("event") == "state_changed" and e.get("to") == "running" for e in node.events())


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_detected_and_node_rejoins_its_peer(
    pair: tuple[SupervisedNode, SupervisedNode, IdentitySampler], fault: Fault
) -> None:
    """swarmd acts on the fault, the node is back in a round with its peer, and nothing
    of the old tree is left (process or p2pd socket); one identity, one p2pd."""
    a, b, sampler = pair
    result = measure(a, b, fault, timeout=240)
    print(result.line())
    assert not result.problems, result.line()
    assert sampler.max_seen <= 1, f"{sampler.max_seen} p2pd daemons of one identity at once"

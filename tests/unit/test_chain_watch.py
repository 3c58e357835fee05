"""Chain readings in, events out, on a hand-driven timeline."""

from __future__ import annotations

from swarmd.chain_rpc import ChainReading, resolve_contract
from swarmd.chain_watch import ChainWatch


def at_round(rnd: int) -> ChainReading:
    return ChainReading(True, f"rpc: round {rnd}", 685685, 100 + rnd, rnd, 0)


ADDRESS = "0x00000000000000000000000000000000c0ffee01"
DOWN = ChainReading(False, "rpc: no answer within 5s")


def kinds(watch: ChainWatch, now: float, reading: ChainReading) -> list[str]:
    return [e.kind for e in watch.observe(now, reading)]


def test_rpc_down_and_up_are_reported_once_each() -> None:
    watch = ChainWatch()
    assert kinds(watch, 0, at_round(3)) == []
    assert kinds(watch, 1, DOWN) == ["chain_rpc_down"]
    assert kinds(watch, 2, DOWN) == []
    assert kinds(watch, 3, at_round(3)) == ["chain_rpc_up"]


def test_an_rpc_down_from_the_start_is_reported() -> None:
    assert kinds(ChainWatch(), 0, DOWN) == ["chain_rpc_down"]


def test_a_round_going_back_twice_in_a_row_is_a_fault_with_both_rounds() -> None:
    watch = ChainWatch()
    for t, rnd in enumerate((17, 18, 19)):
        watch.observe(t, at_round(rnd))
    assert kinds(watch, 3, at_round(0)) == []  # one reading: maybe a lagging backend
    events = watch.observe(4, at_round(0))
    assert [e.kind for e in events] == ["chain_round_backwards"]
    assert events[0].fault
    assert "from 19 to 0" in events[0].evidence
    assert kinds(watch, 5, at_round(0)) == []  # the new chain is the baseline now
    assert kinds(watch, 6, at_round(1)) == []


def test_a_single_lagging_reading_is_forgiven() -> None:
    watch = ChainWatch()
    watch.observe(0, at_round(19))
    assert kinds(watch, 1, at_round(18)) == []
    assert kinds(watch, 2, at_round(19)) == []
    assert kinds(watch, 3, at_round(18)) == []


def test_a_round_standing_still_for_n_configured_lengths_while_running() -> None:
    watch = ChainWatch(stall_rounds=3, round_length=60)
    watch.node_running(0, True)
    watch.observe(0, at_round(5))
    assert kinds(watch, 179, at_round(5)) == []
    events = watch.observe(180, at_round(5))
    assert [e.kind for e in events] == ["chain_round_stalled"]
    assert not events[0].fault  # restarting the node cannot advance the chain
    assert "round 5 has not advanced for 180s" in events[0].evidence
    assert kinds(watch, 400, at_round(5)) == []  # reported once
    assert kinds(watch, 401, at_round(6)) == []
    assert kinds(watch, 581, at_round(6)) == ["chain_round_stalled"]  # re-armed by the advance


def test_stall_time_counts_only_while_the_node_runs() -> None:
    watch = ChainWatch(stall_rounds=3, round_length=60)
    watch.observe(0, at_round(5))
    assert kinds(watch, 500, at_round(5)) == []  # node not running
    watch.node_running(500, True)
    assert kinds(watch, 679, at_round(5)) == []
    assert kinds(watch, 680, at_round(5)) == ["chain_round_stalled"]


def test_the_round_length_is_learned_from_advances_seen() -> None:
    watch = ChainWatch(stall_rounds=3)
    watch.node_running(0, True)
    watch.observe(0, at_round(1))  # first look: not an advance, its time is no boundary
    assert watch.round_length() is None
    watch.observe(10, at_round(2))
    assert watch.round_length() is None
    watch.observe(40, at_round(3))
    watch.observe(70, at_round(4))
    assert watch.round_length() == 30
    assert kinds(watch, 159, at_round(4)) == []
    assert kinds(watch, 160, at_round(4)) == ["chain_round_stalled"]


def test_without_a_round_length_nothing_is_judged_a_stall() -> None:
    watch = ChainWatch(stall_rounds=3)
    watch.node_running(0, True)
    watch.observe(0, at_round(1))
    assert kinds(watch, 10_000, at_round(1)) == []


def test_a_contract_that_stops_answering_is_reported() -> None:
    watch = ChainWatch()
    watch.observe(0, at_round(19))
    silent = ChainReading(True, "rpc: contract 0x..: the contract returned nothing", 685685, 3, contract_error="the contract returned nothing")
    assert kinds(watch, 1, silent) == ["chain_contract_silent"]
    assert kinds(watch, 2, silent) == []


def test_the_contract_address_comes_from_the_nodes_own_env() -> None:
    assert resolve_contract("", {"SWARM_CONTRACT": ADDRESS}, {}) == ADDRESS
    assert resolve_contract("", {}, {"SWARM_CONTRACT": ADDRESS}) == ADDRESS
    assert resolve_contract("", {"SWARM_CONTRACT": "not-an-address"}, {}) == ""
    assert resolve_contract("0x" + "1" * 40, {"SWARM_CONTRACT": ADDRESS}, {}) == "0x" + "1" * 40

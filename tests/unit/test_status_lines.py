"""The p2pd and chain lines of `swarmd status` and the status page."""

from __future__ import annotations

from swarmd.cli import render_status
from swarmd.status_lines import chain_line, p2pd_line


def test_p2pd_line_says_dead_with_the_evidence() -> None:
    line = p2pd_line({"p2pd_alive": False, "p2pd_pid": 7, "p2pd_evidence": "the node's p2pd (pid 7) is gone"})
    assert line == "DEAD: the node's p2pd (pid 7) is gone"


def test_p2pd_line_for_a_live_and_a_starting_daemon() -> None:
    live = {"p2pd_alive": True, "p2pd_pid": 7, "dht_pid": 6, "p2pd_answered": True}
    assert p2pd_line(live) == "pid 7, DHT process 6, answers"
    assert p2pd_line({**live, "p2pd_alive": None}) == "pid 7, DHT process 6, answers (starting)"
    assert p2pd_line({}) == "-"


def test_chain_line_shows_the_round_or_why_not() -> None:
    ok = {"enabled": True, "rpc_ok": True, "chain_id": 685685, "block": 12, "round": 19, "stage": 0, "contract": "0xab"}
    assert chain_line(ok) == "round 19 stage 0, RPC ok, chain 685685, block 12"
    assert chain_line({"enabled": True, "rpc_ok": False, "detail": "http://rpc: ConnectionError"}) == "RPC DOWN: http://rpc: ConnectionError"
    assert chain_line({"enabled": False}) == "not probed ([chain] rpc_url unset)"
    assert chain_line({**ok, "round": None, "contract": ""}) == "RPC ok, chain 685685, block 12"


def test_status_table_has_p2pd_and_chain_rows() -> None:
    text = render_status({"state": "running", "dht": {"p2pd_alive": False, "p2pd_evidence": "gone"},
                          "chain": {"enabled": True, "rpc_ok": False, "detail": "down"}})
    assert "p2pd           DEAD: gone" in text
    assert "chain          RPC DOWN: down" in text
    assert "chain queue    -" in text


def test_status_table_shows_the_trainers_queued_chain_submissions() -> None:
    assert "chain queue    3 submissions waiting" in render_status({"state": "running", "chain_queue": 3})

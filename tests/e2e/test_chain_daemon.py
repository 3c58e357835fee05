"""The chain as the real `swarmd run` reads it, on a real local chain (anvil): the
coordinator's round in `swarmd status`, the status page and /metrics; the RPC going
away is an event and shows; a reset chain that puts the round back restarts the node
(an upstream node would wait for its old round for ever)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from swarmd.control import request
from swarmd.errors import SwarmdError
from tests.anvil import Chain
from tests.e2e.daemon import Daemon, fake, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


@pytest.fixture
def chain() -> Iterator[Chain]:
    c = Chain()
    yield c
    c.stop()


@pytest.fixture
def daemon(tmp_path: Path, chain: Chain) -> Iterator[Daemon]:
    extra = (
        "[web]\nenabled = true\nport = 0\n"
        f'[chain]\nrpc_url = "{chain.url}"\ncontract = "{chain.address}"\ninterval = 1\ntimeout = 1\n'
    )
    d = Daemon(tmp_path, write_config(tmp_path, fake("hang"), extra=extra))
    yield d
    d.close()


def chain_status(d: Daemon, pred: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(SwarmdError):
            seen = request(d.tmp / "state" / "swarmd.sock", "status").get("status", {}).get("chain") or {}
        if pred(seen):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"chain status not reached within {timeout}s; last: {seen}")


def metric(url: str, name: str) -> float:
    text = requests.get(url + "metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


def test_the_chain_round_shows_in_status_page_and_metrics(chain: Chain, daemon: Daemon) -> None:
    chain.advance_to(4)
    seen = chain_status(daemon, lambda c: c.get("round") == 4)
    assert (seen["rpc_ok"], seen["chain_id"], seen["stage"]) == (True, 685685, 0)
    url = daemon.wait_event(lambda e: e.get("event") == "web_started" and "url" in e)["url"]
    assert "round 4 stage 0, RPC ok, chain 685685" in requests.get(url, timeout=10).text
    assert metric(url, "swarmd_chain_round") == 4
    assert metric(url, "swarmd_chain_rpc_up") == 1


def test_rpc_down_is_an_event_and_a_reset_chain_restarts_the_node(chain: Chain, daemon: Daemon) -> None:
    chain.advance_to(5)
    first = daemon.wait_event(lambda e: e.get("event") == "child_started")
    chain_status(daemon, lambda c: c.get("round") == 5)
    chain.stop()
    down = daemon.wait_event(lambda e: e.get("event") == "chain_rpc_down", 30)
    assert down["level"] == "warning"
    assert chain.url.removeprefix("http://") in down["evidence"]
    chain_status(daemon, lambda c: c.get("rpc_ok") is False)
    chain.start()  # reset: round 0, the coordinator redeployed at the same address
    restart = daemon.wait_event(lambda e: e.get("event") == "decision" and e.get("action") == "restart", 30)
    assert restart["reason"] == "chain_round_backwards"
    assert "from 5 to 0" in restart["evidence"]
    daemon.wait_event(lambda e: e.get("event") == "chain_rpc_up")
    daemon.wait_event(lambda e: e.get("event") == "child_started" and e.get("pid") != first["pid"], 30)

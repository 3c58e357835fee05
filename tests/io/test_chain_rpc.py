"""The chain probe against a real local chain (anvil from the npm registry, installed
by scripts/setup.sh into tools/node_modules): chain id, block, the coordinator's round
and stage by selector, an RPC that goes away, and a chain reset that puts the round
back (judged by ChainWatch)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from swarmd.chain_rpc import read_chain
from swarmd.chain_watch import ChainWatch
from tests.anvil import CHAIN_ID, CONTRACT, Chain

pytestmark = [pytest.mark.io, pytest.mark.timeout(120)]

@pytest.fixture
def chain() -> Iterator[Chain]:
    c = Chain()
    yield c
    c.stop()


def test_reads_chain_id_block_round_and_stage(chain: Chain) -> None:
    chain.coordinator(19, 1)
    reading = read_chain(chain.url, CONTRACT, 5.0)
    assert reading.ok, reading.detail
    assert reading.chain_id == CHAIN_ID
    assert reading.block is not None
    assert reading.block >= 1
    assert (reading.round, reading.stage) == (19, 1)
    assert "round 19 stage 1" in reading.detail


def test_without_a_contract_it_still_proves_the_rpc(chain: Chain) -> None:
    reading = read_chain(chain.url, "", 5.0)
    assert reading.ok
    assert reading.round is None


def test_an_rpc_that_is_gone_is_not_ok_and_the_url_keeps_its_secrets(chain: Chain) -> None:
    chain.stop()
    url = f"http://user:hunter2@127.0.0.1:{chain.port}/v2/KEY123?apikey=zzz"
    started = time.monotonic()
    reading = read_chain(url, CONTRACT, 2.0)
    assert time.monotonic() - started < 4.0
    assert not reading.ok
    assert f"127.0.0.1:{chain.port}" in reading.detail
    for secret in ("hunter2", "zzz", "user:"):
        assert secret not in reading.detail


def test_a_reset_chain_puts_the_round_back_and_the_watch_says_so(chain: Chain) -> None:
    watch = ChainWatch()
    chain.coordinator(19)
    assert [e.kind for e in watch.observe(0, read_chain(chain.url, CONTRACT, 5.0))] == []
    chain.stop()
    assert [e.kind for e in watch.observe(1, read_chain(chain.url, CONTRACT, 2.0))] == ["chain_rpc_down"]
    chain.start()
    silent = read_chain(chain.url, CONTRACT, 5.0)  # a fresh chain: no contract there yet
    assert silent.ok
    assert "returned nothing" in silent.contract_error
    assert [e.kind for e in watch.observe(2, silent)] == ["chain_rpc_up", "chain_contract_silent"]
    chain.coordinator(0)
    watch.observe(3, read_chain(chain.url, CONTRACT, 5.0))
    events = watch.observe(4, read_chain(chain.url, CONTRACT, 5.0))
    assert [e.kind for e in events] == ["chain_round_backwards"]
    assert "from 19 to 0" in events[0].evidence

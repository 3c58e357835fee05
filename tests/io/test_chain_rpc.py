"""The chain probe against a real local chain running our SwarmCoordinator
(tests/anvil.py): chain id, block, the coordinator's round and stage by selector, an
RPC that goes away, and a chain reset that puts the round back (judged by ChainWatch)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from swarmd.chain_rpc import read_chain
from swarmd.chain_watch import ChainWatch
from tests.anvil import CHAIN_ID, Chain

pytestmark = [pytest.mark.io, pytest.mark.timeout(120)]

@pytest.fixture
def chain() -> Iterator[Chain]:
    c = Chain()
    yield c
    c.stop()


def test_reads_chain_id_block_round_and_stage(chain: Chain) -> None:
    chain.advance_to(3)
    reading = read_chain(chain.url, chain.address, 5.0)
    assert reading.ok, reading.detail
    assert reading.chain_id == CHAIN_ID
    assert reading.block is not None
    assert reading.block >= 3
    assert (reading.round, reading.stage) == (3, 0)
    assert "round 3 stage 0" in reading.detail


def test_without_a_contract_it_still_proves_the_rpc(chain: Chain) -> None:
    reading = read_chain(chain.url, "", 5.0)
    assert reading.ok
    assert reading.round is None


def test_an_rpc_that_is_gone_is_not_ok_and_the_url_keeps_its_secrets(chain: Chain) -> None:
    chain.stop()
    url = f"http://user:hunter2@127.0.0.1:{chain.port}/v2/KEY123?apikey=zzz"
    started = time.monotonic()
    reading = read_chain(url, chain.address, 2.0)
    assert time.monotonic() - started < 4.0
    assert not reading.ok
    assert f"127.0.0.1:{chain.port}" in reading.detail
    for secret in ("hunter2", "zzz", "user:"):
        assert secret not in reading.detail


def test_a_reset_chain_puts_the_round_back_and_the_watch_says_so(chain: Chain) -> None:
    watch = ChainWatch()
    chain.advance_to(5)
    address = chain.address
    assert [e.kind for e in watch.observe(0, read_chain(chain.url, address, 5.0))] == []
    chain.stop()
    assert [e.kind for e in watch.observe(1, read_chain(chain.url, address, 2.0))] == ["chain_rpc_down"]
    chain.start()  # a fresh chain, the coordinator redeployed at the same address
    assert chain.address == address
    watch.observe(3, read_chain(chain.url, address, 5.0))
    events = watch.observe(4, read_chain(chain.url, address, 5.0))
    assert [e.kind for e in events] == ["chain_round_backwards"]
    assert "from 5 to 0" in events[0].evidence


def test_an_address_without_the_coordinator_is_reported_not_an_outage(chain: Chain) -> None:
    watch = ChainWatch()
    watch.observe(0, read_chain(chain.url, chain.address, 5.0))
    nobody = "0x" + "00" * 19 + "01"
    silent = read_chain(chain.url, nobody, 5.0)
    assert silent.ok
    assert silent.round is None
    assert "returned nothing" in silent.contract_error
    assert [e.kind for e in watch.observe(1, silent)] == ["chain_contract_silent"]

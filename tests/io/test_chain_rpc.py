"""The chain probe against a real local chain (anvil from the npm registry, installed
by scripts/setup.sh into tools/node_modules): chain id, block, the coordinator's round
and stage by selector, an RPC that goes away, and a chain reset that puts the round
back (judged by ChainWatch)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from swarmd.chain_rpc import read_chain
from swarmd.chain_watch import ChainWatch

pytestmark = [pytest.mark.io, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
ANVIL = REPO / "tools" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
CHAIN_ID = 685685
CONTRACT = "0x00000000000000000000000000000000c0ffee01"
# currentStage() (0x5bf5d54c) returns storage slot 1, any other call slot 0
# (currentRound): sload(eq(selector, 0x5bf5d54c)), returned as one 32-byte word.
RUNTIME = "0x600035" "60e01c" "635bf5d54c14" "54" "600052" "60206000f3"


def _anvil_path() -> str:
    if ANVIL.exists():
        return str(ANVIL)
    found = shutil.which("anvil")
    if found is None:
        pytest.skip(f"{ANVIL} missing: run bash scripts/setup.sh (needs npm)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Chain:
    """One anvil process on a loopback port; `restart` gives a fresh chain (block 0,
    no contracts) on the same URL, as a reset testnet or a restarted devnet does."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        argv = [_anvil_path(), "--port", str(self.port), "--chain-id", str(CHAIN_ID), "--silent"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.rpc("eth_chainId")
            except requests.RequestException:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.1)
            else:
                return

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def rpc(self, method: str, *params: object) -> object:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        answer = requests.post(self.url, json=body, timeout=5).json()
        assert "error" not in answer, answer
        return answer["result"]

    def coordinator(self, rnd: int, stage: int = 0) -> None:
        self.rpc("anvil_setCode", CONTRACT, RUNTIME)
        self.rpc("anvil_setStorageAt", CONTRACT, "0x" + "0" * 64, f"0x{rnd:064x}")
        self.rpc("anvil_setStorageAt", CONTRACT, "0x" + "0" * 63 + "1", f"0x{stage:064x}")
        self.rpc("evm_mine")


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

"""A real local chain for tests: anvil from the npm registry (installed by
scripts/setup.sh into tools/node_modules), on a free loopback port, with a minimal
coordinator whose currentRound()/currentStage() the test sets by hand."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
ANVIL = REPO / "tools" / "node_modules" / ".bin" / "anvil"  # scripts/chain-tools.sh installs it
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



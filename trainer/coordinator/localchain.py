"""A local EVM chain (anvil from tools/node_modules) for tests, the demo and benchmarks.

anvil serves JSON-RPC on loopback with instant mining and ten funded development
accounts; `fund` gives any address ETH for gas through anvil's `anvil_setBalance`, so a
node's freshly created key can register and submit without a faucet.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

import requests

ROOT = Path(__file__).resolve().parents[2]
ANVIL = ROOT / "tools" / "node_modules" / ".bin" / "anvil"
DEFAULT_CHAIN_ID = 685685
# anvil's first development account: a publicly known key that only ever holds test ETH.
DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rpc(url: str, method: str, params: list[object], timeout: float = 5.0) -> object:
    resp = requests.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=timeout)
    resp.raise_for_status()
    body = resp.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body.get("result")


class Anvil:
    """One anvil process on a free loopback port; stopped (and reaped) on exit."""

    def __init__(self, *, chain_id: int = DEFAULT_CHAIN_ID, port: int | None = None,
                 block_time: float | None = None, log_path: Path | None = None,
                 state_path: Path | None = None) -> None:
        self.chain_id = chain_id
        self.port = port or free_port()
        self.block_time = block_time
        self.log_path = log_path
        # anvil's --state: loaded at start if present, written when anvil stops (SIGTERM),
        # so a stop + start keeps the chain (a real RPC outage), unlike a fresh chain.
        self.state_path = state_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Anvil:
        if not ANVIL.exists():
            raise FileNotFoundError(f"{ANVIL} is missing; run `bash scripts/setup.sh` (installs tools/node_modules)")
        argv = [str(ANVIL), "--host", "127.0.0.1", "--port", str(self.port), "--chain-id", str(self.chain_id)]
        if self.block_time:
            argv += ["--block-time", str(self.block_time)]
        if self.state_path is not None:
            argv += ["--state", str(self.state_path)]
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"anvil exited {self.proc.returncode} at start (port {self.port})")
            with contextlib.suppress(requests.RequestException):
                rpc(self.url, "eth_chainId", [], timeout=1.0)
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"anvil did not answer on {self.url} within {timeout:g}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def fund(self, address: str, wei: int = 10**21) -> None:
        rpc(self.url, "anvil_setBalance", [address, hex(wei)])

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class RpcGate:
    """A TCP forwarder in front of an RPC port that can be shut (connections refused,
    open ones cut) and reopened on the same port: an RPC outage without losing chain state."""

    def __init__(self, upstream_port: int, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

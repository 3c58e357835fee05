"""Look at a node's DHT from outside: find its p2pd and DHT process in the node's own
process tree, and ask p2pd over its control socket whether it still answers.

Upstream nodes write no heartbeat and say nothing when their p2pd dies (genrl logs
"continuing with local state" and trains alone), so swarmd cannot wait for the node
to report it. Only the node's own tree counts: other swarms' p2pd daemons run on the
same host, and their health says nothing about ours. Nothing here decides; the pure
`liveness` module does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from swarmd.p2pd import is_p2pd, listen_sockets

# Request{type: IDENTIFY}, length-prefixed as the daemon's control protocol wants it
# (hivemind p2p_daemon_bindings: an unsigned-varint length, then the protobuf bytes).
_IDENTIFY = b"\x02\x08\x00"
_MAX_ANSWER = 64 * 1024  # an IDENTIFY answer is a peer id and a few multiaddrs
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class TreeProc:
    """A process of the node's tree with its parent: p2pd's parent is the DHT process."""

    pid: int
    ppid: int
    create_time: float
    name: str
    cmdline: tuple[str, ...]
    stopped: bool = False  # state T: SIGSTOPped


@dataclass(frozen=True, slots=True)
class DhtParts:
    """The node's DHT as seen in its tree. `p2pd` is the oldest daemon (the node's own;
    a younger one is hivemind's short identity check), `dht` is its parent when that is
    not the root (hivemind's forked DHT process), `control` its `-listen` socket."""

    p2pd: TreeProc | None = None
    dht: TreeProc | None = None
    control: Path | None = None
    identity: Path | None = None  # p2pd's `-id=` file: the node's swarm.pem


@dataclass(frozen=True, slots=True)
class P2pdAnswer:
    ok: bool
    detail: str
    peer_id: str = ""


def tree_procs(root_pid: int, create_time: float | None = None) -> list[TreeProc]:
    """The root and its descendants now, zombies left out; empty when the root is gone
    or its pid now names another process."""
    try:
        root = psutil.Process(root_pid)
        if create_time is not None and abs(root.create_time() - create_time) > 1.0:
            return []
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    found: list[TreeProc] = []
    for proc in procs:
        try:
            with proc.oneshot():
                status = proc.status()
                if status == psutil.STATUS_ZOMBIE:
                    continue
                stopped = status == psutil.STATUS_STOPPED
                found.append(TreeProc(proc.pid, proc.ppid(), proc.create_time(), proc.name(), tuple(proc.cmdline()), stopped))
        except psutil.Error:
            continue  # ended while we looked
    return found


def pick_dht_parts(procs: Sequence[TreeProc], root_pid: int) -> DhtParts:
    """Which of the tree's processes are the node's p2pd and DHT process."""
    daemons = sorted((p for p in procs if p.pid != root_pid and is_p2pd(p.name, p.cmdline)), key=lambda p: p.create_time)
    if not daemons:
        return DhtParts()
    p2pd = daemons[0]
    parent = next((p for p in procs if p.pid == p2pd.ppid), None)
    dht = parent if parent is not None and parent.pid != root_pid else None
    sockets = listen_sockets(p2pd.cmdline)  # the `-listen` socket comes first
    return DhtParts(p2pd, dht, sockets[0] if sockets else None, _identity_arg(p2pd.cmdline))


def _identity_arg(argv: Sequence[str]) -> Path | None:
    for arg in argv[1:]:
        if arg.startswith("-id="):
            return Path(arg.removeprefix("-id="))
    return None


def ask_p2pd(control: Path, timeout: float) -> P2pdAnswer:
    """Send IDENTIFY on the control socket and wait for the answer. A stopped or wedged
    daemon still accepts the connection (the kernel queues it), so only a real answer
    within `timeout` counts as alive."""
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(control))
            sock.sendall(_IDENTIFY)
            body = _read_message(sock, deadline)
    except TimeoutError:
        return P2pdAnswer(False, f"{control}: no answer to IDENTIFY within {timeout:g}s")
    except OSError as err:
        return P2pdAnswer(False, f"{control}: {err.strerror or type(err).__name__}")
    except ValueError as err:
        return P2pdAnswer(False, f"{control}: bad answer: {err}")
    fields = _fields(body)
    if fields.get(1, [0])[0] != 0:
        return P2pdAnswer(False, f"{control}: IDENTIFY answered with an error")
    identify = fields.get(4, [b""])[0]
    peer = _fields(identify).get(1, [b""])[0] if isinstance(identify, bytes) else b""
    peer_id = _base58(peer) if isinstance(peer, bytes) and peer else ""
    return P2pdAnswer(True, f"{control}: answered IDENTIFY", peer_id)


def _read_message(sock: socket.socket, deadline: float) -> bytes:
    size = 0
    for shift in range(0, 35, 7):
        byte = _recv_exact(sock, 1, deadline)[0]
        size |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    else:
        raise ValueError("length prefix too long")
    if size > _MAX_ANSWER:
        raise ValueError(f"{size} bytes is more than an IDENTIFY answer can be")
    return _recv_exact(sock, size, deadline)


def _recv_exact(sock: socket.socket, size: int, deadline: float) -> bytes:
    data = b""
    while len(data) < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("connection closed mid-answer")
        data += chunk
    return data


def _fields(body: bytes) -> dict[int, list[int | bytes]]:
    """Protobuf wire format, the two wire types a Response uses (varint and bytes)."""
    out: dict[int, list[int | bytes]] = {}
    pos = 0
    while pos < len(body):
        key, pos = _varint(body, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(body, pos)
            out.setdefault(number, []).append(value)
        elif wire == 2:
            length, pos = _varint(body, pos)
            if pos + length > len(body):
                raise ValueError("field runs past the message")
            out.setdefault(number, []).append(body[pos : pos + length])
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 64, 7):
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError("varint too long")


def _base58(raw: bytes) -> str:
    """libp2p prints peer ids (multihash bytes) in base58btc."""
    number = int.from_bytes(raw, "big")
    text = ""
    while number:
        number, rem = divmod(number, 58)
        text = _B58[rem] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


# --------------------------------------------------------------------------- the thread


@dataclass(frozen=True, slots=True)
class DhtLook:
    """What one look at the node's tree found (posted to the supervisor's loop)."""

    gen: int
    at: float  # monotonic time the look started
    parts: DhtParts
    answer: P2pdAnswer | None  # None: no control socket to ask
    tree_alive: bool  # False: the root was gone, the look proves nothing
    pids: frozenset[int] = frozenset()  # the tree's processes at this look


class DhtWatcher:
    """Looks at the watched tree every `interval` on its own thread (an unanswered
    control socket costs `timeout`, which must not hold up the supervisor's loop) and
    hands each `DhtLook` to `post`."""

    def __init__(self, post: Callable[[DhtLook], None], *, interval: float = 1.0, timeout: float = 2.0) -> None:
        self._post = post
        self._interval = interval
        self._timeout = timeout
        self._target: tuple[int, int, float] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, gen: int, pid: int, create_time: float) -> None:
        with self._lock:
            self._target = (gen, pid, create_time)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="dht-watch", daemon=True)
            self._thread.start()

    def unwatch(self) -> None:
        with self._lock:
            self._target = None

    def stop(self) -> None:
        self._stop.set()
        self.unwatch()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                target = self._target
            began = time.monotonic()
            if target is not None:
                seen = look(*target, self._timeout)
                self._post(seen)
                if not seen.tree_alive:
                    self._forget(target)  # that pid never comes back as the same process
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - began)))

    def _forget(self, target: tuple[int, int, float]) -> None:
        with self._lock:
            if self._target == target:
                self._target = None


def look(gen: int, pid: int, create_time: float, timeout: float) -> DhtLook:
    at = time.monotonic()
    procs = tree_procs(pid, create_time)
    parts = pick_dht_parts(procs, pid)
    answer = ask_p2pd(parts.control, timeout) if parts.control is not None else None
    return DhtLook(gen, at, parts, answer, bool(procs), frozenset(p.pid for p in procs))

"""The unix control socket: `swarmd status|restart|reload|stop` talk to a running daemon.

One JSON request line in, one JSON reply line out. `status` reads the published
snapshot, `config` the config in force (flat, secrets digested: what
`check-config --diff` compares against); the other verbs only post an event to the supervisor's queue (they never
touch its state directly) and reply that the request was queued.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmd.errors import ControlError

VERBS = ("status", "config", "restart", "reload", "stop")
_MAX_REQUEST = 4096


@dataclass(frozen=True, slots=True)
class ControlRequest:
    verb: str


class ControlServer:
    def __init__(
        self,
        path: Path,
        snapshot: Callable[[], Mapping[str, Any]],
        post: Callable[[ControlRequest], None],
        running_config: Callable[[], Mapping[str, Any]] = dict,
    ) -> None:
        self._path = path
        self._snapshot = snapshot
        self._post = post
        self._running_config = running_config
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # a stale socket of a dead daemon; the pid file guards liveness
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(str(self._path))
        finally:
            os.umask(old_umask)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="swarmd-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None  # noqa: S101 - set in start() before the thread runs
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                with contextlib.suppress(OSError):
                    conn.sendall(self._answer(_read_line(conn)) + b"\n")

    def _answer(self, raw: bytes) -> bytes:
        try:
            req = json.loads(raw)
            verb = req.get("verb") if isinstance(req, dict) else None
        except ValueError:
            verb = None
        if verb not in VERBS:
            return _dump({"ok": False, "error": f"unknown verb; use one of {', '.join(VERBS)}"})
        if verb == "status":
            return _dump({"ok": True, "status": dict(self._snapshot())})
        if verb == "config":
            return _dump({"ok": True, "config": dict(self._running_config())})
        self._post(ControlRequest(str(verb)))
        return _dump({"ok": True, "queued": verb})


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while b"\n" not in buf and len(buf) < _MAX_REQUEST:
        chunk = conn.recv(1024)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, default=str).encode()


def request(path: Path, verb: str, timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to a running daemon; ControlError if nobody answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"verb": verb}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError) as err:
        raise ControlError(
            f"{path}: no swarmd is listening ({err.strerror}); fix: start it with `swarmd run`, or pass the --config it runs with"
        ) from None
    except OSError as err:
        raise ControlError(f"{path}: control request failed: {err}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError(f"{path}: garbled reply from swarmd") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: garbled reply from swarmd")
    return reply

"""Status page, `/api/status`, `/health` and `/metrics`, served from a read-only snapshot.

stdlib `ThreadingHTTPServer` in a daemon thread: four routes do not need a framework,
and a slow or stuck browser must never block the supervisor's loop (each request gets
its own thread and a socket timeout). The server never changes supervisor state; it
only calls `snapshot()`, which the supervisor makes cheap and thread-safe.

The page is self-contained (nodes often have no internet): HTML, CSS and a small script
from `swarmd/static/`. Log lines are untrusted, so the server HTML-escapes what it
renders, the JSON escapes `<`, `>` and `&`, the script writes only with `textContent`,
and a Content-Security-Policy forbids inline scripts outright.
"""

from __future__ import annotations

import enum
import html
import json
import math
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import PurePath
from string import Template
from typing import cast

import structlog

from swarmd.metrics import Metrics
from swarmd.status_lines import chain_line, p2pd_line

# The JSON carries at most this many history entries; the page draws fewer. With 10k
# restarts in the supervisor's history the response stays a few tens of KB.
MAX_HISTORY = 500

Snapshot = Callable[[], Mapping[str, object]]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_log = structlog.get_logger("swarmd.web")


def _load_static() -> tuple[Template, dict[str, bytes]]:
    base = resources.files("swarmd") / "static"
    page = Template((base / "index.html").read_text(encoding="utf-8"))
    assets = {name: (base / name).read_bytes() for name in _STATIC_TYPES}
    return page, assets


def _json_default(o: object) -> object:
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, PurePath):
        return str(o)
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    return str(o)


def status_json(snap: Mapping[str, object]) -> bytes:
    """The snapshot as JSON, histories cut to the last MAX_HISTORY entries.

    `<`, `>` and `&` are written as \\u escapes (they only occur inside strings), so the
    body is inert even if a browser is tricked into reading it as HTML.
    """
    data = dict(snap)
    for key in ("reward_history", "restart_history"):
        hist = data.get(key)
        if isinstance(hist, (list, tuple)):
            data[key] = list(hist[-MAX_HISTORY:])
    try:
        text = json.dumps(
            data, default=_json_default, allow_nan=False, separators=(",", ":")
        )
    except ValueError:  # NaN/inf somewhere (e.g. a reward): JSON has no such numbers
        text = json.dumps(_finite(data), default=_json_default, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode("utf-8")


def _finite(o: object) -> object:
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Mapping):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _state_name(snap: Mapping[str, object]) -> str:
    state = snap.get("state")
    return str(state.value if isinstance(state, enum.Enum) else state)


def is_healthy(snap: Mapping[str, object]) -> bool:
    """Healthy means running AND progressing: a trainer that is up but stuck is not."""
    return _state_name(snap) == "running" and snap.get("progressing") is True


def _mapping(x: object) -> Mapping[str, object]:
    return x if isinstance(x, Mapping) else {}


def _text(x: object) -> str:
    if x is None or x == "":
        return "—"
    if isinstance(x, float):
        return "—" if math.isnan(x) else f"{x:g}"
    return str(x)


def _duration(x: object) -> str:
    if not isinstance(x, (int, float)) or math.isnan(x):
        return "—"
    s = max(0, int(x))
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m {s % 60}s" if m else f"{s}s"


def _when(at: object) -> str:
    if isinstance(at, (int, float)) and math.isfinite(at):
        return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return _text(at)


def page_fields(snap: Mapping[str, object]) -> dict[str, str]:
    """Display text for the first paint, before the script's first poll (and for
    anyone reading without JavaScript). Escaped by the caller."""
    dec = snap.get("last_decision")
    dec = dec if isinstance(dec, Mapping) else {}
    reasons = snap.get("restarts_by_reason")
    top = ""
    if isinstance(reasons, Mapping) and reasons:
        top = "most: " + str(max(reasons.items(), key=lambda kv: kv[1])[0])
    rewards = snap.get("reward_history")
    reward: object = None
    if isinstance(rewards, (list, tuple)) and rewards:
        reward = rewards[-1][1]
    age = snap.get("last_progress_age_s")
    return {
        "state": _state_name(snap),
        "progressing": "making progress"
        if snap.get("progressing")
        else "not progressing",
        "pid": _text(snap.get("pid")),
        "uptime": _duration(snap.get("uptime_s")),
        "restarts": _text(snap.get("restarts")),
        "top_reason": top,
        "round_stage": f"{_text(snap.get('round'))} / {_text(snap.get('stage'))}",
        "progress_age": _duration(age) + " ago" if age is not None else "—",
        "peers": _text(snap.get("peers")),
        "p2pd": p2pd_line(_mapping(snap.get("dht"))),
        "chain": chain_line(_mapping(snap.get("chain"))),
        "reward": _text(reward),
        "reward_trend": "",
        "decision_action": _text(dec.get("action")),
        "decision_reason": _text(dec.get("reason")),
        "decision_at": _when(dec.get("at")),
        "decision_evidence": _text(dec.get("evidence")),
        "peer_id": _text(snap.get("peer_id")),
        "animal": _text(snap.get("animal")),
        "version": _text(snap.get("version")),
        "config_path": _text(snap.get("config_path")),
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], app: WebServer) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        super().__init__(addr, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """A browser that goes away mid-response is normal: one debug event, no
        traceback on stderr (the default)."""
        _log.debug("web_client_error", client=str(client_address))


class _Handler(BaseHTTPRequestHandler):
    # A client that connects and sends nothing gives up its thread after this long.
    timeout = 10
    server_version = "swarmd"

    def do_GET(self) -> None:
        app = cast(_Server, self.server).app
        path = self.path.split("?", 1)[0]
        try:
            status, ctype, body = app.route(path)
        except Exception as exc:  # noqa: BLE001 - a broken snapshot must not kill the thread
            _log.warning("web_snapshot_failed", path=path, error=type(exc).__name__)
            status, ctype = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json"
            body = b'{"error":"snapshot failed"}'
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default per-request stderr line: the page polls every 1.5 s."""


class WebServer:
    """Serves the status page for one supervisor on `bind:port` (port 0: ephemeral)."""

    def __init__(
        self,
        bind: str,
        port: int,
        snapshot: Snapshot,
        metrics: Metrics,
    ) -> None:
        self._bind = bind
        self._port = port
        self._snapshot = snapshot
        self._metrics = metrics
        self._page, self._assets = _load_static()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("WebServer is not started")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind now (so an address in use fails here, in the caller) and serve in a
        daemon thread."""
        if self._server is not None:
            return
        self._server = _Server((self._bind, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="swarmd-web",
            daemon=True,
        )
        self._thread.start()
        _log.info("web_started", bind=self.address[0], port=self.address[1])

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def route(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        if path in ("/", "/index.html"):
            fields = {
                k: html.escape(v) for k, v in page_fields(self._snapshot()).items()
            }
            page = self._page.safe_substitute(fields)
            return HTTPStatus.OK, "text/html; charset=utf-8", page.encode("utf-8")
        if path == "/api/status":
            return HTTPStatus.OK, "application/json", status_json(self._snapshot())
        if path == "/health":
            snap = self._snapshot()
            healthy = is_healthy(snap)
            body = json.dumps(
                {
                    "healthy": healthy,
                    "state": _state_name(snap),
                    "progressing": snap.get("progressing") is True,
                }
            ).encode()
            code = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
            return code, "application/json", body
        if path == "/metrics":
            return HTTPStatus.OK, _PROMETHEUS_TYPE, self._metrics.render()
        name = path.removeprefix("/static/")
        if name in self._assets:
            return HTTPStatus.OK, _STATIC_TYPES[name], self._assets[name]
        return HTTPStatus.NOT_FOUND, "application/json", b'{"error":"not found"}'

"""The daemon's two doors: the unix control socket and the status page / `/metrics`
web server, as parts the loop starts, reconfigures and stops. Both only read the
published snapshot or post requests; neither touches the loop's state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from swarmd.config import Config
from swarmd.config_net import WebConfig
from swarmd.control import ControlRequest, ControlServer
from swarmd.metrics import Metrics
from swarmd.parts import Kept
from swarmd.web import WebServer


class ControlEndpoint:
    """`[control] socket`. A new path is bound before the old one closes, so a
    reload never leaves the daemon unreachable; if it cannot be bound the old one
    stays and the reload says why."""

    name = "control"

    def __init__(
        self,
        config: Config,
        snapshot: Callable[[], Mapping[str, Any]],
        post: Callable[[ControlRequest], None],
        running_config: Callable[[], Mapping[str, Any]],
    ) -> None:
        self._snapshot = snapshot
        self._post = post
        self._running_config = running_config
        self.path = config.control_socket
        self._server = ControlServer(self.path, snapshot, post, running_config)

    def start(self) -> None:
        self._server.start()

    def reconfigure(self, config: Config) -> list[Kept]:
        if config.control_socket == self.path:
            return []
        server = ControlServer(config.control_socket, self._snapshot, self._post, self._running_config)
        try:
            server.start()
        except OSError as err:
            return [Kept("control.socket", f"cannot bind {config.control_socket}: {err.strerror or err}; still at {self.path}")]
        old, self._server, self.path = self._server, server, config.control_socket
        old.stop()
        return []

    def stop(self) -> None:
        self._server.stop()


class WebEndpoint:
    """`[web]`: the status page, `/metrics` and `/health`. A new bind or port is
    served before the old one closes; if it cannot be bound (port in use) the old one
    keeps serving and the reload says why."""

    name = "web"

    def __init__(self, config: Config, snapshot: Callable[[], Mapping[str, Any]], metrics: Metrics, log: Any) -> None:
        self._snapshot = snapshot
        self._metrics = metrics
        self._log = log
        self.settings = config.web
        self._server: WebServer | None = None

    def start(self) -> None:
        if self.settings.enabled and self._server is None:
            self._server = self._serve(self.settings)

    def reconfigure(self, config: Config) -> list[Kept]:
        new, old = config.web, self.settings
        if (new.enabled, new.bind, new.port) == (old.enabled, old.bind, old.port):
            self.settings = new
            return []
        server = None
        if new.enabled:
            try:
                server = self._serve(new)
            except OSError as err:
                where = f"{old.bind}:{old.port}" if self._server is not None else "nowhere"
                why = f"cannot serve on {new.bind}:{new.port}: {err.strerror or err}; still serving {where}"
                keys = [k for k in ("enabled", "bind", "port") if getattr(new, k) != getattr(old, k)]
                return [Kept(f"web.{k}", why) for k in keys]
        if self._server is not None:
            self._server.stop()
            self._log.info("web_stopped", bind=old.bind, port=old.port)
        self._server, self.settings = server, new
        return []

    def _serve(self, settings: WebConfig) -> WebServer:
        web = WebServer(settings.bind, settings.port, self._snapshot, self._metrics)
        web.start()
        self._log.info("web_started", url=f"http://{web.address[0]}:{web.address[1]}/")
        return web

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

"""The daemon's two doors: the unix control socket and the status page / `/metrics`
web server, as parts the loop starts, reconfigures and stops. Both only read the
published snapshot or post requests; neither touches the loop's state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from swarmd.config import Config
from swarmd.control import ControlRequest, ControlServer
from swarmd.metrics import Metrics
from swarmd.parts import Kept


class ControlEndpoint:
    name = "control"

    def __init__(
        self,
        config: Config,
        snapshot: Callable[[], Mapping[str, Any]],
        post: Callable[[ControlRequest], None],
    ) -> None:
        self._snapshot = snapshot
        self._post = post
        self.path = config.control_socket
        self._server = ControlServer(self.path, snapshot, post)

    def start(self) -> None:
        self._server.start()

    def reconfigure(self, config: Config) -> list[Kept]:
        return []

    def stop(self) -> None:
        self._server.stop()


class WebEndpoint:
    name = "web"

    def __init__(self, config: Config, snapshot: Callable[[], Mapping[str, Any]], metrics: Metrics, log: Any) -> None:
        self._snapshot = snapshot
        self._metrics = metrics
        self._log = log
        self.settings = config.web
        self._server: Any = None

    def start(self) -> None:
        if not self.settings.enabled or self._server is not None:
            return
        from swarmd.web import WebServer  # the page's assets load only when it serves

        web = WebServer(self.settings.bind, self.settings.port, self._snapshot, self._metrics)
        web.start()
        self._server = web
        self._log.info("web_started", url=f"http://{web.address[0]}:{web.address[1]}/")

    def reconfigure(self, config: Config) -> list[Kept]:
        return []

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

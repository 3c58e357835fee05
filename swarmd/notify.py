"""sd_notify over `NOTIFY_SOCKET`, in plain Python.

systemd's protocol is one AF_UNIX datagram of newline-separated `VAR=VALUE` lines, so a
library buys nothing. Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op, which
lets the supervisor call it unconditionally. The cadence of `WATCHDOG=1` is the
supervisor's choice; this module only says how often systemd wants it.

A send that fails (systemd restarted, socket gone, buffer full) must never take the
daemon down: the error is logged once and later failures stay quiet until a send
succeeds again.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

import structlog

_ENV_KEYS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """Copy of `env` without the notify variables.

    The trainer must not inherit them: it would be free to send READY/WATCHDOG in
    swarmd's name (NotifyAccess=main rejects it, but logs noise), and a child that
    runs its own sd_notify code would confuse the watchdog.
    """
    return {k: v for k, v in env.items() if k not in _ENV_KEYS}


def _socket_address(raw: str) -> str | None:
    """`@name` is an abstract socket (leading NUL); anything else must be a path."""
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC, or None when unset, malformed, or meant for another process."""
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID")
    # systemd sets WATCHDOG_PID so that a forked child that inherited the env does not
    # think the watchdog is its own.
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    return usec


class Notifier:
    """Sends sd_notify datagrams; `enabled` is False (and every call a no-op) outside
    systemd."""

    def __init__(
        self,
        address: str | None,
        watchdog_usec: int | None = None,
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._log = log if log is not None else structlog.get_logger("swarmd.notify")
        self._lock = threading.Lock()
        self._failing = False
        self._sock: socket.socket | None = None
        if address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            # Never block the event loop on a full receive queue: drop and log instead.
            self._sock.setblocking(False)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        log: structlog.typing.FilteringBoundLogger | None = None,
    ) -> Notifier:
        """Build from the environment systemd gave us (pass `os.environ`)."""
        address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        usec = _watchdog_usec(env) if address is not None else None
        return cls(address, usec, log)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the timeout, as sd_watchdog_enabled(3)
        recommends, or None when systemd set no watchdog."""
        if self._watchdog_usec is None or not self.enabled:
            return None
        return self._watchdog_usec / 2 / 1e6

    def ready(self, status: str = "") -> None:
        self._send({"READY": "1", "STATUS": status} if status else {"READY": "1"})

    def watchdog(self) -> None:
        self._send({"WATCHDOG": "1"})

    def status(self, text: str) -> None:
        self._send({"STATUS": text})

    def reloading(self, monotonic_usec: int) -> None:
        """Start of a reload; systemd (Type=notify-reload) matches it by CLOCK_MONOTONIC.
        Follow with `ready()` once the new config is in force."""
        self._send({"RELOADING": "1", "MONOTONIC_USEC": str(monotonic_usec)})

    def stopping(self) -> None:
        self._send({"STOPPING": "1"})

    def extend_timeout(self, usec: int) -> None:
        """Ask for more time in the current start/stop phase (e.g. a slow trainer stop)."""
        self._send({"EXTEND_TIMEOUT_USEC": str(max(0, int(usec)))})

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def _send(self, fields: Mapping[str, str]) -> None:
        # STATUS is free text: a newline would start a new (bogus) variable.
        payload = "\n".join(
            f"{k}={' '.join(v.splitlines())}" for k, v in fields.items()
        )
        with self._lock:
            if self._sock is None or self._address is None:
                return
            try:
                self._sock.sendto(payload.encode("utf-8", "replace"), self._address)
            except OSError as exc:
                if not self._failing:
                    self._failing = True
                    self._log.warning(
                        "sd_notify_failed",
                        error=f"{type(exc).__name__}: {exc.strerror or exc}",
                    )
                return
            if self._failing:
                self._failing = False
                self._log.info("sd_notify_recovered")

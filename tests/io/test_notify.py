"""sd_notify against real AF_UNIX datagram sockets, as systemd would hold them."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from swarmd.notify import Notifier, child_env

pytestmark = pytest.mark.io


@pytest.fixture(name="listener")
def _listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound SOCK_DGRAM socket on a filesystem path, like /run/systemd/notify."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield sock, str(path)
    sock.close()


def _recv(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.split("\n"))


def _no_datagram(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    return False


def test_unset_notify_socket_is_noop() -> None:
    """Without NOTIFY_SOCKET every call does nothing and nothing raises."""
    n = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled
    assert n.watchdog_interval() is None
    n.ready("x")
    n.watchdog()
    n.status("y")
    n.reloading(1)
    n.stopping()
    n.extend_timeout(5)
    n.close()


def test_path_socket_receives_ready_with_status(
    listener: tuple[socket.socket, str],
) -> None:
    """READY=1 and STATUS= arrive together in one datagram on a path socket."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    try:
        assert n.enabled
        n.ready("trainer running")
        assert _recv(sock) == {"READY": "1", "STATUS": "trainer running"}
    finally:
        n.close()


def test_each_message_has_protocol_fields(listener: tuple[socket.socket, str]) -> None:
    """WATCHDOG, STATUS, RELOADING+MONOTONIC_USEC, STOPPING and EXTEND_TIMEOUT_USEC
    are sent as systemd expects them."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    try:
        n.watchdog()
        assert _recv(sock) == {"WATCHDOG": "1"}
        n.status("degraded: 0 peers")
        assert _recv(sock) == {"STATUS": "degraded: 0 peers"}
        n.reloading(123456789)
        assert _recv(sock) == {"RELOADING": "1", "MONOTONIC_USEC": "123456789"}
        n.stopping()
        assert _recv(sock) == {"STOPPING": "1"}
        n.extend_timeout(30_000_000)
        assert _recv(sock) == {"EXTEND_TIMEOUT_USEC": "30000000"}
    finally:
        n.close()


def test_status_newlines_cannot_inject_variables(
    listener: tuple[socket.socket, str],
) -> None:
    """A log line with a newline in STATUS cannot smuggle in a READY=1 variable."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    try:
        n.status("evil\nREADY=1")
        assert _recv(sock) == {"STATUS": "evil READY=1"}
    finally:
        n.close()


def test_abstract_socket_receives_datagram() -> None:
    """An `@name` NOTIFY_SOCKET reaches the abstract-namespace socket of that name."""
    name = f"swarmd-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
    try:
        n.ready()
        assert _recv(sock) == {"READY": "1"}
    finally:
        n.close()
        sock.close()


def test_watchdog_interval_is_half_of_usec(listener: tuple[socket.socket, str]) -> None:
    """WATCHDOG_USEC=60s gives a 30 s ping interval when WATCHDOG_PID is ours."""
    _, path = listener
    n = Notifier.from_env(
        {
            "NOTIFY_SOCKET": path,
            "WATCHDOG_USEC": "60000000",
            "WATCHDOG_PID": str(os.getpid()),
        }
    )
    try:
        assert n.watchdog_interval() == 30.0
    finally:
        n.close()


@pytest.mark.parametrize(
    ("usec", "pid"),
    [("60000000", "1"), ("garbage", None), ("0", None), ("", None)],
)
def test_foreign_pid_or_bad_usec_disables_watchdog(
    listener: tuple[socket.socket, str], usec: str, pid: str | None
) -> None:
    """A WATCHDOG_PID of another process, or a malformed WATCHDOG_USEC, means no
    watchdog for us (notifications still work)."""
    _, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": usec}
    if pid is not None:
        env["WATCHDOG_PID"] = pid
    n = Notifier.from_env(env)
    try:
        assert n.enabled
        assert n.watchdog_interval() is None
    finally:
        n.close()


def test_vanished_socket_logs_once_and_never_raises(tmp_path: Path) -> None:
    """When systemd's socket disappears, sends fail silently after one warning, and a
    recovered socket is used again."""
    path = tmp_path / "gone.sock"
    n = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    try:
        with capture_logs() as logs:
            for _ in range(5):
                n.watchdog()
            n.status("still alive")
        failed = [e for e in logs if e["event"] == "sd_notify_failed"]
        assert len(failed) == 1, logs
        assert "FileNotFoundError" in failed[0]["error"]

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(2.0)
        try:
            with capture_logs() as logs:
                n.watchdog()
            assert _recv(sock) == {"WATCHDOG": "1"}
            assert [e["event"] for e in logs] == ["sd_notify_recovered"]
        finally:
            sock.close()
    finally:
        n.close()


def test_closed_notifier_sends_nothing(listener: tuple[socket.socket, str]) -> None:
    """After close() the notifier is disabled and sends are dropped."""
    sock, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    n.close()
    assert not n.enabled
    n.ready()
    assert _no_datagram(sock)


def test_child_env_strips_notify_variables() -> None:
    """The trainer's environment loses NOTIFY_SOCKET and WATCHDOG_* but keeps the rest."""
    env = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "60000000",
        "WATCHDOG_PID": "42",
        "PATH": "/usr/bin",
        "HF_HOME": "/var/lib/swarmd/hf",
    }
    assert child_env(env) == {"PATH": "/usr/bin", "HF_HOME": "/var/lib/swarmd/hf"}
    assert "NOTIFY_SOCKET" in env  # the input is not modified

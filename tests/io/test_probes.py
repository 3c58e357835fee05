"""swarmd.probes against real loopback servers, closed ports and real child trees."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from swarmd.config_net import ProbesConfig
from swarmd.domain import ProbeResult
from swarmd.heartbeat import Heartbeat
from swarmd.p2pd_probe import ask_p2pd, pick_dht_parts, tree_procs
from swarmd.probes import (
    TcpTarget,
    heartbeat_age,
    parse_tcp_target,
    probe_dns,
    probe_http,
    probe_network,
    probe_tcp,
    progress_age,
    summarise_network,
)
from swarmd.process import stop_group
from swarmd.spawn import PosixChild, PosixSpawner
from tests.conftest import PipeReader

pytestmark = pytest.mark.io


class _Handler(BaseHTTPRequestHandler):
    """GET /<status> answers with that status; /slow sleeps first."""

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(2)
        code = int(self.path.strip("/")) if self.path.strip("/").isdigit() else 200
        try:
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except BrokenPipeError:
            pass  # the probe under test gave up first (/slow), as it should

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture(scope="module")
def http_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port with a listening socket on 127.0.0.1."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        yield srv.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (just released by us)."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        return int(srv.getsockname()[1])


@pytest.mark.parametrize(("path", "ok"), [("/200", True), ("/404", True), ("/401", True), ("/503", False)])
def test_http_status_below_500_counts_as_reachable(http_base: str, path: str, ok: bool) -> None:
    """Any answer under 500 proves the network path; a 5xx does not."""
    result = probe_http(http_base + path, timeout=2)
    assert result.ok is ok
    assert result.name == "http"
    assert result.latency_ms is not None


def test_http_closed_port_fails_and_hides_credentials(closed_port: int) -> None:
    """A refused connection fails, and the detail shows the URL without user, password or query."""
    result = probe_http(f"http://user:s3cret@127.0.0.1:{closed_port}/x?token=abc", timeout=2)
    assert result.ok is False
    assert "ConnectionError" in result.detail
    assert f"127.0.0.1:{closed_port}/x" in result.detail
    assert "s3cret" not in result.detail
    assert "abc" not in result.detail
    assert "user" not in result.detail


def test_http_slow_server_fails_within_timeout(http_base: str) -> None:
    """A server that does not answer within the timeout is a failure, not a hang."""
    started = time.monotonic()
    result = probe_http(http_base + "/slow", timeout=0.3)
    assert result.ok is False
    assert "Timeout" in result.detail
    assert time.monotonic() - started < 1.5


def test_http_uses_a_given_session(http_base: str) -> None:
    """A caller's session is used and left open for reuse."""
    with requests.Session() as session:
        assert probe_http(http_base + "/200", 2, session).ok
        assert probe_http(http_base + "/200", 2, session).ok


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("1.2.3.4:31337", TcpTarget("1.2.3.4", 31337)),
        ("[::1]:8545", TcpTarget("::1", 8545)),
        ("/ip4/38.101.215.12/tcp/30002/p2p/QmQ2gEXoPJg6iMBSUFWGzAabS2VhnzuS782Y637hGjfsRJ",
         TcpTarget("38.101.215.12", 30002, socket.AF_INET)),
        ("/ip6/::1/tcp/5", TcpTarget("::1", 5, socket.AF_INET6)),
        ("/dns4/bootnode.example/tcp/443", TcpTarget("bootnode.example", 443, socket.AF_INET)),
        ("/dns/bootnode.example/tcp/443/p2p/Qm", TcpTarget("bootnode.example", 443, socket.AF_UNSPEC)),
    ],
)
def test_tcp_target_forms_parse(target: str, expected: TcpTarget) -> None:
    """host:port, bracketed IPv6 and the multiaddr forms bootstrap peers use all parse."""
    assert parse_tcp_target(target) == expected


@pytest.mark.parametrize("target", ["nohost", "host:", "host:99999", "/ip4/1.2.3.4/udp/5/quic", "/ip4/1.2.3.4"])
def test_bad_tcp_target_fails_probe_with_reason(target: str) -> None:
    """A target that is not host:port or a TCP multiaddr is a failed probe naming it."""
    result = probe_tcp(target, timeout=0.5)
    assert result.ok is False
    assert target in result.detail


def test_tcp_reaches_listener_by_address_and_multiaddr(listener: int) -> None:
    """A listening port is reachable as host:port, /ip4 and /dns4 multiaddr."""
    for target in (f"127.0.0.1:{listener}", f"/ip4/127.0.0.1/tcp/{listener}/p2p/QmPeer", f"/dns4/localhost/tcp/{listener}"):
        assert probe_tcp(target, timeout=2).ok is True, target


def test_tcp_closed_port_is_refused(closed_port: int) -> None:
    """A port with no listener fails with the refusal in the detail."""
    result = probe_tcp(f"127.0.0.1:{closed_port}", timeout=2)
    assert result.ok is False
    assert "refused" in result.detail.lower()


def test_dns_resolves_localhost_and_fails_invalid_within_timeout() -> None:
    """localhost resolves; a name under .invalid fails, and the failure is bounded."""
    assert probe_dns("localhost", timeout=2).ok is True
    started = time.monotonic()
    result = probe_dns("no-such-host.invalid", timeout=1)
    assert result.ok is False
    assert "no-such-host.invalid" in result.detail
    assert time.monotonic() - started < 2.5


def test_network_with_nothing_configured_is_not_applicable() -> None:
    """No checks configured gives ok=None, not a pass or a failure."""
    assert probe_network(ProbesConfig()).ok is None


def test_network_one_reachable_bootstrap_peer_suffices(http_base: str, listener: int, closed_port: int) -> None:
    """With a URL up and one of two TCP peers up, the network is ok."""
    cfg = ProbesConfig(urls=(http_base + "/200",), tcp=(f"127.0.0.1:{closed_port}", f"127.0.0.1:{listener}"),
                       dns=("localhost",), timeout=2)
    result = probe_network(cfg)
    assert result.ok is True, result.detail


def test_network_failing_url_is_named(http_base: str, listener: int) -> None:
    """A 5xx URL fails the network probe and the detail names that URL."""
    cfg = ProbesConfig(urls=(http_base + "/200", http_base + "/502"), tcp=(f"127.0.0.1:{listener}",), timeout=2)
    result = probe_network(cfg)
    assert result.ok is False
    assert "/502: HTTP 502" in result.detail
    assert "/200" not in result.detail


def test_network_all_peers_down_names_each(closed_port: int) -> None:
    """When no TCP peer answers, the probe fails naming every peer, in bounded time."""
    peers = (f"127.0.0.1:{closed_port}", f"/ip4/127.0.0.1/tcp/{closed_port}")
    started = time.monotonic()
    result = probe_network(ProbesConfig(tcp=peers, timeout=1))
    assert result.ok is False
    assert all(p in result.detail for p in peers)
    assert time.monotonic() - started < 3


def test_summary_requires_every_url_and_dns_but_any_peer() -> None:
    """The summary table: URLs/DNS are all required, TCP peers are alternatives."""
    up, down = ProbeResult("tcp", True, "a"), ProbeResult("tcp", False, "b")
    assert summarise_network([up, down]).ok is True
    assert summarise_network([down, down]).ok is False
    assert summarise_network([up, ProbeResult("dns", False, "x: gone")]).detail == "x: gone"
    assert summarise_network([ProbeResult("http", True, "u", 5.0), ProbeResult("dns", True, "d", 9.0)]).latency_ms == 9.0


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[list[str]], PosixChild]]:
    children: list[PosixChild] = []

    def run(argv: list[str]) -> PosixChild:
        child = PosixSpawner().spawn(argv, dict(os.environ), tmp_path)
        children.append(child)
        return child

    yield run
    for child in children:
        stop_group(child, term_timeout=2)
        child.close()


def test_the_fake_p2pd_is_found_in_its_tree_only_and_answers_identify(
    spawn: Callable[[list[str]], PosixChild], fake_argv: Callable[..., list[str]], tmp_path: Path
) -> None:
    """The fake daemon other tests use looks like p2pd to swarmd's DHT watch: found in
    the trainer's tree (not in another), and answering its control socket."""
    sock_dir = Path(tempfile.mkdtemp(prefix="swq-", dir="/tmp"))
    try:
        trainer = spawn(fake_argv("orphan_p2pd", "--pidfile", str(tmp_path / "a.pid"), "--socket", str(sock_dir / "a.sock")))
        PipeReader(trainer.stdout_fd).wait_for(b"ready")
        parts = pick_dht_parts(tree_procs(trainer.pid), trainer.pid)
        assert parts.p2pd is not None
        assert parts.control == sock_dir / "a.sock"
        assert ask_p2pd(parts.control, 5.0).peer_id == "3cnTdW"  # base58 of b"fake"

        plain = spawn(fake_argv("hang"))
        PipeReader(plain.stdout_fd).wait_for(b"ready")
        assert pick_dht_parts(tree_procs(plain.pid), plain.pid).p2pd is None  # the other tree's p2pd is not ours
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_heartbeat_and_progress_ages() -> None:
    """Ages are measured from written_at / last_progress, None when unknown, never negative."""
    hb = Heartbeat(pid=1, written_at=1000.0, last_progress=900.0)
    assert heartbeat_age(hb, 1010.0) == 10.0
    assert progress_age(hb, 1010.0) == 110.0
    assert heartbeat_age(hb, 990.0) == 0.0
    assert heartbeat_age(None, 1.0) is None
    assert heartbeat_age(Heartbeat(pid=1), 1.0) is None
    assert progress_age(Heartbeat(pid=1), 1.0) is None

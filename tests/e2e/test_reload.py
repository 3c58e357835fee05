"""SIGHUP = rebuild: every key of monitor.toml changes, one SIGHUP to a real daemon, and
each change is shown to be in force: the new trainer's command, cwd, env and stdin;
the new follow file followed and the old one let go; the new rule firing and the
removed one silent; the new rotation sizes and compression; the new monitor and
trainer log paths; the new heartbeat file; the new probe target; the web server on
its new address (the old one closed); the control socket at its new path (the old
one gone). A key that cannot change live is named in `config_reloaded` with why, and
the running config the daemon reports equals the new file, key for key.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from swarmd.config import load
from swarmd.config_diff import flatten
from swarmd.control import request
from tests.conftest import wait_until
from tests.e2e.daemon import FAKES, Daemon, toml_list, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _accept_all(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # closed by the test
        while True:
            sock.accept()[0].close()


@pytest.fixture
def listeners() -> Iterator[dict[str, socket.socket]]:
    """Two TCP targets for [probes] tcp, closed by the test to fail a probe on cue."""
    socks = {}
    for name in ("a", "b"):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        threading.Thread(target=_accept_all, args=(s,), daemon=True).start()
        socks[name] = s
    yield socks
    for s in socks.values():
        close(s)


class _NoContent(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the probe calls every interval."""


@pytest.fixture
def http() -> Iterator[HTTPServer]:
    """An HTTP target for [probes] urls that answers 204."""
    server = HTTPServer(("127.0.0.1", 0), _NoContent)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def trainer_argv(heartbeat: str, name: str, peers: int, bulk: int = 0) -> list[str]:
    return [sys.executable, str(FAKES / "echo_setup.py"), "--heartbeat", heartbeat, "--name", name,
            "--peers", str(peers), "--bulk", str(bulk)]


def config_a(tmp: Path, tcp_port: int, web_port: int) -> str:
    return f"""
state_dir = "state"
[trainer]
command = {toml_list(trainer_argv(str(tmp / "state" / "hb-a.json"), "alpha", 3))}
cwd = "."
env = {{ SWARMD_MARK = "a" }}
stdin_lines = ["from-a"]
stop_timeout = 2
exit_zero_is_failure = false
fatal_exit_codes = [2, 78]
[logs]
dir = "logs"
trainer_log = "trainer.log"
monitor_log = "monitor.log"
max_bytes = "1MiB"
keep = 5
compress = false
follow = ["follow-a.log"]
console = false
[restart]
initial_delay = 0.2
max_delay = 2
multiplier = 2
jitter = 0
min_interval = 0.1
healthy_reset_after = 600
crash_loop_max = 10
crash_loop_window = 3600
on_fatal = "exit"
oom_fallback_env = {{ OOM_A = "1" }}
[health]
heartbeat_file = "state/hb-a.json"
stall_after = 60
stall_step_factor = 3
startup_grace = 300
min_peers = 0
peers_grace = 120
reconnect_attempts = 3
reconnect_timeout = 120
ready_on = "progress"
ready_timeout = 3600
reconnect = "signal"
[chain]
rpc_url = ""
contract = ""
interval = 30
timeout = 10
stall_rounds = 3
round_length = 0
[probes]
urls = []
tcp = ["127.0.0.1:{tcp_port}"]
dns = []
interval = 0.5
timeout = 0.5
require_network = true
[web]
enabled = true
bind = "127.0.0.1"
port = {web_port}
allow_remote = false
[control]
socket = "state/a.sock"
[identity]
path = "id-a.pem"
lock_dir = "locks-a"
[[rules]]
name = "rule-a"
pattern = "ALPHA-FAULT"
verdict = "restart"
kind = "alpha"
enabled = true
"""


def config_b(tmp: Path, tcp_port: int, web_port: int, http_port: int) -> str:
    return f"""
state_dir = "state-b"
[trainer]
command = {toml_list(trainer_argv(str(tmp / "state" / "hb-b.json"), "bravo", 7, bulk=1500))}
cwd = "work-b"
env = {{ SWARMD_MARK = "b" }}
stdin_lines = ["from-b"]
stop_timeout = 3
exit_zero_is_failure = true
fatal_exit_codes = [3]
[logs]
dir = "logs-b"
trainer_log = "trainer-b.log"
monitor_log = "monitor-b.log"
max_bytes = 32768
keep = 2
compress = true
follow = ["follow-b.log"]
console = true
[restart]
initial_delay = 0.3
max_delay = 3
multiplier = 3
jitter = 0.01
min_interval = 0.2
healthy_reset_after = 700
crash_loop_max = 9
crash_loop_window = 3000
on_fatal = "wait"
oom_fallback_env = {{ OOM_B = "1" }}
[health]
heartbeat_file = "state/hb-b.json"
stall_after = 61
stall_step_factor = 4
startup_grace = 301
min_peers = 1
peers_grace = 121
reconnect_attempts = 4
reconnect_timeout = 121
ready_on = "start"
ready_timeout = 1800
reconnect = "restart"
[chain]
rpc_url = "http://127.0.0.1:{http_port}/rpc"
contract = "0x{'ab' * 20}"
interval = 31
timeout = 9
stall_rounds = 4
round_length = 5
[probes]
urls = ["http://127.0.0.1:{http_port}/"]
tcp = ["127.0.0.1:{tcp_port}"]
dns = ["localhost"]
interval = 1
timeout = 1
require_network = false
[web]
enabled = true
bind = "127.0.0.2"
port = {web_port}
allow_remote = true
[control]
socket = "state/b.sock"
[identity]
path = "id-b.pem"
lock_dir = "locks-b"
[[rules]]
name = "rule-b"
pattern = "BRAVO-FAULT"
verdict = "restart"
kind = "bravo"
enabled = true
"""


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback test URL
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def close(sock: socket.socket) -> None:
    """Stop listening now (shutdown wakes the accepting thread; close alone may not)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def append(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text + "\n")


def test_sighup_applies_every_key_of_monitor_toml(
    tmp_path: Path, listeners: dict[str, socket.socket], http: HTTPServer
) -> None:
    """Each changed key of monitor.toml is in force after one SIGHUP, or named as kept with its reason."""
    tcp_a, tcp_b = (listeners[k].getsockname()[1] for k in ("a", "b"))
    web_a, web_b = free_port(), free_port("127.0.0.2")
    (tmp_path / "work-b").mkdir()
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(config_a(tmp_path, tcp_a, web_a))
    d = Daemon(tmp_path, cfg)
    try:
        d.state("running")
        append(tmp_path / "follow-a.log", "warming up")
        assert wait_until(lambda: http_ok(f"http://127.0.0.1:{web_a}/health"), 60, lambda: "old web never served")
        cfg.write_text(config_b(tmp_path, tcp_b, web_b, http.server_address[1]))
        d.signal(signal.SIGHUP)

        # The monitor log moved: the reload event is the first line of the new file.
        d.monitor_log = tmp_path / "logs-b" / "monitor-b.log"
        reloaded = d.wait_event(lambda e: e.get("event") == "config_reloaded", timeout=60)
        new_flat = flatten(load(cfg))
        # Every key but web.enabled (the web must serve to show its new address; the
        # second reload below turns it off).
        assert set(reloaded["changed"]) == set(new_flat) - {"web.enabled"}, set(new_flat) ^ set(reloaded["changed"])
        kept = {k["key"]: k["reason"] for k in reloaded["kept"]}
        assert set(kept) == {"state_dir", "logs.console", "identity.path", "identity.lock_dir"}, kept
        assert "restart swarmd" in kept["state_dir"]
        assert "--no-console" in kept["logs.console"]

        # The new trainer: command, cwd, env and stdin, writing to the new trainer log.
        d.wait_event(lambda e: e.get("event") == "child_started" and "bravo" in e.get("argv", []), timeout=60)
        tlog = tmp_path / "logs-b" / "trainer-b.log"
        seen = lambda: "".join(p.read_text(errors="replace") for p in tlog.parent.glob("trainer-b.log*") if p.suffix != ".gz")  # noqa: E731
        wait_until(lambda: "Joining round" in seen(), 60, lambda: f"new trainer log: {seen()[-500:]!r}")
        whole = seen() + "".join(gzip.decompress(p.read_bytes()).decode() for p in tlog.parent.glob("*.gz"))
        assert f"cwd={tmp_path / 'work-b'}" in whole
        assert "mark=b" in whole
        assert "stdin=from-b" in whole

        # Rotation: 32 KiB files, two kept, compressed.
        wait_until((tlog.parent / "trainer-b.log.2.gz").exists, 60, lambda: str(sorted(tlog.parent.iterdir())))
        names = sorted(p.name for p in tlog.parent.iterdir())
        assert not any(n.startswith("trainer-b.log.3") for n in names), names
        assert tlog.stat().st_size <= 32768

        # Heartbeat: the new file is read (peers 7, animal bravo).
        b_sock = tmp_path / "state" / "b.sock"
        status = lambda: request(b_sock, "status")["status"]  # noqa: E731
        wait_until(lambda: status().get("peers") == 7 and status().get("animal") == "bravo", 60, lambda: str(status()))

        # Control socket moved; the web server moved.
        assert not (tmp_path / "state" / "a.sock").exists()
        assert http_ok(f"http://127.0.0.2:{web_b}/health")
        assert not http_ok(f"http://127.0.0.1:{web_a}/health")

        # The running config is the new file, key for key.
        assert request(b_sock, "config")["config"] == json.loads(json.dumps(new_flat))

        # Followers: the new file is followed, the old one is not; the new rule fires, the removed one does not.
        append(tmp_path / "follow-a.log", "BRAVO-FAULT in a file no longer followed")
        # (follow paths resolve against the trainer's cwd, which moved to work-b)
        append(tmp_path / "work-b" / "follow-b.log", "ALPHA-FAULT is no rule any more")
        append(tmp_path / "work-b" / "follow-b.log", "BRAVO-FAULT raised by the new rule")
        decision = d.wait_event(lambda e: e.get("event") == "decision" and e.get("reason") == "bravo", timeout=60)
        assert "new rule" in decision["evidence"], decision
        time.sleep(0.5)
        decisions = [e for e in d.events() if e.get("event") == "decision"]
        assert not any("ALPHA" in e.get("evidence", "") or "no longer followed" in e.get("evidence", "") for e in decisions)

        # Probes: the old target going away is no longer watched; the new one is.
        close(listeners["a"])
        time.sleep(2.5)  # two probe intervals
        downs = [e for e in d.events() if e.get("event") == "network_down"]
        assert not [e for e in downs if str(tcp_a) in e.get("detail", "")], downs
        close(listeners["b"])
        d.wait_event(lambda e: e.get("event") == "network_down" and str(tcp_b) in e.get("detail", ""), timeout=60)

        # web.enabled: off closes the server.
        cfg.write_text(config_b(tmp_path, tcp_b, web_b, http.server_address[1]).replace("enabled = true\nbind", "enabled = false\nbind"))
        d.signal(signal.SIGHUP)
        second = d.wait_event(lambda e: e.get("event") == "config_reloaded", count=2, timeout=60)
        assert second["changed"] == ["web.enabled"], second
        assert second["kept"] == [], second
        assert not http_ok(f"http://127.0.0.2:{web_b}/health")
    finally:
        d.close()


def test_check_config_diff_and_reload_dry_run_show_what_a_reload_would_change(tmp_path: Path) -> None:
    """Against the running daemon: the changed keys with old -> new, and nothing reloaded."""
    argv = trainer_argv(str(tmp_path / "state" / "hb.json"), "alpha", 3)
    cfg = write_config(tmp_path, argv, extra='[control]\nsocket = "state/c.sock"\n')
    d = Daemon(tmp_path, cfg)
    try:
        d.state("running")
        cfg.write_text(cfg.read_text().replace("stop_timeout = 2", "stop_timeout = 9").replace("keep = 50", "keep = 4"))
        for verb in (["check-config", str(cfg), "--diff"], ["reload", "--dry-run", "--config", str(cfg)]):
            out = subprocess.run([sys.executable, "-m", "swarmd", *verb], capture_output=True, text=True, timeout=30, check=False)
            assert out.returncode == 0, out.stderr
            diff = [line for line in out.stdout.splitlines() if ": " in line and "->" in line]
            assert diff == ["logs.keep: 50 -> 4", "trainer.stop_timeout: 2.0 -> 9.0"], out.stdout
        assert not [e for e in d.events() if e.get("event") == "config_reloaded"]
    finally:
        d.close()

"""End-to-end: the real `swarmd run` talking sd_notify to a real datagram socket.

The test plays systemd: it binds an AF_UNIX SOCK_DGRAM socket, starts the daemon with
NOTIFY_SOCKET / WATCHDOG_USEC pointing at it, and records every datagram with its
arrival time. What systemd would do with them (start, watchdog-kill, reload) depends
only on their order and timing, so that is what the tests assert.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon, fake, write_config

pytestmark = [pytest.mark.e2e]

WATCHDOG_USEC = 1_000_000  # systemd's WatchdogSec=1s: swarmd must ping every 0.5 s
FIRST_PROGRESS_DELAY = 1.5

# A trainer that records its environment, stays silent for a while, notes the time,
# then becomes tests/fakes/progress.py (exec: same pid, so swarmd sees one child).
SLOW_START = (
    "import json, os, sys, time;"
    "json.dump(sorted(os.environ), open(sys.argv[1], 'w'));"
    "time.sleep(float(sys.argv[2]));"
    "open(sys.argv[3], 'w').write(repr(time.time()));"
    "os.execv(sys.argv[4], sys.argv[4:])"
)


@dataclass(frozen=True, slots=True)
class Datagram:
    wall: float
    mono: float
    fields: dict[str, str]


class NotifyListener:
    """systemd's side of sd_notify: a bound datagram socket and what arrived on it."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(address)
        self._sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._got: list[Datagram] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="notify-listener", daemon=True
        )
        self._thread.start()

    @property
    def env_value(self) -> str:
        """The NOTIFY_SOCKET value systemd would set: a path, or `@name` for abstract."""
        return "@" + self.address[1:] if self.address.startswith("\0") else self.address

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                raw = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(
                line.partition("=")[::2] for line in raw.decode().split("\n") if line
            )
            with self._lock:
                self._got.append(Datagram(time.time(), time.monotonic(), fields))

    def received(self) -> list[Datagram]:
        with self._lock:
            return list(self._got)

    def having(self, key: str, value: str | None = None) -> list[Datagram]:
        return [
            d
            for d in self.received()
            if key in d.fields and (value is None or d.fields[key] == value)
        ]

    def wait_for(
        self,
        pred: Callable[[Datagram], bool],
        timeout: float = 20.0,
        after: float = 0.0,
    ) -> Datagram:
        """The first datagram (arrived at monotonic time > `after`) matching `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            for d in self.received():
                if d.mono > after and pred(d):
                    return d
            if time.monotonic() > deadline:
                seen = [d.fields for d in self.received()[-12:]]
                raise AssertionError(
                    f"no matching sd_notify datagram within {timeout}s; last seen: {seen}"
                )
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture(name="sock_dir")
def _sock_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory short enough for an AF_UNIX path (108 bytes, NUL included)."""
    if len(str(tmp_path / "notify.sock")) < 100:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture(name="listener")
def _listener(sock_dir: Path) -> Iterator[NotifyListener]:
    lst = NotifyListener(str(sock_dir / "notify.sock"))
    yield lst
    lst.close()


@pytest.fixture(name="start")
def _start(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(
        listener: NotifyListener,
        argv: Sequence[str],
        watchdog_usec: int | None = WATCHDOG_USEC,
        wrap: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> Daemon:
        env = {"NOTIFY_SOCKET": listener.env_value, **(extra_env or {})}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        d = Daemon(tmp_path, write_config(tmp_path, argv), env=env, wrap=wrap)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def progress(*extra: str) -> list[str]:
    return fake("progress", "--rounds", "100000", "--interval", "0.2", *extra)


def slow_start(
    tmp_path: Path, delay: float = FIRST_PROGRESS_DELAY
) -> tuple[list[str], Path, Path]:
    """argv of a trainer that dumps its env keys, waits `delay`, then prints progress."""
    env_file, marker = tmp_path / "trainer_env.json", tmp_path / "first_progress_at"
    argv = [
        sys.executable,
        "-c",
        SLOW_START,
        str(env_file),
        str(delay),
        str(marker),
        *progress(),
    ]
    return argv, env_file, marker


def wait_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size:
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} not written within {timeout}s")


def test_ready_is_sent_after_the_first_progress_line_not_at_spawn(
    tmp_path: Path, listener: NotifyListener, start: Callable[..., Daemon]
) -> None:
    """A trainer silent for 1.5 s after spawn: READY=1 arrives only after its first progress line."""
    argv, _, marker = slow_start(tmp_path)
    d = start(listener, argv)
    ready = listener.wait_for(lambda g: g.fields.get("READY") == "1")
    first_progress_at = float(wait_file(marker))
    assert ready.wall >= first_progress_at, (
        "READY=1 came before the trainer printed any progress"
    )
    assert ready.mono - d.started_mono >= FIRST_PROGRESS_DELAY
    spawned = d.wait_event(lambda e: e.get("event") == "child_started")
    assert spawned["pid"] in d.trainer_pids()
    # Until then swarmd did talk to systemd (watchdog, status), so silence was a choice.
    assert any(g.mono < ready.mono for g in listener.having("WATCHDOG", "1"))
    assert len(listener.having("READY")) == 1


def test_trainer_environment_has_no_notify_variables(
    tmp_path: Path, listener: NotifyListener, start: Callable[..., Daemon]
) -> None:
    """The trainer inherits swarmd's environment minus NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID."""
    argv, env_file, _ = slow_start(tmp_path, delay=0.0)
    start(listener, argv, extra_env={"SWARMD_TEST_MARK": "1"})
    keys = set(json.loads(wait_file(env_file)))
    assert "SWARMD_TEST_MARK" in keys, "the dump is not of the inherited environment"
    assert "PATH" in keys
    assert not keys & {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}


def test_watchdog_pings_arrive_every_half_watchdog_usec(
    listener: NotifyListener, start: Callable[..., Daemon]
) -> None:
    """WATCHDOG_USEC=1 s: WATCHDOG=1 arrives about every 0.5 s, never close to the 1 s kill."""
    start(listener, progress())
    first = listener.wait_for(lambda g: g.fields.get("READY") == "1")
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        time.sleep(0.1)
    pings = [g.mono for g in listener.having("WATCHDOG", "1") if g.mono >= first.mono]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(gaps) >= 5, f"only {len(pings)} pings in 4 s"
    expected = WATCHDOG_USEC / 2 / 1e6
    assert abs(statistics.mean(gaps) - expected) <= 0.1 * expected, gaps
    assert max(gaps) < 0.8 * WATCHDOG_USEC / 1e6, gaps


def test_status_lines_carry_state_round_and_restart_count(
    listener: NotifyListener, start: Callable[..., Daemon]
) -> None:
    """STATUS= follows the state machine: starting, running with the round, then the restart count after one."""
    d = start(listener, progress())
    listener.wait_for(lambda g: g.fields.get("STATUS", "").startswith("starting"))
    running = listener.wait_for(
        lambda g: g.fields.get("STATUS", "").startswith("running, round")
    )
    assert running.fields["STATUS"].endswith("0 restarts")
    subprocess.run(
        [sys.executable, "-m", "swarmd", "restart", "--config", str(d.config)],
        check=True,
        timeout=30,
        capture_output=True,
    )
    listener.wait_for(
        lambda g: g.fields.get("STATUS", "").startswith("restarting"),
        after=running.mono,
    )
    again = listener.wait_for(
        lambda g: (
            g.fields.get("STATUS", "").startswith("running")
            and "1 restarts" in g.fields["STATUS"]
        ),
        after=running.mono,
    )
    assert "\n" not in again.fields["STATUS"]


def test_sighup_sends_reloading_with_monotonic_usec_then_ready(
    listener: NotifyListener, start: Callable[..., Daemon]
) -> None:
    """SIGHUP: RELOADING=1 with MONOTONIC_USEC on CLOCK_MONOTONIC, then READY=1 once the reload is done."""
    d = start(listener, progress())
    first = listener.wait_for(lambda g: g.fields.get("READY") == "1")
    sent = time.monotonic()
    d.signal(signal.SIGHUP)
    reloading = listener.wait_for(
        lambda g: g.fields.get("RELOADING") == "1", after=first.mono
    )
    stamp = int(reloading.fields["MONOTONIC_USEC"]) / 1e6
    # systemd matches the stamp against its own CLOCK_MONOTONIC: the same clock as ours.
    assert sent - 0.05 <= stamp <= reloading.mono + 0.05, (sent, stamp, reloading.mono)
    ready = listener.wait_for(
        lambda g: g.fields.get("READY") == "1", after=reloading.mono
    )
    assert ready.mono >= reloading.mono
    d.wait_event(lambda e: e.get("event") == "config_reloaded")


def test_sigterm_sends_stopping_before_the_daemon_exits(
    listener: NotifyListener, start: Callable[..., Daemon]
) -> None:
    """SIGTERM: STOPPING=1 arrives, then swarmd exits 0."""
    d = start(listener, progress())
    ready = listener.wait_for(lambda g: g.fields.get("READY") == "1")
    d.signal(signal.SIGTERM)
    stopping = listener.wait_for(
        lambda g: g.fields.get("STOPPING") == "1", after=ready.mono
    )
    assert d.wait_exit(20) == 0
    assert stopping.mono <= time.monotonic()
    assert not [g for g in listener.having("READY") if g.mono > stopping.mono]


def test_abstract_namespace_socket_gets_ready_and_watchdog(
    start: Callable[..., Daemon],
) -> None:
    """NOTIFY_SOCKET=@name (Linux abstract namespace) works like a path socket."""
    listener = NotifyListener("\0swarmd-test-" + uuid.uuid4().hex)
    try:
        assert listener.env_value.startswith("@")
        start(listener, progress())
        ready = listener.wait_for(lambda g: g.fields.get("READY") == "1")
        listener.wait_for(lambda g: g.fields.get("WATCHDOG") == "1", after=ready.mono)
    finally:
        listener.close()


def test_watchdog_pid_of_the_daemon_itself_enables_pings(
    listener: NotifyListener, start: Callable[..., Daemon]
) -> None:
    """WATCHDOG_PID equal to swarmd's own pid (as systemd sets it) keeps the watchdog on."""
    wrap = ["sh", "-c", 'export WATCHDOG_PID=$$; exec "$0" "$@"']
    d = start(listener, progress(), wrap=wrap)
    ready = listener.wait_for(lambda g: g.fields.get("READY") == "1")
    listener.wait_for(lambda g: g.fields.get("WATCHDOG") == "1", after=ready.mono)
    assert d.ps.environ().get("WATCHDOG_PID") == str(d.proc.pid), (
        "the wrapper did not exec"
    )


def test_watchdog_pid_of_another_process_disables_pings(
    listener: NotifyListener, start: Callable[..., Daemon]
) -> None:
    """WATCHDOG_PID naming another process means the watchdog is not ours: no WATCHDOG=1."""
    start(listener, progress(), extra_env={"WATCHDOG_PID": "1"})
    ready = listener.wait_for(lambda g: g.fields.get("READY") == "1")
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        time.sleep(0.1)
    assert listener.having("STATUS"), "the daemon sent nothing at all"
    assert not listener.having("WATCHDOG"), (
        f"pings despite WATCHDOG_PID=1 (ready at {ready.mono})"
    )


def test_lost_notify_socket_is_logged_once_and_supervision_goes_on(
    sock_dir: Path, start: Callable[..., Daemon]
) -> None:
    """systemd's socket vanishes: one sd_notify_failed event, the trainer keeps running, and a new socket is used again."""
    path = str(sock_dir / "lost.sock")
    listener = NotifyListener(path)
    d = start(listener, progress())
    listener.wait_for(lambda g: g.fields.get("READY") == "1")
    listener.close()
    Path(path).unlink()
    d.wait_event(lambda e: e.get("event") == "sd_notify_failed")
    time.sleep(1.2)  # a couple more failing watchdog pings
    assert len([e for e in d.events() if e.get("event") == "sd_notify_failed"]) == 1
    assert d.proc.poll() is None
    assert d.trainer_pids()
    back = NotifyListener(path)
    try:
        back.wait_for(lambda g: g.fields.get("WATCHDOG") == "1", timeout=5)
        d.wait_event(lambda e: e.get("event") == "sd_notify_recovered")
    finally:
        back.close()


def test_start_timeout_is_extended_until_ready_within_ready_timeout(
    tmp_path: Path, listener: NotifyListener
) -> None:
    """A trainer silent for 6 s with ready_timeout = 3 s: EXTEND_TIMEOUT_USEC arrives
    at once and then about every second, each never reaching past 3 s after swarmd's
    start, none after that bound, and READY=1 still only after the first progress."""
    argv, _, marker = slow_start(tmp_path, delay=6.0)
    cfg = write_config(tmp_path, argv, health="ready_timeout = 3")
    d = Daemon(tmp_path, cfg, env={"NOTIFY_SOCKET": listener.env_value})
    try:
        ready = listener.wait_for(lambda g: g.fields.get("READY") == "1", timeout=40)
        first_progress_at = float(wait_file(marker))
        assert ready.wall >= first_progress_at
        extends = listener.having("EXTEND_TIMEOUT_USEC")
        assert len(extends) >= 3, [g.fields for g in extends]
        first = extends[0].mono
        # The first asks at once (before the trainer could have printed anything).
        assert first - d.started_mono < 3.0
        for g in extends:
            asked = int(g.fields["EXTEND_TIMEOUT_USEC"]) / 1e6
            assert 0 < asked <= 3.0
            # Never beyond the bound: 3 s after the first ask, with scheduling slack.
            assert g.mono + asked <= first + 3.0 + 0.5, (g.mono - first, asked)
        gaps = [b.mono - a.mono for a, b in itertools.pairwise(extends)]
        assert all(0.5 <= gap <= 2.0 for gap in gaps), gaps
        assert extends[-1].mono < ready.mono
        assert all(g.mono - first < 3.5 for g in extends), "asked for more time past ready_timeout"
    finally:
        d.close()

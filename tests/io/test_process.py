"""swarmd.process against real children from tests/fakes (no mocks of the OS)."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from structlog.testing import capture_logs

from swarmd.cleanup import listening_ports, ports_free
from swarmd.errors import NoPermission, NotExecutable, NotFound
from swarmd.p2pd import end_processes, remove_stale_sockets
from swarmd.pidfile import PidFile
from swarmd.process import (
    ProcRef,
    find_leftover,
    is_alive,
    p2pd_sockets,
    snapshot_tree,
    stop_group,
    sweep_orphans,
)
from swarmd.spawn import PosixChild, PosixSpawner, map_spawn_error
from tests.conftest import PipeReader, wait_until

pytestmark = pytest.mark.io

Argv = Callable[..., list[str]]


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                pids.append(proc.pid)
    return pids


def _open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., PosixChild]]:
    """Spawn through PosixSpawner; whatever a test leaves running is killed and closed."""
    children: list[PosixChild] = []

    def run(argv: list[str], stdin_data: bytes | None = None, cwd: Path | None = None) -> PosixChild:
        child = PosixSpawner().spawn(argv, dict(os.environ), cwd or tmp_path, stdin_data)
        children.append(child)
        return child

    yield run
    for child in children:
        child.signal_group(signal.SIGKILL)
        child.wait(5)
        child.close()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory: unix socket paths must fit in 108 bytes, tmp_path may not."""
    path = Path(tempfile.mkdtemp(prefix="swp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _read_pid(path: Path) -> int:
    wait_until(path.exists, 10, f"{path} never written")
    return int(path.read_text())


def test_hanging_child_stops_on_term_without_escalation(spawn: Callable[..., PosixChild], fake_argv: Argv) -> None:
    """A child that honours SIGTERM is stopped by it and leaves no process in its group."""
    child = spawn(fake_argv("hang"))
    PipeReader(child.stdout_fd).wait_for(b"ready")
    result = stop_group(child, term_timeout=5)
    assert (result.returncode, result.escalated, result.survivors) == (-signal.SIGTERM, False, [])
    assert _group_pids(child.pgid) == []
    assert snapshot_tree(child.pid) == []


def test_term_ignoring_group_is_killed_within_timeout(spawn: Callable[..., PosixChild], fake_argv: Argv) -> None:
    """When the child and its children ignore SIGTERM, the group gets SIGKILL after term_timeout."""
    child = spawn(fake_argv("ignore_term", "--children", "2"))
    reader = PipeReader(child.stdout_fd)
    reader.wait_for(b"ready", count=3)
    assert len(_group_pids(child.pgid)) == 3
    started = time.monotonic()
    with capture_logs() as logs:
        import structlog

        result = stop_group(child, term_timeout=0.5, log=structlog.get_logger())
    elapsed = time.monotonic() - started
    assert result.escalated
    assert result.returncode == -signal.SIGKILL
    assert 0.5 <= elapsed < 0.5 + 3.0
    assert _group_pids(child.pgid) == []
    assert [e["event"] for e in logs] == ["stop_escalated", "child_stopped"]


def test_grandchild_holding_pipe_dies_with_group(
    spawn: Callable[..., PosixChild], fake_argv: Argv, tmp_path: Path
) -> None:
    """A grandchild left in the group after its parent exited is ended by the group stop, which closes the pipe."""
    child = spawn(fake_argv("grandchild_holds_pipe", "--hold", "60", "--pidfile", str(tmp_path / "gc.pid")))
    reader = PipeReader(child.stdout_fd)
    grandchild = _read_pid(tmp_path / "gc.pid")
    assert child.wait(10) == 0
    assert child.group_alive()
    result = stop_group(child, term_timeout=5)
    assert result.returncode == 0
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    assert b"grandchild done" not in reader.wait_eof(5)


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [("exit_code", ("3",), 3), ("die137", (), -signal.SIGKILL), ("p2pd_error", (), 1)],
)
def test_exiting_child_reports_popen_returncode(
    spawn: Callable[..., PosixChild], fake_argv: Argv, name: str, args: tuple[str, ...], expected: int
) -> None:
    """Exit codes come back as Popen reports them: N, or -signal when killed."""
    child = spawn(fake_argv(name, *args))
    assert child.wait(10) == expected
    assert child.poll() == expected


def test_p2pd_error_output_arrives_in_order_on_one_pipe(spawn: Callable[..., PosixChild], fake_argv: Argv) -> None:
    """stdout and stderr share one pipe, so interleaved lines keep their order."""
    child = spawn(fake_argv("spew", "--lines", "200", "--stderr"))
    out = PipeReader(child.stdout_fd).wait_eof(10)
    lines = out.decode().splitlines()
    assert lines[:-1] == [f"line {i}" for i in range(200)]


def test_sigusr1_goes_to_main_pid(spawn: Callable[..., PosixChild], fake_argv: Argv, tmp_path: Path) -> None:
    """send_signal delivers SIGUSR1 (the DHT reconnect request) to the child itself."""
    report = tmp_path / "signals.txt"
    child = spawn(fake_argv("sigusr1_reporter", str(report)))
    PipeReader(child.stdout_fd).wait_for(b"ready")
    child.send_signal(signal.SIGUSR1)
    wait_until(lambda: "SIGUSR1" in report.read_text(), 5, report.read_text)


def test_orphan_p2pd_is_recorded_swept_and_its_socket_removed(
    spawn: Callable[..., PosixChild], fake_argv: Argv, tmp_path: Path, sock_dir: Path
) -> None:
    """A p2pd that left the group (setsid) and ignores SIGTERM is in the tree snapshot
    before the stop, survives the group kill, and is ended by sweep_orphans; then its
    stale socket is removed."""
    sock, pidfile = sock_dir / "hivemind-p2pd-abc.sock", tmp_path / "p2pd.pid"
    child = spawn(fake_argv("orphan_p2pd", "--pidfile", str(pidfile), "--socket", str(sock), "--setsid", "--ignore-term"))
    PipeReader(child.stdout_fd).wait_for(b"ready")
    daemon = _read_pid(pidfile)

    refs = snapshot_tree(child.pid)
    (p2pd,) = [r for r in refs if r.pid == daemon]
    assert p2pd.name == "fake-p2pd"
    assert p2pd_sockets(refs) == [sock, sock_dir / "hivemind-p2pclient-abc.sock"]
    assert remove_stale_sockets(p2pd_sockets(refs)) == []  # still bound: in use

    result = stop_group(child, term_timeout=2)
    assert result.survivors == [p2pd]
    assert psutil.Process(daemon).ppid() != child.pid  # an orphan now

    assert sweep_orphans(refs, term_timeout=0.3) == [p2pd]
    assert not is_alive(p2pd)
    assert remove_stale_sockets(p2pd_sockets(refs)) == [sock]
    assert not sock.exists()


def test_sweep_never_touches_unrecorded_or_recycled_processes(
    fake_script: Callable[[str], Path], python_exe: str, tmp_path: Path, sock_dir: Path
) -> None:
    """An unrelated `fake-p2pd`, and a record whose pid matches but create_time does not,
    are left running: identity is (pid, create_time), never the name."""
    argv = [python_exe, str(fake_script("orphan_p2pd")), "--as-daemon",
            "--pidfile", str(tmp_path / "other.pid"), "--socket", str(sock_dir / "other.sock")]
    other = PosixSpawner().spawn(argv, dict(os.environ), tmp_path)
    try:
        pid = _read_pid(tmp_path / "other.pid")
        (live,) = snapshot_tree(pid)
        recycled = ProcRef(pid, live.create_time - 60, live.name, live.cmdline)
        gone = ProcRef(2**22 + 5, live.create_time, "fake-p2pd", live.cmdline)
        assert sweep_orphans([recycled, gone], term_timeout=0.2) == []
        assert other.poll() is None
        assert live.name == "fake-p2pd"
        assert remove_stale_sockets([sock_dir / "other.sock"]) == []
    finally:
        stop_group(other, term_timeout=2)
        other.close()


def test_a_process_that_exited_but_is_not_reaped_yet_counts_as_ended_at_once(python_exe: str) -> None:
    """An orphan's parent is init, and an init may reap seconds late (this CI host's
    does, ~2 s): the exited process is a zombie holding nothing, so ending it must not
    wait for its pid-table entry (nor KILL it and report it stuck)."""
    keeper = subprocess.Popen(
        [python_exe, "-c", "import subprocess, sys, time\n"
         "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
         "print(c.pid, flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, start_new_session=True,
    )
    try:
        assert keeper.stdout is not None
        child = psutil.Process(int(keeper.stdout.readline()))
        began = time.monotonic()
        assert end_processes([child], term_timeout=10.0, kill_timeout=5.0) == []
        assert time.monotonic() - began < 2.0
        assert child.status() == psutil.STATUS_ZOMBIE  # its parent never reaped it
    finally:
        keeper.kill()
        keeper.wait(10)
        if keeper.stdout is not None:
            keeper.stdout.close()


def test_sweep_refuses_our_own_process() -> None:
    """Even a record that names the supervisor itself is not signalled."""
    (me,) = [r for r in snapshot_tree(os.getpid()) if r.pid == os.getpid()]
    assert sweep_orphans([me], term_timeout=0.1) == []


def test_missing_command_raises_not_found_with_one_line(tmp_path: Path) -> None:
    """ENOENT on exec is NotFound naming the command and a fix, on one line."""
    with pytest.raises(NotFound) as info:
        PosixSpawner().spawn([str(tmp_path / "no-such-trainer")], {}, tmp_path)
    msg = str(info.value)
    assert "no-such-trainer" in msg
    assert "fix:" in msg
    assert "\n" not in msg


def test_non_executable_file_raises_not_executable(tmp_path: Path) -> None:
    """A script without the x bit is NotExecutable (EACCES), suggesting chmod."""
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(NotExecutable, match="chmod \\+x"):
        PosixSpawner().spawn([str(script)], {}, tmp_path)


def test_executable_without_shebang_raises_not_executable(tmp_path: Path) -> None:
    """An executable file the kernel cannot run (ENOEXEC) is NotExecutable."""
    script = tmp_path / "garbage"
    script.write_bytes(b"\x00\x01\x02 not a program\n")
    script.chmod(0o755)
    with pytest.raises(NotExecutable, match="not a valid executable"):
        PosixSpawner().spawn([str(script)], {}, tmp_path)


def test_missing_cwd_raises_not_found_naming_the_directory(tmp_path: Path, python_exe: str) -> None:
    """A missing working directory is NotFound about the directory, not the command."""
    with pytest.raises(NotFound, match=r"working directory .*/gone does not exist"):
        PosixSpawner().spawn([python_exe, "-c", "pass"], {}, tmp_path / "gone")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unreadable_cwd_raises_no_permission(tmp_path: Path, python_exe: str) -> None:
    """An inaccessible working directory is NoPermission."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    try:
        with pytest.raises(NoPermission):
            PosixSpawner().spawn([python_exe, "-c", "pass"], {}, locked)
    finally:
        locked.chmod(stat.S_IRWXU)


def test_cwd_eacces_maps_to_no_permission_and_eagain_stays_oserror(tmp_path: Path) -> None:
    """EACCES on the cwd is NoPermission; EAGAIN is returned as a retryable OSError."""
    cwd = tmp_path / "locked"
    assert isinstance(map_spawn_error(PermissionError(errno.EACCES, "denied", str(cwd)), "trainer", cwd), NoPermission)
    again = BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    assert map_spawn_error(again, "trainer", cwd) is again


@pytest.mark.parametrize("size", [100, 300_000])
def test_stdin_data_is_delivered_then_closed(spawn: Callable[..., PosixChild], python: Argv, size: int) -> None:
    """stdin_data reaches the child in full and stdin then reads EOF (large data too)."""
    data = bytes(i % 251 for i in range(size))
    code = "import sys,hashlib; d=sys.stdin.buffer.read(); print(len(d), hashlib.sha256(d).hexdigest())"
    child = spawn(python(code), stdin_data=data)
    import hashlib

    out = PipeReader(child.stdout_fd).wait_eof(10)
    assert out.decode().split() == [str(size), hashlib.sha256(data).hexdigest()]
    assert child.wait(5) == 0


def test_spawn_stop_close_and_failed_spawns_leak_no_fd(tmp_path: Path, fake_argv: Argv) -> None:
    """Repeated spawns, stops, closes and failed spawns leave the fd count unchanged."""
    spawner = PosixSpawner()
    gc.collect()  # an earlier test's garbage must not close its fds during ours
    before = _open_fds()
    for _ in range(3):
        child = spawner.spawn(fake_argv("exit_code", "0"), dict(os.environ), tmp_path, b"answer\n")
        stop_group(child, term_timeout=5)
        child.close()
        with pytest.raises(NotFound):
            spawner.spawn([str(tmp_path / "missing")], {}, tmp_path)
    del child
    gc.collect()
    # fewer is an earlier test's thread closing its fds late (seen in a full run); more is our leak
    assert _open_fds() <= before


def test_pidfile_finds_leftover_only_with_same_create_time(
    spawn: Callable[..., PosixChild], fake_argv: Argv, state_dir: Path
) -> None:
    """find_leftover returns the recorded live trainer, and None when the create_time
    differs (pid reused) or the process is gone."""
    child = spawn(fake_argv("hang"))
    PipeReader(child.stdout_fd).wait_for(b"ready")
    pidfile = PidFile(state_dir / "trainer.pid")
    pidfile.write(child.pid, child.create_time, os.getpid())
    record = pidfile.read()
    assert record == (child.pid, child.create_time)
    found = find_leftover(record)
    assert found is not None
    assert found.pid == child.pid
    assert find_leftover((child.pid, child.create_time - 3600)) is None
    stop_group(child, term_timeout=5)
    assert find_leftover(record) is None
    pidfile.remove()
    assert pidfile.read() is None
    pidfile.remove()  # idempotent


@pytest.mark.parametrize("content", ["", "not json", '{"pid": "12"}', '{"pid": true, "create_time": 1}', "[1, 2]"])
def test_pidfile_garbage_reads_as_none(state_dir: Path, content: str) -> None:
    """A damaged pid file is treated as absent rather than crashing the supervisor."""
    (state_dir / "trainer.pid").write_text(content)
    assert PidFile(state_dir / "trainer.pid").read() is None


def test_p2pd_sockets_parses_real_hivemind_cmdline() -> None:
    """The -listen unix multiaddr of hivemind's p2pd gives the daemon and client sockets."""
    cmdline = (
        "/venv/lib/python3.11/site-packages/hivemind/hivemind_cli/p2pd", "-autoRelay=0", "-b=1",
        "-idleTimeout=30s", "-listen=/unix/tmp/hivemind-p2pd-w1_ERSgUaDw.sock", "-dhtServer=1",
        "-id=/home/u/swarm.pem", "-hostAddrs=/ip4/127.0.0.1/tcp/0",
    )
    refs = [ProcRef(10, 1.0, "p2pd", cmdline), ProcRef(11, 1.0, "python", ("python", "-listen=/unix/tmp/x.sock"))]
    assert p2pd_sockets(refs) == [
        Path("/tmp/hivemind-p2pd-w1_ERSgUaDw.sock"),
        Path("/tmp/hivemind-p2pclient-w1_ERSgUaDw.sock"),
    ]


def test_remove_stale_sockets_spares_live_sockets_and_plain_files(sock_dir: Path) -> None:
    """Only socket files nobody is bound to are removed; a bound socket and a regular file stay."""
    live, dead, plain = sock_dir / "live.sock", sock_dir / "dead.sock", sock_dir / "plain.sock"
    with socket.socket(socket.AF_UNIX) as closed:
        closed.bind(str(dead))
    plain.write_text("not a socket")
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(live))
        bound.listen()
        assert remove_stale_sockets([live, dead, plain, sock_dir / "absent.sock"]) == [dead]
    assert live.exists()
    assert plain.exists()
    assert not dead.exists()


def test_ports_free_waits_for_listener_to_close() -> None:
    """ports_free is False while something listens on the port, True once it closed."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        started = time.monotonic()
        assert ports_free([port], timeout=0.3) is False
        assert time.monotonic() - started < 2.0
    assert ports_free([port], timeout=2.0) is True


def test_snapshot_of_missing_or_reused_pid_is_empty() -> None:
    """A pid that cannot exist, or one whose create_time differs from the record, gives
    an empty snapshot rather than an error or someone else's tree."""
    assert snapshot_tree(2**22 + 7) == []
    me = psutil.Process().create_time()
    assert snapshot_tree(os.getpid(), me)[0].pid == os.getpid()
    assert snapshot_tree(os.getpid(), me - 3600) == []


# -- the fake children other tests rely on do what their docstrings say ---------------


def test_spew_cr_frames_and_lines_are_countable(spawn: Callable[..., PosixChild], fake_argv: Argv) -> None:
    """spew --cr writes N `\\r` frames then one newline; plain spew writes N numbered lines."""
    out = PipeReader(spawn(fake_argv("spew", "--lines", "50", "--cr")).stdout_fd).wait_eof(10)
    assert out.count(b"\r") == 50
    assert out.endswith(b"| 50/50\r\nspew done 50\n")
    out = PipeReader(spawn(fake_argv("spew", "--lines", "50", "--width", "20")).stdout_fd).wait_eof(10)
    assert out.splitlines()[:-1] == [f"line {i}".ljust(20, ".").encode() for i in range(50)]


def test_binary_garbage_is_invalid_utf8_and_deterministic(spawn: Callable[..., PosixChild], fake_argv: Argv) -> None:
    """binary_garbage output is not UTF-8, holds NULs, ends with a marker, and repeats per seed."""
    first = PipeReader(spawn(fake_argv("binary_garbage", "--bytes", "5000")).stdout_fd).wait_eof(10)
    second = PipeReader(spawn(fake_argv("binary_garbage", "--bytes", "5000")).stdout_fd).wait_eof(10)
    assert first == second
    assert b"\x00" in first
    assert first.endswith(b"\ngarbage done\n")
    with pytest.raises(UnicodeDecodeError):
        first.decode()


def test_progress_prints_rounds_and_writes_heartbeat(
    spawn: Callable[..., PosixChild], fake_argv: Argv, state_dir: Path
) -> None:
    """progress prints the genrl join line per round and keeps the heartbeat current."""
    from swarmd.heartbeat import read_heartbeat

    hb_path = state_dir / "trainer.json"
    child = spawn(fake_argv("progress", "--rounds", "2", "--steps", "2", "--interval", "0.01",
                            "--start-round", "7", "--heartbeat", str(hb_path)))
    out = PipeReader(child.stdout_fd).wait_eof(20).decode()
    assert child.wait(5) == 0
    assert "\U0001f41d Joining round: 8 starting at stage: 0" in out
    assert "2/2 [" in out
    beat = read_heartbeat(hb_path)
    assert beat is not None
    assert (beat.pid, beat.round, beat.peers) == (child.pid, 8, 3)


def test_stop_group_drives_a_fake_child_through_the_protocol_only() -> None:
    """stop_group uses only the Child protocol, so FakeChild records TERM, CONT, KILL and
    FakeSpawner raises queued errno failures."""
    from tests.fakes.doubles import FakeSpawner

    spawner = FakeSpawner(ignore_term=True)
    spawner.fail_next(errno.EAGAIN)
    with pytest.raises(BlockingIOError):
        spawner.spawn(["trainer"], {}, Path())
    child = spawner.spawn(["trainer"], {"K": "v"}, Path(), b"y\n")
    child.emit(b"hello\n")
    try:
        result = stop_group(child, term_timeout=0.01)
        assert (result.returncode, result.escalated) == (-signal.SIGKILL, True)
        assert child.group_signals == [signal.SIGTERM, signal.SIGCONT, signal.SIGKILL]
        assert os.read(child.stdout_fd, 100) == b"hello\n"
        assert [c.stdin_data for c in spawner.calls] == [None, b"y\n"]
    finally:
        spawner.close_all()


@pytest.mark.io
def test_listening_ports_of_a_recorded_tree_are_found_and_freed(tmp_path: Path, python_exe: str) -> None:
    """A trainer's listening port is seen while it runs and reported free after it ends."""
    from swarmd.process import snapshot_tree, stop_group
    from swarmd.spawn import PosixSpawner

    code = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
        "print(s.getsockname()[1], flush=True); time.sleep(60)"
    )
    child = PosixSpawner().spawn([python_exe, "-c", code], dict(os.environ), tmp_path)
    try:
        port = int(os.read(child.stdout_fd, 100).split()[0])
        refs = snapshot_tree(child.pid)
        assert port in listening_ports(refs)
        stop_group(child, term_timeout=2.0)
        assert ports_free({port}, timeout=5.0)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # really free again
    finally:
        child.close()


def test_a_stop_looks_at_the_trainers_tree_not_at_every_process_of_the_host(
    spawn: Callable[..., PosixChild], fake_argv: Argv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Waiting 1 s for a TERM-ignoring group (polled every 50 ms) lists the host's
    processes no more than once: the cost of a stop grows with the tree, not the host."""
    child = spawn(fake_argv("ignore_term", "--children", "2"))
    PipeReader(child.stdout_fd).wait_for(b"ready", count=3)
    host_listings = []
    real_pids, real_iter = psutil.pids, psutil.process_iter

    def pids() -> list[int]:
        host_listings.append("pids")
        return real_pids()

    def process_iter(*args: object, **kwargs: object) -> Iterator[psutil.Process]:
        host_listings.append("process_iter")
        return real_iter(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(psutil, "pids", pids)
    monkeypatch.setattr(psutil, "process_iter", process_iter)
    result = stop_group(child, term_timeout=1.0)
    monkeypatch.undo()
    assert result.escalated
    assert _group_pids(child.pgid) == []
    assert len(host_listings) <= 1, f"{len(host_listings)} host-wide process listings during one stop"

"""capture: real children, real pipes, real files (and /dev/full for a full disk)."""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmd.capture import (
    BATCH,
    READ_CHUNK,
    LineSplitter,
    PipeCapture,
    RotatingLog,
    batch_wait,
)
from swarmd.clock import SystemClock
from swarmd.redact import redact_bytes
from tests.conftest import wait_until

pytestmark = pytest.mark.io


class Lines:
    """Thread-safe sink for `on_lines`: keeps each line of every call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[str] = []
        self.calls = 0

    def __call__(self, text: str, t_mono: float) -> None:
        with self._lock:
            self.items.extend(text.split("\n"))
            self.calls += 1

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.items)


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Children started by a test; killed (with their session) and reaped after it."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
        if p.stdout is not None:
            p.stdout.close()


def child(
    procs: list[subprocess.Popen[bytes]], code: str | list[str]
) -> subprocess.Popen[bytes]:
    """Start `python -c code` (or an argv) in its own session, stdout+stderr to one pipe."""
    p = subprocess.Popen(
        [sys.executable, "-c", code] if isinstance(code, str) else code,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.append(p)
    return p


def fd_of(p: subprocess.Popen[bytes]) -> int:
    assert p.stdout is not None
    return p.stdout.fileno()


@pytest.fixture
def closers() -> Iterator[list[Callable[[], None]]]:
    """Stop captures and close logs even when an assertion failed midway."""
    todo: list[Callable[[], None]] = []
    yield todo
    for fn in reversed(todo):
        fn()


def make_log(
    closers: list[Callable[[], None]], path: Path, **kw: object
) -> RotatingLog:
    log = RotatingLog(path, **kw)  # type: ignore[arg-type]
    closers.append(lambda: log.close(timeout=10))
    return log


def capture(
    closers: list[Callable[[], None]], fd: int, log: RotatingLog, sink: Lines
) -> PipeCapture:
    cap = PipeCapture(fd, log, sink, clock=SystemClock(), poll_interval=0.05)
    cap.start()
    closers.append(lambda: cap.stop(timeout=10))
    return cap


def log_bytes(path: Path) -> bytes:
    """The whole log in write order: oldest rotated file first, .gz transparently."""
    numbered = sorted(
        (p for p in path.parent.glob(path.name + ".*") if not p.name.endswith(".tmp")),
        key=lambda p: int(p.name[len(path.name) + 1 :].removesuffix(".gz")),
        reverse=True,
    )
    parts = [
        gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        for p in numbered
    ]
    if path.exists():
        parts.append(path.read_bytes())
    return b"".join(parts)


# -- LineSplitter (pure) ----------------------------------------------------------


def test_cr_lf_and_crlf_each_end_one_line() -> None:
    """`\\r` (a tqdm frame), `\\n` and `\\r\\n` each end exactly one line."""
    s = LineSplitter()
    assert s.feed(b"10%\r20%\r\nok\nrest") == [b"10%", b"20%", b"ok"]
    assert s.flush() == b"rest"


def test_crlf_split_across_chunks_is_one_break() -> None:
    """A `\\r` at the end of one read and `\\n` at the start of the next make one break."""
    s = LineSplitter()
    assert s.feed(b"a\r") == [b"a"]
    assert s.feed(b"\nb\n") == [b"b"]
    assert s.feed(b"\n") == [b""]


def test_a_newline_after_a_crlf_split_across_reads_is_a_line_of_its_own() -> None:
    """`\\r`, then `\\n` (its pair), then `\\n` in three reads: two lines, the
    second empty (the pair's flag is spent by the first `\\n`)."""
    s = LineSplitter()
    assert s.feed(b"a\r") == [b"a"]
    assert s.feed(b"\n") == []
    assert s.feed(b"\n") == [b""]


def test_partial_line_is_kept_until_its_newline() -> None:
    """A line split over reads comes out once, whole."""
    s = LineSplitter()
    assert s.feed(b"hel") == []
    assert s.feed(b"lo") == []
    assert s.feed(b"\n") == [b"hello"]


def test_partial_taken_early_is_not_repeated_when_its_line_ends() -> None:
    """A prompt handed out before its newline: its end yields only the new bytes."""
    s = LineSplitter()
    assert s.feed(b"ok\nPush? [y/N] ") == [b"ok"]
    assert s.take_partial() == b"Push? [y/N] "
    assert not s.pending()
    assert s.take_partial() == b""
    assert s.feed(b"\n") == []
    assert s.feed(b"next\n") == [b"next"]


def test_partial_taken_early_then_more_text_yields_only_the_rest() -> None:
    s = LineSplitter()
    assert s.feed(b"Name: ") == []
    assert s.take_partial() == b"Name: "
    assert s.feed(b"bob") == []
    assert s.pending()
    assert s.feed(b"\r\n") == [b"bob"]
    assert s.feed(b"Pass: ") == []
    assert s.take_partial() == b"Pass: "
    assert s.flush() == b""


def test_line_without_newline_is_cut_at_max_line() -> None:
    """A child that never prints a newline cannot grow the buffer past `max_line`."""
    s = LineSplitter(max_line=4)
    assert s.feed(b"abcdefghij") == [b"abcd", b"efgh"]
    assert s.feed(b"\n") == [b"ij"]


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = cuts[k % len(cuts)]
        out.append(data[i : i + n])
        i, k = i + n, k + 1
    return out


def _reference_lines(stream: bytes, max_line: int) -> tuple[list[bytes], bytes]:
    """The whole stream split at once: `\\r\\n`, `\\r` or `\\n` end a line, a line is cut
    every `max_line` bytes; the unterminated rest, cut the same, keeps its last piece."""
    *ended, rest = re.split(rb"\r\n|\r|\n", stream)
    lines = [ln[i : i + max_line] for ln in ended for i in range(0, max(len(ln), 1), max_line)]
    keep = max(0, (len(rest) - 1) // max_line) * max_line
    lines += [rest[i : i + max_line] for i in range(0, keep, max_line)]
    return lines, rest[keep:]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\r", b"\r\n", b"\xe2\x82", b"\xac", b"\xff", b"x" * 7]), max_size=60),
    cuts=st.lists(st.integers(1, 9), min_size=1, max_size=4),
)
def test_joined_lines_are_the_streams_lines_whatever_the_reads(data: list[bytes], cuts: list[int]) -> None:
    """`feed_joined` (the reader's hot path: one slice, no list) gives the stream's lines
    joined by `\\n`, however the stream is cut into reads (a `\\r\\n` across two
    included), long lines cut at `max_line`; and decoding the joined bytes at once is
    decoding each line (a line break is never inside a UTF-8 sequence)."""
    stream = b"".join(data)
    splitter = LineSplitter(max_line=8)
    got: list[bytes] = []
    for piece in _pieces(stream, cuts):
        text, count = splitter.feed_joined(piece)
        lines = text.split(b"\n") if count else []
        assert len(lines) == count
        assert text.decode("utf-8", "replace") == "\n".join(ln.decode("utf-8", "replace") for ln in lines)
        got += lines
    want, rest = _reference_lines(stream, 8)
    assert got == want
    assert splitter.flush() == rest


@pytest.mark.parametrize("lines_per_s", [100, 10_000, 20_000, 50_000, 200_000])
def test_a_busy_pipe_waits_for_half_a_pipe_at_most_and_never_longer_than_its_bound(lines_per_s: int) -> None:
    """The reader of a busy pipe waits to gather a batch: at 10k lines/s of 61 bytes
    that is the full bound (~20 wake-ups/s), faster writers are read sooner, so what
    comes during a wait stays within half a pipe and the writer never blocks."""
    rate = lines_per_s * 61  # bytes/s
    # What the last read got: a read of BATCH or more is followed by no wait at all.
    span = min(0.05, BATCH / 2 / rate)
    read = int(rate * span)
    assert 0 < read < BATCH <= READ_CHUNK
    wait = batch_wait(read, span, 0.05)
    assert 0 < wait <= 0.05
    assert rate * wait <= BATCH * 1.01
    if lines_per_s <= 10_000:
        assert wait == 0.05
    assert batch_wait(0, span, 0.05) == 0.05


# -- RotatingLog ------------------------------------------------------------------


def test_rotation_keeps_n_files_of_whole_lines(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """Rotation by size keeps `keep` old files, each within max_bytes and ending on a line."""
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=100, keep=2)
    for i in range(200):
        log.write(b"line %04d\n" % i)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["trainer.log", "trainer.log.1", "trainer.log.2"]
    for p in tmp_path.iterdir():
        data = p.read_bytes()
        assert len(data) <= 100
        assert data.endswith(b"\n")
    assert log_bytes(path).splitlines()[-1] == b"line 0199"


def test_line_longer_than_max_bytes_gets_a_file_of_its_own(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """A single line above max_bytes is written whole, never split across files."""
    path = tmp_path / "t.log"
    log = make_log(closers, path, max_bytes=10, keep=5)
    log.write(b"short\n" + b"x" * 50 + b"\nafter\n")
    assert log_bytes(path) == b"short\n" + b"x" * 50 + b"\nafter\n"
    assert (b"x" * 50 + b"\n") in [p.read_bytes() for p in tmp_path.iterdir()]


def test_dev_full_buffers_reports_once_then_flushes_everything(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """On ENOSPC lines wait in memory, one error is reported, and all land once disk is back."""
    path = tmp_path / "trainer.log"
    target = {"disk": Path("/dev/full")}
    errors: list[OSError] = []
    recovered: list[bool] = []

    def open_log(p: Path) -> BinaryIO:
        return target["disk"].open("ab", buffering=0)

    log = make_log(
        closers,
        path,
        max_bytes=1 << 20,
        keep=2,
        open_log=open_log,
        on_error=errors.append,
        on_recover=lambda: recovered.append(True),
    )
    log.write(b"before\n")
    assert log.pending_bytes == len(b"before\n")
    for i in range(100):
        log.write(b"line %d\n" % i)
    assert len(errors) == 1
    assert errors[0].errno == errno.ENOSPC
    assert log.pending_bytes > 0
    assert log.dropped_lines == 0

    target["disk"] = path
    log.flush()
    assert log.pending_bytes == 0
    assert recovered == [True]
    expected = b"before\n" + b"".join(b"line %d\n" % i for i in range(100))
    assert path.read_bytes() == expected


def test_pending_over_bound_drops_oldest_and_counts_them(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """Past `max_pending` the oldest refused lines go, and `dropped_lines` says how many."""
    full = Path("/dev/full")
    log = make_log(
        closers,
        tmp_path / "t.log",
        max_bytes=1 << 20,
        keep=1,
        max_pending=100,
        open_log=lambda p: full.open("ab", buffering=0),
    )
    for i in range(50):
        log.write(b"line %02d\n" % i)  # 8 bytes each
    assert log.pending_bytes <= 100
    assert log.dropped_lines == 50 - log.pending_bytes // 8


def test_log_deleted_underneath_is_recreated(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """When someone deletes the log, the next writes recreate it at the same path."""
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=1 << 20, keep=1, reopen_check_interval=0.0)
    log.write(b"one\n")
    path.unlink()
    log.write(b"two\n")
    assert path.read_bytes() == b"two\n"


def test_log_replaced_underneath_is_reopened(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """When the path names a new file (inode changed), writes go to the new file."""
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=1 << 20, keep=1, reopen_check_interval=0.0)
    log.write(b"one\n")
    path.rename(tmp_path / "moved.log")
    path.write_bytes(b"fresh\n")
    log.write(b"two\n")
    assert path.read_bytes() == b"fresh\ntwo\n"
    assert (tmp_path / "moved.log").read_bytes() == b"one\n"


def test_compressed_rotation_leaves_only_complete_gz(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """Rotated files become .gz off the hot path, and the plain copy goes only after."""
    path = tmp_path / "t.log"
    log = make_log(closers, path, max_bytes=1000, keep=50, compress=True)
    lines = [b"line %05d\n" % i for i in range(1000)]
    for line in lines:
        log.write(line)
    assert log.wait_compressed(timeout=30)
    rotated = [p.name for p in tmp_path.iterdir() if p.name != "t.log"]
    assert rotated
    assert all(n.endswith(".gz") for n in rotated), rotated
    assert log_bytes(path) == b"".join(lines)


def test_crash_mid_compress_recovers_on_next_start(
    tmp_path: Path, closers: list[Callable[[], None]]
) -> None:
    """A half-written archive from a crash is dropped and the plain file compressed again."""
    path = tmp_path / "t.log"
    (tmp_path / "t.log.1").write_bytes(b"old line\n")
    (tmp_path / ".t.log.12345.gz.tmp").write_bytes(b"\x1f\x8b half")
    log = make_log(closers, path, max_bytes=1000, keep=3, compress=True)
    assert log.wait_compressed(timeout=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.log.1.gz"]
    assert gzip.decompress((tmp_path / "t.log.1.gz").read_bytes()) == b"old line\n"


# -- PipeCapture ------------------------------------------------------------------


def test_fast_child_100k_lines_rotated_none_lost(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
) -> None:
    """120k lines through a 64 KiB rotating log: every line in the files and to on_lines, in order."""
    n = 120_000
    code = (
        "import sys\n"
        f"data = b''.join(b'line %06d ' % i + b'x' * (i % 17) + b'\\n' for i in range({n}))\n"
        "for i in range(0, len(data), 7001):\n"
        "    sys.stdout.buffer.write(data[i:i + 7001]); sys.stdout.buffer.flush()\n"
    )
    p = child(children, code)
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=64 * 1024, keep=10_000, compress=True)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    assert p.wait(timeout=60) == 0
    cap.join(timeout=60)
    assert not cap.is_alive()
    assert cap.eof.is_set()
    expected = [b"line %06d " % i + b"x" * (i % 17) for i in range(n)]
    assert cap.lines_total == n
    assert sink.snapshot() == [e.decode() for e in expected]
    assert log.wait_compressed(timeout=60)
    assert log.rotations > 10
    assert log_bytes(path) == b"".join(e + b"\n" for e in expected)


def test_tqdm_frames_are_separate_lines_and_log_is_verbatim(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
) -> None:
    """`\\r` progress frames reach on_lines one by one; the file keeps the exact bytes."""
    out = b"\x1b[32m10%\x1b[0m\r20%\r30%\r\ndone\n"
    p = child(children, f"import sys; sys.stdout.buffer.write({out!r})")
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=1 << 20, keep=1)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    cap.join(timeout=30)
    assert sink.snapshot() == ["\x1b[32m10%\x1b[0m", "20%", "30%", "done"]
    assert path.read_bytes() == out


def test_binary_garbage_is_kept_in_file_and_replaced_in_lines(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
) -> None:
    """Invalid UTF-8, NULs and random bytes never crash capture; the file has them verbatim."""
    garbage = bytes(range(256)) * 40 + b"\xff\xfe\x00tail-without-newline"
    p = child(children, f"import sys; sys.stdout.buffer.write({garbage!r})")
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=1 << 20, keep=1)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    cap.join(timeout=30)
    assert not cap.is_alive()
    assert path.read_bytes() == garbage
    lines = sink.snapshot()
    assert lines[-1].endswith("\ufffd\ufffd\x00tail-without-newline")
    assert any("\ufffd" in line for line in lines)


def test_stop_returns_while_grandchild_holds_the_pipe(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
) -> None:
    """A grandchild keeping stdout open delays EOF for ever; stop() still ends capture."""
    code = (
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('bye', end='', flush=True)\n"
    )
    p = child(children, code)
    log = make_log(closers, tmp_path / "t.log", max_bytes=1 << 20, keep=1)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    assert p.wait(timeout=30) == 0
    time.sleep(0.2)
    assert not cap.eof.is_set()  # the grandchild still holds the write end
    t0 = time.monotonic()
    cap.stop(timeout=5)
    assert not cap.is_alive()
    assert time.monotonic() - t0 < 5
    assert sink.snapshot() == ["bye"]  # the unterminated last line is not lost
    assert (tmp_path / "t.log").read_bytes() == b"bye"


def test_failing_consumer_does_not_stop_draining(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
) -> None:
    """A consumer that raises is counted (in lines); capture keeps reading so the child
    never blocks."""
    p = child(children, "for i in range(300): print('x' * 100)")
    path = tmp_path / "t.log"
    log = make_log(closers, path, max_bytes=1 << 20, keep=1)

    def bad(text: str, t: float) -> None:
        raise RuntimeError("consumer bug")

    cap = PipeCapture(fd_of(p), log, bad, clock=SystemClock(), poll_interval=0.05)
    cap.start()
    closers.append(lambda: cap.stop(timeout=10))
    assert p.wait(timeout=30) == 0
    cap.join(timeout=30)
    assert cap.callback_errors == 300
    assert path.read_bytes().count(b"\n") == 300


def test_spew_tqdm_frames_each_become_a_line(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
    fake_argv: Callable[..., list[str]],
) -> None:
    """20k `\r` frames (one flushed write each) give 20k lines; the closing `\n` adds none."""
    n = 20_000
    p = child(children, fake_argv("spew", "--lines", str(n), "--cr"))
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=256 * 1024, keep=100)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    assert p.wait(timeout=60) == 0
    cap.join(timeout=60)
    lines = sink.snapshot()
    assert len(lines) == n + 1, lines[-3:]
    assert lines[0].startswith("line 0 |")
    assert lines[n - 1].startswith(f"line {n - 1} |")
    assert lines[-1] == f"spew done {n}"
    data = log_bytes(path)
    assert data.count(b"\r") == n
    assert data.endswith(f"{n}/{n}\r\nspew done {n}\n".encode())


def test_spew_stdout_and_stderr_on_one_pipe_keep_order(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
    fake_argv: Callable[..., list[str]],
) -> None:
    """Alternating stdout/stderr lines sharing the pipe arrive complete and in order."""
    n = 50_000
    p = child(children, fake_argv("spew", "--lines", str(n), "--stderr"))
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=64 * 1024, keep=1000)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    assert p.wait(timeout=60) == 0
    cap.join(timeout=60)
    expected = [f"line {i}" for i in range(n)] + [f"spew done {n}"]
    assert sink.snapshot() == expected
    assert log_bytes(path).decode().splitlines() == expected


def test_binary_garbage_fake_is_captured_byte_for_byte(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
    fake_argv: Callable[..., list[str]],
) -> None:
    """The deterministic garbage child lands in the log exactly as it wrote it."""
    argv = fake_argv("binary_garbage", "--bytes", "200000", "--seed", "7")
    reference = subprocess.run(argv, capture_output=True, timeout=60, check=True).stdout
    p = child(children, argv)
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=32 * 1024, keep=1000)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    assert p.wait(timeout=60) == 0
    cap.join(timeout=60)
    assert log_bytes(path) == reference
    lines = sink.snapshot()
    assert lines[0] == "garbage start"
    assert lines[-1] == "garbage done"
    assert (
        max(len(line.encode("utf-8", "surrogateescape")) for line in lines)
        < 4 * 64 * 1024
    )


def test_grandchild_fake_holding_pipe_does_not_block_stop(
    tmp_path: Path,
    closers: list[Callable[[], None]],
    children: list[subprocess.Popen[bytes]],
    fake_argv: Callable[..., list[str]],
) -> None:
    """The shared grandchild fake keeps the pipe open; stop() returns with what was said."""
    p = child(children, fake_argv("grandchild_holds_pipe", "--hold", "60"))
    log = make_log(closers, tmp_path / "t.log", max_bytes=1 << 20, keep=1)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    assert p.wait(timeout=30) == 0
    wait_until(
        lambda: "holding the pipe" in "".join(sink.snapshot()),
        10.0,
        lambda: repr(sink.snapshot()),
    )
    cap.stop(timeout=5)
    assert not cap.is_alive()
    assert not cap.eof.is_set()
    # Two processes share the pipe, so their writes may interleave mid-line.
    assert "parent exiting" in "".join(sink.snapshot())
    assert (tmp_path / "t.log").read_bytes() == b"".join(
        line.encode() + b"\n" for line in sink.snapshot()
    )


def test_secrets_split_across_reads_never_reach_the_log(tmp_path: Path, closers: list[Callable[[], None]]) -> None:
    """An HF token and a private key each cut in two by the pipe (two writes, the first
    read on its own before the second is written): trainer.log gets them redacted, as
    the log is written a whole line at a time; the lines handed on are the child's own."""
    token, key = "hf_A1b2C3d4E5f6G7h8I9j0K1l2", "0x" + "ab" * 32
    read_fd, write_fd = os.pipe()
    closers.append(lambda: os.close(read_fd))
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=1 << 20, keep=1)
    sink = Lines()
    # partial_after: however slow the machine, the pause between the writes is not taken
    # for a prompt waiting for its answer (that line is handed on, and logged, early).
    cap = PipeCapture(
        read_fd, log, sink, clock=SystemClock(), poll_interval=0.05, transform=redact_bytes, partial_after=60
    )
    cap.start()
    closers.append(lambda: cap.stop(timeout=10))
    pieces = [f"login {token[:9]}", f"{token[9:]} ok\n", f"PRIVATE_KEY={key[:30]}", f"{key[30:]}\n"]
    for i in range(len(pieces)):
        os.write(write_fd, pieces[i].encode())
        sent = len("".join(pieces[: i + 1]))
        wait_until(lambda sent=sent: cap.bytes_total == sent, timeout=10)  # read before the next write
    os.close(write_fd)
    assert cap.eof.wait(10)
    text = path.read_text()
    assert token not in text
    assert token[9:] not in text
    assert key not in text
    assert key[30:] not in text
    assert text.count("<redacted>") == 2
    assert sink.snapshot() == [f"login {token} ok", f"PRIVATE_KEY={key}"]


def test_prompt_without_newline_reaches_on_lines_while_child_waits_on_stdin(
    tmp_path: Path, children: list[subprocess.Popen[bytes]], closers: list[Callable[[], None]]
) -> None:
    """`input()` prints its question with no newline and blocks on stdin: the question
    is handed on after a short quiet spell, the log holds its exact bytes, and the
    answer's newline later adds no second copy of it. (bash `read -p` prints nothing
    when stdin is not a terminal, so Python's `input` stands in for it.)"""
    prompt = "Would you like to push models you train in the RL swarm to the Hugging Face Hub? [y/N] "
    code = f"print('starting', flush=True); ans = input({prompt!r}); print('got', ans)"
    p = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    children.append(p)
    path = tmp_path / "trainer.log"
    log = make_log(closers, path, max_bytes=1 << 20, keep=2)
    sink = Lines()
    cap = capture(closers, fd_of(p), log, sink)
    wait_until(lambda: "starting" in sink.snapshot(), timeout=10)
    t0 = time.monotonic()
    wait_until(lambda: prompt in sink.snapshot(), timeout=10)
    assert time.monotonic() - t0 < 2.0  # handed on after ~0.5 s of quiet
    log.flush()
    wait_until(lambda: log_bytes(path) == f"starting\n{prompt}".encode(), timeout=10)
    assert p.stdin is not None
    p.stdin.write(b"n\n")
    p.stdin.close()
    p.wait(timeout=10)
    assert cap.eof.wait(10)
    assert sink.snapshot() == ["starting", prompt, "got n"]
    log.flush()
    assert log_bytes(path) == f"starting\n{prompt}got n\n".encode()

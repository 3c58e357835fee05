"""The append-only log file, rotated by size with no line lost: `trainer.log` and
`monitor.log` both go through it.

Why it is careful:
- Rotation is rename + reopen (supervisor's `RotatingFileHandler.doRollover`), never
  copytruncate, which loses whatever is written between the copy and the truncate; it
  happens between lines, never inside one.
- A full or failing disk must not kill the daemon nor drop lines silently: refused
  bytes wait in a bounded buffer, are retried on every write, and only the oldest are
  dropped (and counted) once the bound is reached.
- A log deleted or replaced underneath is noticed before the next write and reopened.
- Old files are gzipped off the hot path; a crash mid-compression never leaves a
  half `.gz` as the only copy.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import structlog

from swarmd.clock import Clock, SystemClock
from swarmd.ratelimit import ReportLimiter

_log = structlog.get_logger("swarmd.rotating")

MAX_PENDING = 64 * 1024 * 1024
_COMPRESS_BLOCK = 1024 * 1024


def open_append(path: Path) -> BinaryIO:
    """Default `open_log`: unbuffered append, so every `write` reaches the kernel.

    Unbuffered matters twice: a crash of swarmd loses nothing already "written", and
    an `ENOSPC` surfaces on the write that caused it, so we know which bytes the disk
    refused and can keep exactly those.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab", buffering=0)


def count_lines(data: bytes) -> int:
    """Lines in `data` as the splitter sees them (a tail without a break counts as one)."""
    breaks = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    if data and data[-1:] not in (b"\n", b"\r"):
        breaks += 1
    return breaks


def last_break(data: bytes, start: int, end: int) -> int:
    """Index of the last `\\n` or `\\r` in `data[start:end]`, or -1."""
    return max(data.rfind(b"\n", start, end), data.rfind(b"\r", start, end))


def next_break(data: bytes, start: int) -> int:
    """Index just past the first line break at or after `start` (or `len(data)`)."""
    hits = [i for i in (data.find(b"\n", start), data.find(b"\r", start)) if i >= 0]
    return min(hits) + 1 if hits else len(data)


class _WriteRefusedError(Exception):
    """Internal: the disk refused bytes; `written` of the chunk made it before."""

    def __init__(self, written: int, error: OSError) -> None:
        super().__init__(str(error))
        self.written = written
        self.error = error


class RotatingLog:
    """Append-only log file rotated by size: file -> file.1 -> ... -> file.N.

    Thread-safe. Used for both `trainer.log` and `monitor.log`. Writes never raise
    `OSError`: bytes the disk refuses (ENOSPC, EIO, a vanished directory) wait in
    `pending`, are retried on every later `write`/`flush` (the file is reopened
    through `open_log` first, which is also how an I/O error on a stale descriptor
    heals), and are reported through `on_error` once per episode, not once per line.

    `open_log` should return an unbuffered binary file (see `open_append`); with a
    buffered one the error surfaces late and the refused bytes cannot be told apart.
    Compression of rotated files runs on a background thread; the plain file is
    removed only after its complete `.gz` has been renamed into place, so a crash
    mid-compress leaves the plain copy (compressed on the next start).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        keep: int,
        compress: bool = False,
        *,
        open_log: Callable[[Path], BinaryIO] | None = None,
        on_error: Callable[[OSError], None] | None = None,
        on_recover: Callable[[], None] | None = None,
        clock: Clock | None = None,
        reopen_check_interval: float = 0.0,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if keep < 0:
            raise ValueError("keep must be >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.compress = compress
        self._open_log = open_log or open_append
        self._on_error = on_error
        self._on_recover = on_recover
        self._clock: Clock = clock or SystemClock()
        # 0 = check on every write: one stat() per chunk (a busy pipe is written in
        # batches), and a deleted log then loses nothing to the unlinked file.
        self._check_interval = reopen_check_interval
        self._max_pending = max_pending
        self._lock = threading.RLock()
        self._file: BinaryIO | None = None
        self._ident: tuple[int, int] | None = None
        self._size = 0
        self._last_check = float("-inf")
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._failing = False
        self._closed = False
        self.dropped_lines = 0
        self._drop_reports = ReportLimiter(self._clock)
        self.rotations = 0
        # compression worker state (guarded by _lock)
        self._jobs: deque[tuple[int, int]] = deque()
        self._worker: threading.Thread | None = None
        self._abort = threading.Event()
        self._idle = threading.Condition(self._lock)
        if compress:
            self._recover_compression()

    # -- public -------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        with self._lock:
            return self._pending_bytes

    def write(self, data: bytes) -> None:
        """Append whole line(s); rotates before a write that would pass `max_bytes`."""
        if not data:
            return
        with self._lock:
            if self._closed:
                raise ValueError(f"write to closed log {self.path}")
            self._check_replaced()
            self._pending.append(bytes(data))
            self._pending_bytes += len(data)
            self._bound_pending()
            self._drain()

    def flush(self) -> None:
        """Retry bytes the disk refused earlier (the file itself is unbuffered)."""
        with self._lock:
            if not self._closed:
                self._drain()

    def close(self, timeout: float = 5.0) -> None:
        """Last retry, close the file, and give compression `timeout` s to finish.

        Bytes still refused at close are counted in `dropped_lines`; a compression
        that does not finish in time is abandoned and the plain file kept.
        """
        with self._lock:
            if self._closed:
                return
            self._drain()
            self._dropped(sum(count_lines(c) for c in self._pending))
            self._pending.clear()
            self._pending_bytes = 0
            self._closed = True
            self._close_file()
            self._idle.wait_for(lambda: self._worker is None, timeout)
            worker = self._worker
            self._abort.set()
        if worker is not None:
            worker.join(timeout)

    def reconfigure(self, max_bytes: int, keep: int, compress: bool) -> None:
        """New limits from a reload. They hold from the next write: a file already past
        the new `max_bytes` rotates before it, and the next rotation drops what passes
        the new `keep`."""
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if keep < 0:
            raise ValueError("keep must be >= 0")
        with self._lock:
            self.max_bytes, self.keep, self.compress = max_bytes, keep, compress

    def wait_compressed(self, timeout: float) -> bool:
        """Block until no compression is queued or running; True if so in time."""
        with self._lock:
            return self._idle.wait_for(lambda: self._worker is None, timeout)

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------

    def _drain(self) -> None:
        while self._pending:
            chunk = self._pending[0]
            try:
                self._emit(chunk)
            except _WriteRefusedError as failed:
                if failed.written:
                    self._pending[0] = chunk[failed.written :]
                    self._pending_bytes -= failed.written
                self._close_file()  # reopen through open_log on the next attempt
                self._report(failed.error)
                return
            self._pending.popleft()
            self._pending_bytes -= len(chunk)
        if self._failing:
            self._failing = False
            _log.info("log_write_recovered", path=str(self.path))
            if self._on_recover is not None:
                self._on_recover()

    def _emit(self, chunk: bytes) -> None:
        """Write all of `chunk`, rotating between lines; raise `_WriteRefusedError`."""
        off, total = 0, len(chunk)
        while off < total:
            try:
                f = self._ensure_open()
            except OSError as exc:
                raise _WriteRefusedError(off, exc) from exc
            room = self.max_bytes - self._size
            end = total
            rotate_after = False
            if total - off > room:
                cut = last_break(chunk, off, off + max(room, 0))
                if cut >= 0:
                    end, rotate_after = cut + 1, True
                elif self._size > 0:
                    if self._rotate():
                        continue
                else:  # one line longer than max_bytes: it gets a file of its own
                    end = next_break(chunk, off)
                    rotate_after = end < total
            off = self._write_fully(f, chunk, off, end)
            if rotate_after and not self._rotate():
                rotate_after = False  # keep appending; the error is reported

    def _write_fully(self, f: BinaryIO, chunk: bytes, off: int, end: int) -> int:
        view = memoryview(chunk)
        while off < end:
            try:
                n = f.write(view[off:end])
            except OSError as exc:
                raise _WriteRefusedError(off, exc) from exc
            if not n:  # a non-blocking file said "not now": treat as refused
                raise _WriteRefusedError(off, BlockingIOError("log write returned 0"))
            off += n
            self._size += n
        return off

    def _ensure_open(self) -> BinaryIO:
        if self._file is None:
            f = self._open_log(self.path)
            st = os.fstat(f.fileno())
            self._file = f
            self._ident = (st.st_dev, st.st_ino)
            self._size = st.st_size
            self._last_check = self._clock.monotonic()
        return self._file

    def _close_file(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            with contextlib.suppress(OSError):
                f.close()

    def _check_replaced(self) -> None:
        """Reopen when `path` no longer names our file (deleted or replaced)."""
        if self._file is None:
            return
        now = self._clock.monotonic()
        if now - self._last_check < self._check_interval:
            return
        self._last_check = now
        try:
            st = self.path.stat()
            same = (st.st_dev, st.st_ino) == self._ident
        except OSError:
            same = False
        if not same:
            _log.info("log_reopened", path=str(self.path), reason="replaced_or_deleted")
            self._close_file()

    def _report(self, exc: OSError) -> None:
        if self._failing:
            return
        self._failing = True
        _log.warning("log_write_failed", path=str(self.path), error=str(exc))
        if self._on_error is not None:
            self._on_error(exc)

    def _bound_pending(self) -> None:
        while self._pending_bytes > self._max_pending and len(self._pending) > 1:
            old = self._pending.popleft()
            self._pending_bytes -= len(old)
            self._dropped(count_lines(old))

    def _dropped(self, lines: int) -> None:
        """Count lines given up for good, and say so (rate-limited, with the count)."""
        if lines <= 0:
            return
        self.dropped_lines += lines
        count = self._drop_reports.occurred(lines)
        if count is not None:
            _log.error(
                "log_lines_dropped", path=str(self.path), lines=count, total=self.dropped_lines,
                fix="free space where this log lives; lines wait in memory only up to a bound",
            )

    # -- rotation -----------------------------------------------------------------

    def _numbered(self, i: int) -> tuple[Path, Path]:
        plain = self.path.with_name(f"{self.path.name}.{i}")
        return plain, plain.with_name(plain.name + ".gz")

    def _rotate(self) -> bool:
        self._close_file()
        try:
            self._shift()
        except OSError as exc:
            self._report(exc)
            return False
        self.rotations += 1
        self._size = 0
        if self.compress and self.keep > 0:
            self._enqueue(self._numbered(1)[0])
        return True

    def _shift(self) -> None:
        """file.i -> file.i+1 from the oldest down, dropping what passes `keep`.

        Only existing files are touched (one directory listing), so a large `keep`
        costs nothing per rotation.
        """
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in sorted(self._existing_numbers(), reverse=True):
            for src, dst in zip(self._numbered(i), self._numbered(i + 1), strict=True):
                with contextlib.suppress(FileNotFoundError):
                    if i >= self.keep:
                        src.unlink()
                    else:
                        src.rename(dst)
        with contextlib.suppress(FileNotFoundError):
            self.path.rename(self._numbered(1)[0])

    def _existing_numbers(self) -> set[int]:
        prefix = self.path.name + "."
        found: set[int] = set()
        with contextlib.suppress(OSError):  # no directory: nothing to shift
            for entry in self.path.parent.iterdir():
                if entry.name.startswith(prefix):
                    number = entry.name[len(prefix) :].removesuffix(".gz")
                    if number.isdigit():
                        found.add(int(number))
        return found

    # -- compression (off the hot path) ---------------------------------------------

    def _tmp_name(self, ident: tuple[int, int]) -> Path:
        return self.path.with_name(f".{self.path.name}.{ident[1]}.gz.tmp")

    def _recover_compression(self) -> None:
        """After a crash: drop half-written archives, compress plain rotated files."""
        parent = self.path.parent
        if not parent.is_dir():
            return
        for tmp in parent.glob(f".{self.path.name}.*.gz.tmp"):
            tmp.unlink(missing_ok=True)
        with self._lock:
            for i in sorted(self._existing_numbers()):
                plain = self._numbered(i)[0]
                if 1 <= i <= self.keep and plain.exists():
                    self._enqueue(plain)

    def _enqueue(self, plain: Path) -> None:
        try:
            st = plain.stat()
        except OSError:
            return
        self._jobs.append((st.st_dev, st.st_ino))
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._compress_loop,
                name=f"compress:{self.path.name}",
                daemon=True,
            )
            self._worker.start()

    def _find_plain(self, ident: tuple[int, int]) -> Path | None:
        """Where the rotated file with this inode is now (rotations move it)."""
        for i in sorted(self._existing_numbers()):
            plain = self._numbered(i)[0]
            try:
                st = plain.stat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ident:
                return plain
        return None

    def _compress_loop(self) -> None:
        while True:
            with self._lock:
                if not self._jobs or self._abort.is_set():
                    self._jobs.clear()
                    self._worker = None
                    self._idle.notify_all()
                    return
                ident = self._jobs.popleft()
                src = self._open_job(ident)
            if src is None:
                continue
            tmp = self._tmp_name(ident)
            try:
                with src:
                    done = self._gzip(src, tmp)
            except OSError as exc:
                _log.warning("log_compress_failed", path=str(self.path), error=str(exc))
                done = False
            with self._lock:
                self._commit(ident, tmp, done)

    def _open_job(self, ident: tuple[int, int]) -> BinaryIO | None:
        plain = self._find_plain(ident)
        if plain is None:
            return None
        try:
            return plain.open("rb")
        except OSError:
            return None

    def _gzip(self, src: BinaryIO, tmp: Path) -> bool:
        with tmp.open("wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as gz:
                while block := src.read(_COMPRESS_BLOCK):
                    if self._abort.is_set():
                        return False
                    gz.write(block)
            raw.flush()
            os.fsync(raw.fileno())  # the .gz must be durable before the plain goes
        return True

    def _commit(self, ident: tuple[int, int], tmp: Path, done: bool) -> None:
        plain = self._find_plain(ident) if done else None
        try:
            if plain is None:
                tmp.unlink(missing_ok=True)
                return
            tmp.replace(plain.with_name(plain.name + ".gz"))
            plain.unlink()
        except OSError as exc:
            _log.warning("log_compress_failed", path=str(self.path), error=str(exc))
            tmp.unlink(missing_ok=True)

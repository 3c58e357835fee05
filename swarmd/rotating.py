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
  half `.gz` as the only copy (`log_archive` owns the rotated files).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import structlog

from swarmd.clock import Clock, SystemClock
from swarmd.log_archive import LogArchive
from swarmd.ratelimit import ReportLimiter

_log = structlog.get_logger("swarmd.rotating")

MAX_PENDING = 64 * 1024 * 1024


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
        self._archive = LogArchive(self.path, self._lock)
        if compress:
            self._archive.recover(keep)

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
        self._archive.stop(timeout)

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
        return self._archive.wait_idle(timeout)

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

    def _rotate(self) -> bool:
        self._close_file()
        try:
            self._archive.shift(self.keep)
        except OSError as exc:
            self._report(exc)
            return False
        self.rotations += 1
        self._size = 0
        if self.compress and self.keep > 0:
            self._archive.enqueue(self._archive.numbered(1)[0])
        return True

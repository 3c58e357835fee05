"""Follow extra log files the trainer writes, like `tail -F`, and hand out lines.

Why it is built this way:
- watchdog events only wake the reader; they never carry data. inotify queues can
  overflow and drop events, and a directory that does not exist yet cannot be
  watched, so a periodic rescan (`rescan_interval`) is the safety net.
- One reader thread owns every descriptor, so there are no locks around offsets.
- Rotation is recognised by the inode at the path changing (circus's
  `WatchedFileStream` does the same): the old descriptor is read to EOF first, so
  lines written just before the rename are not lost, then the new file is read from 0.
- Truncation (size below our offset) restarts at 0. A file truncated and regrown
  past our offset between two looks cannot be told from appends; `tail -F` has the
  same blind spot.
- Files that exist at start are followed from their end (no replay of history);
  files that appear later are read from their beginning.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from swarmd.capture import MAX_LINE, READ_CHUNK, LineSplitter
from swarmd.clock import Clock
from swarmd.ratelimit import ReportLimiter

_log = structlog.get_logger("swarmd.follow")

# Read at most this much of one file per pass, so one spewing file cannot starve
# the others; the pass then re-arms itself immediately.
_MAX_PER_PASS = 4 * 1024 * 1024
# How long a descriptor to a deleted (not replaced) file is kept, in case the writer
# still appends to it before reopening.
_DELETED_GRACE = 30.0
# A file dropped by a reload is read to its end, but a writer still spewing into it
# must not hold the switch: at most this many passes.
_DROP_PASSES = 8


class _Tracked:
    """One followed path and, when open, the file currently behind it."""

    def __init__(self, path: Path, max_line: int) -> None:
        self.path = path
        self.fd: int | None = None
        self.ident: tuple[int, int] | None = None
        self.offset = 0
        self.max_line = max_line
        self.splitter = LineSplitter(max_line)
        self.missing_since: float | None = None

    def open(self, at_end: bool, at: int | None = None) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        st = os.fstat(fd)
        self.fd = fd
        self.ident = (st.st_dev, st.st_ino)
        self.offset = at if at is not None else os.lseek(fd, 0, os.SEEK_END) if at_end else 0
        self.splitter = LineSplitter(self.max_line)
        self.missing_since = None
        return True

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            with contextlib.suppress(OSError):
                os.close(fd)
        self.ident = None


class _Waker(FileSystemEventHandler):
    """Turns watchdog events about our files into a wake-up; nothing else."""

    def __init__(self, names: set[str], wake: threading.Event) -> None:
        super().__init__()
        self.names = names  # replaced whole (never mutated) when the followed set changes
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        names = self.names
        for p in (event.src_path, getattr(event, "dest_path", "")):
            name = os.fsdecode(p) if p else ""
            if name and name in names:
                self._wake.set()
                return


class FileFollower:
    """Follows `paths` and calls `on_line(path, line, t_mono)` for each complete line.

    `on_line` runs on the follower's thread and must be cheap. Survives rotation by
    rename, truncation, files appearing late, slow writers (partial lines kept until
    their newline) and deletion.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        on_line: Callable[[Path, str, float], None],
        *,
        clock: Clock,
        rescan_interval: float = 1.0,
        max_line: int = MAX_LINE,
    ) -> None:
        self._max_line = max_line
        self._files = [
            _Tracked(Path(p).absolute(), max_line) for p in dict.fromkeys(paths)
        ]
        self._changes: list[_Tracked] | None = None  # a new set for the reader to take
        self._changes_lock = threading.Lock()
        self._on_line = on_line
        self._clock = clock
        self._rescan = rescan_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: BaseObserver | None = None
        self._watched: set[Path] = set()
        self._handler = _Waker({str(t.path) for t in self._files}, self._wake)
        self.lines_total = 0
        self.callback_errors = 0
        self._error_reports = ReportLimiter(clock)

    def start(self, offsets: Mapping[Path, int] | None = None) -> None:
        """Open existing files at their end (synchronously), then follow in a thread.
        `offsets`: start these files at this byte instead (`swarmd tail` has printed
        the history up to there)."""
        if self._thread is not None:
            raise RuntimeError("FileFollower already started")
        at = {Path(k).absolute(): v for k, v in (offsets or {}).items()}
        for t in self._files:
            t.open(at_end=True, at=at.get(t.path))
        self._observer = Observer()
        self._observer.daemon = True
        self._watch_dirs()
        self._observer.start()
        self._thread = threading.Thread(target=self._run, name="follow", daemon=True)
        self._thread.start()

    @property
    def paths(self) -> list[Path]:
        with self._changes_lock:
            files = self._changes if self._changes is not None else self._files
            return [t.path for t in files]

    def set_paths(self, paths: Sequence[Path]) -> None:
        """Follow exactly `paths` from now on (a reload). Paths already followed keep
        their offset; new ones that exist are opened at their end now, so nothing
        written from this call on is missed; dropped ones are read to the end, then
        closed. The reader thread makes the switch at its next pass."""
        wanted = [Path(p).absolute() for p in dict.fromkeys(paths)]
        with self._changes_lock:
            current = {t.path: t for t in (self._changes if self._changes is not None else self._files)}
            files = []
            for path in wanted:
                t = current.get(path)
                if t is None:
                    t = _Tracked(path, self._max_line)
                    if self._thread is not None:
                        t.open(at_end=True)
                files.append(t)
            if self._thread is None:
                self._files = files
                self._handler.names = {str(t.path) for t in files}
                return
            self._changes = files
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Read what is already written, then stop the thread and close every fd."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            with self._changes_lock:
                pending, self._changes = self._changes or [], None
            for t in (*self._files, *pending):
                t.close()

    # -- reader thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._rescan)
            self._wake.clear()
            self._take_changes()
            if self._watch_dirs_needed():
                self._watch_dirs()
            more = False
            for t in self._files:
                more |= self._poll(t)
            if more:
                self._wake.set()
        for t in self._files:  # a last look so lines written just before stop count
            self._poll(t)

    def _take_changes(self) -> None:
        with self._changes_lock:  # `paths` never sees a set half switched
            files, self._changes = self._changes, None
            if files is None:
                return
            old, self._files = self._files, files
        kept = {id(t) for t in files}
        for t in old:
            if id(t) not in kept:
                for _ in range(_DROP_PASSES):  # what was written before the switch still counts
                    if not self._poll(t):
                        break
                if t.fd is not None:
                    self._emit_rest(t)
                    t.close()
        self._handler.names = {str(t.path) for t in files}

    def _watch_dirs_needed(self) -> bool:
        return bool({t.path.parent for t in self._files} - self._watched)

    def _watch_dirs(self) -> None:
        assert self._observer is not None  # noqa: S101 - start() sets it first
        for parent in {t.path.parent for t in self._files} - self._watched:
            if not parent.is_dir():
                continue
            try:
                self._observer.schedule(self._handler, str(parent), recursive=False)
            except OSError as exc:  # e.g. inotify watch limit: the rescan still works
                _log.warning("follow_watch_failed", dir=str(parent), error=str(exc))
            self._watched.add(parent)

    def _poll(self, t: _Tracked) -> bool:
        """Catch up on one path; True if there is more to read right away."""
        try:
            st = t.path.stat()
            ident: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            ident = None
        if t.fd is None:
            if ident is None or not t.open(at_end=False):
                return False
            _log.info("follow_opened", path=str(t.path))
        if ident == t.ident:
            return self._read(t)
        # The path now names another file, or nothing: finish the old one first.
        more = self._read(t)
        if more:
            return True
        if ident is None:
            now = self._clock.monotonic()
            if t.missing_since is None:
                t.missing_since = now
            if now - t.missing_since < _DELETED_GRACE:
                return False
            _log.info("follow_deleted", path=str(t.path))
        else:
            _log.info("follow_rotated", path=str(t.path))
        self._emit_rest(t)
        t.close()
        return ident is not None and t.open(at_end=False) and self._read(t)

    def _read(self, t: _Tracked) -> bool:
        assert t.fd is not None  # noqa: S101 - callers open first
        try:
            size = os.fstat(t.fd).st_size
        except OSError:
            return False
        if size < t.offset:
            _log.info("follow_truncated", path=str(t.path), size=size, offset=t.offset)
            t.offset = 0
            t.splitter.flush()  # a line cut by truncation is gone with it
        budget = _MAX_PER_PASS
        while budget > 0:
            try:
                data = os.pread(t.fd, READ_CHUNK, t.offset)
            except OSError:
                return False
            if not data:
                return False
            t.offset += len(data)
            budget -= len(data)
            now = self._clock.monotonic()
            for line in t.splitter.feed(data):
                self._deliver(t.path, line, now)
        return True

    def _emit_rest(self, t: _Tracked) -> None:
        rest = t.splitter.flush()
        if rest:
            self._deliver(t.path, rest, self._clock.monotonic())

    def _deliver(self, path: Path, line: bytes, now: float) -> None:
        self.lines_total += 1
        try:
            self._on_line(path, line.decode("utf-8", "replace"), now)
        except Exception as exc:  # noqa: BLE001 - reported (rate-limited) just below
            # A consumer bug must not stop following the other files.
            self.callback_errors += 1
            # A report per line would stall reading: one per interval, with the count.
            count = self._error_reports.occurred()
            if count is not None:
                _log.error(
                    "follow_callback_failed", path=str(path), lines=count,
                    total=self.callback_errors, error=f"{type(exc).__name__}: {exc}",
                    exc_info=self.callback_errors == 1,
                )

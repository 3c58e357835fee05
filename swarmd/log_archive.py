"""The rotated files behind one log: `file.1` ... `file.N` (`.gz` when compressed),
shifted on each rotation, trimmed to `keep`, and gzipped off the writer's hot path.

Why it is careful: the plain file is removed only after its complete `.gz` has been
fsynced and renamed into place, so a crash mid-compression never leaves a half `.gz`
as the only copy (`recover` finishes the job on the next start). Rotations move a
file while it is being compressed, so a job follows the file by inode, not by name.
The writer (`rotating.RotatingLog`) owns the lock both share.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import threading
from collections import deque
from pathlib import Path
from typing import BinaryIO

import structlog

_log = structlog.get_logger("swarmd.log_archive")

_COMPRESS_BLOCK = 1024 * 1024

__all__ = ["LogArchive"]


class LogArchive:
    """Numbering, retention and background compression of one log's rotated files."""

    def __init__(self, path: Path, lock: threading.RLock) -> None:
        self.path = path
        self._lock = lock
        # compression worker state (guarded by _lock)
        self._jobs: deque[tuple[int, int]] = deque()
        self._worker: threading.Thread | None = None
        self._abort = threading.Event()
        self._idle = threading.Condition(self._lock)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no compression is queued or running; True if so in time."""
        with self._lock:
            return self._idle.wait_for(lambda: self._worker is None, timeout)

    def stop(self, timeout: float) -> None:
        """Give compression `timeout` s to finish, then abandon it (the plain file stays)."""
        with self._lock:
            self._idle.wait_for(lambda: self._worker is None, timeout)
            worker = self._worker
            self._abort.set()
        if worker is not None:
            worker.join(timeout)

    def numbered(self, i: int) -> tuple[Path, Path]:
        plain = self.path.with_name(f"{self.path.name}.{i}")
        return plain, plain.with_name(plain.name + ".gz")

    def shift(self, keep: int) -> None:
        """file.i -> file.i+1 from the oldest down, dropping what passes `keep`.

        Only existing files are touched (one directory listing), so a large `keep`
        costs nothing per rotation.
        """
        if keep == 0:
            self.path.unlink(missing_ok=True)
            return
        for i in sorted(self._existing_numbers(), reverse=True):
            for src, dst in zip(self.numbered(i), self.numbered(i + 1), strict=True):
                with contextlib.suppress(FileNotFoundError):
                    if i >= keep:
                        src.unlink()
                    else:
                        src.rename(dst)
        with contextlib.suppress(FileNotFoundError):
            self.path.rename(self.numbered(1)[0])

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

    def recover(self, keep: int) -> None:
        """After a crash: drop half-written archives, compress plain rotated files."""
        parent = self.path.parent
        if not parent.is_dir():
            return
        for tmp in parent.glob(f".{self.path.name}.*.gz.tmp"):
            tmp.unlink(missing_ok=True)
        with self._lock:
            for i in sorted(self._existing_numbers()):
                plain = self.numbered(i)[0]
                if 1 <= i <= keep and plain.exists():
                    self.enqueue(plain)

    def enqueue(self, plain: Path) -> None:
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
            plain = self.numbered(i)[0]
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

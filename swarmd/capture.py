"""Child output -> lines -> the rotating log, with no line lost.

Why this module is careful:
- The supervisor must drain the child's pipe continuously: a full pipe blocks the
  trainer in `write()`, which looks exactly like the hang we are watching for.
- The log is a byte-exact copy of what the child wrote (ANSI, `\\r` frames, invalid
  UTF-8 and NULs included; secrets redacted by the supervisor's `transform`), so
  `trainer.log` reads like the terminal would have.
- Rotation and full disks are `swarmd.rotating.RotatingLog`'s business.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
from collections.abc import Callable

import structlog

from swarmd.clock import Clock
from swarmd.ratelimit import ReportLimiter
from swarmd.rotating import RotatingLog, count_lines, last_break, open_append

__all__ = ["BATCH", "MAX_LINE", "READ_CHUNK", "LineSplitter", "PipeCapture", "RotatingLog", "batch_wait", "count_lines", "open_append"]

_EOL = re.compile(rb"\r\n|\r|\n")
_log = structlog.get_logger("swarmd.capture")

READ_CHUNK = 64 * 1024
BATCH = READ_CHUNK // 2  # what a busy pipe's reader waits to gather (a Linux pipe holds 64 KiB)
_BUSY_GAP = 0.002
# The longest wait a pipe gets on its first busy read after a quiet spell: a one-off
# burst (a logged traceback, a config dump) is not held up like a steady stream.
_FIRST_WAIT = 0.02
MAX_LINE = 64 * 1024


class LineSplitter:
    """Bytes in, lines out (without their terminators); pure, no I/O.

    `\\n` and `\\r` both end a line, so each tqdm frame is a line; `\\r\\n` is one break,
    even when the `\\r` and the `\\n` arrive in different chunks. A line longer than
    `max_line` is cut into pieces so a child that never prints a newline cannot grow
    our memory without bound.

    `take_partial()` hands out an unterminated line early (a prompt waiting for its
    answer never gets its newline); when that line ends later, only what came after
    the part already handed out is a line, so nobody sees the prompt twice.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line <= 0:
            raise ValueError("max_line must be positive")
        self._max = max_line
        self._partial = b""
        self._taken = 0  # leading bytes of `_partial` already handed out by take_partial
        # The previous chunk ended in \r: a leading \n is its pair, not a new line.
        self._skip_lf = False

    def feed(self, data: bytes) -> list[bytes]:
        """The lines `data` completes."""
        joined, count = self.feed_joined(data)
        return joined.split(b"\n") if count else []

    def feed_joined(self, data: bytes) -> tuple[bytes, int]:
        """`feed`'s lines joined by `\\n`, and how many there are ((b"", 0) for none).

        The pipe reader's hot path: a chunk of plain `\\n`-ended lines is then one slice
        of the buffer, not a list of lines that is joined again downstream."""
        if self._skip_lf and data:
            # Only the very next byte can pair with that \r (a later \n is a line).
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        if not data:
            return b"", 0
        self._skip_lf = data[-1:] == b"\r"
        buf = self._partial + data
        cut = buf.rfind(b"\n")
        if b"\r" in buf or cut > self._max or len(buf) - cut - 1 > self._max:
            # `\r` breaks, or a line (or the unterminated rest) that may need cutting.
            lines = self._split(buf)
            joined, count = b"\n".join(lines), len(lines)
        elif cut < 0:
            self._partial = buf
            return b"", 0
        else:
            # No line can be longer than `max_line`: the whole part up to the last
            # break, as it is (~5x cheaper than the regex, and no list).
            joined, count, self._partial = buf[:cut], buf.count(b"\n", 0, cut) + 1, buf[cut + 1 :]
        if self._taken and count:
            # The first line out starts with the old partial (it is at most `max_line`
            # long, so no cut falls inside it): drop the part already handed out.
            first = joined.find(b"\n")
            first_len = len(joined) if first < 0 else first
            if first_len > self._taken:
                joined = joined[self._taken :]
            else:  # the line was all handed out already
                joined, count = joined[first_len + 1 :], count - 1
            self._taken = 0
        return joined, count

    def _split(self, buf: bytes) -> list[bytes]:
        """The general case: any breaks, lines cut at `max_line`; keeps the partial."""
        parts = _EOL.split(buf) if b"\r" in buf else buf.split(b"\n")
        partial = parts.pop()
        if parts and max(map(len, parts)) > self._max:
            lines = [piece for part in parts for piece in self._cap(part)]
        else:
            lines = parts
        while len(partial) > self._max:
            lines.append(partial[: self._max])
            partial = partial[self._max :]
        self._partial = partial
        return lines

    def pending(self) -> bool:
        """An unterminated line holds bytes not handed out yet."""
        return len(self._partial) > self._taken

    def take_partial(self) -> bytes:
        """The unterminated line's bytes not handed out yet (b"" if none); keeps the
        line open, so its end still comes out of `feed` (without these bytes)."""
        fresh = self._partial[self._taken :]
        self._taken = len(self._partial)
        return fresh

    def flush(self) -> bytes:
        """The unterminated remainder (at EOF it is the last line), and forget it."""
        rest, self._partial = self._partial[self._taken :], b""
        self._taken = 0
        return rest

    def _cap(self, line: bytes) -> list[bytes]:
        if len(line) <= self._max:
            return [line]
        return [line[i : i + self._max] for i in range(0, len(line), self._max)]


def batch_wait(read: int, span: float, most: float) -> float:
    """How long a busy pipe's reader waits before its next read: until about half a
    pipe (`BATCH` bytes) has come at the rate of the last read (`read` bytes that came
    over `span` seconds), and never longer than `most`. Half, so an estimate that is
    off by 2x still leaves the writer room: a full pipe would block the trainer."""
    return min(most, span * BATCH / read) if read > 0 else most


class PipeCapture(threading.Thread):
    """Drains one child fd until EOF: bytes to the log unchanged, lines to `on_lines`.

    `on_lines(text, t_mono)` gets the lines completed by one read, decoded as UTF-8
    with replacement (ANSI kept) and joined by `\\n` (no trailing one; a single line
    is just that line): one call per read, not per line, because at 10k lines/s the
    per-line calls and checks were most of swarmd's CPU (`LogAnalyzer.feed_text`
    passes the quiet runs in bulk). It runs on this thread, so it must be
    cheap (the supervisor enqueues).
    EOF only comes when every writer has closed the pipe, and a grandchild (p2pd)
    may keep it open after the trainer died: `stop()` ends the loop anyway, after
    draining what is already readable, so the supervisor never waits forever.
    """

    def __init__(
        self,
        fd: int,
        log: RotatingLog,
        on_lines: Callable[[str, float], None],
        *,
        clock: Clock,
        name: str = "capture",
        max_line: int = MAX_LINE,
        poll_interval: float = 0.2,
        transform: Callable[[bytes], bytes] | None = None,
        coalesce: float = 0.05,
        partial_after: float = 0.5,
    ) -> None:
        super().__init__(name=name, daemon=True)
        # An unterminated line that sat this long with the pipe quiet is handed on (and
        # written to the log): a node asking `[y/N] ` and waiting on stdin never sends
        # the newline, and must still be seen live.
        self._partial_after = partial_after
        self._last_data_at = 0.0
        # A busy pipe (see `_pace`) is read in batches: before the next read, wait
        # until about half a pipe has come at the rate just seen, at most `coalesce`
        # (`batch_wait`). A trainer printing 10k
        # lines/s one write at a time then costs ~20 wake-ups/s instead of 10k (each
        # wake-up finds the caches cold: measured, 50 ms instead of 20 saved ~0.8% of a
        # core at 10k lines/s), while a faster one is read sooner, so its pipe never
        # fills. A line in such a stream waits at most `coalesce`; a quiet pipe, the
        # normal case for an error line, is read at once (sub-ms), and the first wait
        # after quiet is at most `_FIRST_WAIT`, so the line after a one-off burst
        # waits no longer than it did with a fixed 20 ms.
        self._coalesce = coalesce
        self._busy = 0  # busy reads in a row
        self._last_read = 0
        self._span = 0.0  # how long the last read's bytes took to come
        self._last_read_at = float("-inf")
        # Applied to whole lines on their way to the log (secret redaction); the
        # lines handed to `on_lines` are the child's own.
        self._transform = transform
        self._fd = fd
        self._log = log
        self._on_lines = on_lines
        self._clock = clock
        self._splitter = LineSplitter(max_line)
        self._max_line = max_line
        self._poll_ms = int(poll_interval * 1000)
        self._stop_flag = threading.Event()
        self._raw = b""  # bytes after the last line break, not yet in the log
        self.lines_total = 0
        self.bytes_total = 0
        self.callback_errors = 0
        self._error_reports = ReportLimiter(clock)
        self.eof = threading.Event()

    def stop(self, timeout: float) -> None:
        """Drain what is readable now, write any partial last line, and join.

        The fd is not closed here: its owner (the spawner) closes it.
        """
        self._stop_flag.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        at_eof = False
        try:
            while not self._stop_flag.is_set():
                if poller.poll(self._poll_timeout_ms()):
                    if not self._read_once():
                        at_eof = True
                        return
                    self._pace()
                elif self._raw or self._splitter.pending():
                    self._hand_partial()
            # Asked to stop: take what is already there, but do not wait for EOF
            # (a grandchild may hold the pipe for ever). Bounded: a spewing
            # grandchild cannot keep us here.
            for _ in range(256):
                if not poller.poll(0) or not self._read_once():
                    break
        finally:
            self._finish()
            if at_eof:
                # Set only after the last (partial) line was delivered: whoever waits
                # on `eof` has seen every line the child wrote.
                self.eof.set()

    def _read_once(self) -> bool:
        """Read one chunk; False at EOF (or when the fd was closed under us)."""
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:  # a non-blocking fd and a spurious wake-up
            return True
        except OSError:  # EBADF: the owner closed it; nothing more will come
            return False
        if not data:
            return False
        self._last_read = len(data)
        now = self._clock.monotonic()
        self._span, self._last_data_at = now - self._last_data_at, now
        self.bytes_total += len(data)
        self._to_log(data)
        joined, count = self._splitter.feed_joined(data)
        if count:
            self._deliver(joined, count, self._last_data_at)
        return True

    def _pace(self) -> None:
        """After each read: on a busy pipe (the data was there as soon as we looked,
        within `_BUSY_GAP` of the last wait's end or of the last read's handling), wait
        to gather a batch before the next read (see `batch_wait`). Counted from the
        wait's end, so a steady writer is read once per wait, not alternately after a
        wait and at once; a read of a batch or more is followed by none."""
        gap = self._last_data_at - self._last_read_at
        if gap < 0:
            return  # a spurious wake-up: nothing was read
        if gap >= _BUSY_GAP:
            self._busy = 0
        elif self._coalesce and self._last_read < BATCH:
            most = self._coalesce if self._busy else min(self._coalesce, _FIRST_WAIT)
            self._busy += 1
            self._stop_flag.wait(batch_wait(self._last_read, self._span, most))
        self._last_read_at = self._clock.monotonic()

    def _poll_timeout_ms(self) -> int:
        """The usual poll interval, or less when a partial line is due to be handed on."""
        if not (self._raw or self._splitter.pending()):
            return self._poll_ms
        due = self._last_data_at + self._partial_after - self._clock.monotonic()
        return max(0, min(self._poll_ms, int(due * 1000) + 1))

    def _hand_partial(self) -> None:
        """The pipe has been quiet `partial_after`: the open line to the log and to
        `on_lines` now. Its end, when it comes, is written after it (the file still holds
        the child's exact bytes; a secret split across such a pause is redacted piece by
        piece) and delivered as the rest of the line only."""
        now = self._clock.monotonic()
        if now - self._last_data_at < self._partial_after:
            return
        if self._raw:
            self._write(self._raw)
            self._raw = b""
        fresh = self._splitter.take_partial()
        if fresh:
            self._deliver(fresh, 1, now)

    def _to_log(self, data: bytes) -> None:
        """Write up to the last line break; a long unterminated tail goes anyway."""
        raw = self._raw + data
        cut = last_break(raw, 0, len(raw))
        if cut >= 0:
            self._write(raw[: cut + 1])
            raw = raw[cut + 1 :]
        if len(raw) > self._max_line:
            self._write(raw)
            raw = b""
        self._raw = raw

    def _write(self, data: bytes) -> None:
        self._log.write(self._transform(data) if self._transform is not None else data)

    def _deliver(self, joined: bytes, count: int, now: float) -> None:
        """`count` lines joined by `\\n`, decoded in one go: a line break is never part
        of a UTF-8 sequence, so this is each line decoded on its own, joined."""
        self.lines_total += count
        try:
            self._on_lines(joined.decode("utf-8", "replace"), now)
        except Exception as exc:  # noqa: BLE001 - reported (rate-limited) just below
            # A bug in the consumer must not stop the draining: the child would block.
            # Counted in lines: those of the failed call may not all have been judged.
            first = not self.callback_errors
            self.callback_errors += count
            # A report per call would stall the drain: one per interval, with the count.
            reported = self._error_reports.occurred(count)
            if reported is not None:
                _log.error(
                    "capture_callback_failed", name=self.name, lines=reported,
                    total=self.callback_errors, error=f"{type(exc).__name__}: {exc}",
                    exc_info=first,
                )

    def _finish(self) -> None:
        if self._raw:
            self._write(self._raw)
            self._raw = b""
        rest = self._splitter.flush()
        if rest:
            self._deliver(rest, 1, self._clock.monotonic())
        with contextlib.suppress(OSError):
            self._log.flush()

"""The kernel's OOM-killer records, followed live and matched against the trainer's tree.

Why: the kernel kills a process for memory with SIGKILL and writes why only to its own
log; the node's log shows at most a bare `Killed` (and for a killed p2pd, nothing). A
SIGKILL alone is not an OOM (an operator's `kill -9`, a watchdog), so only a kernel
record naming a pid of the trainer's recorded tree makes it one: that is the evidence
for `restart_after_cleanup` and for arming `oom_fallback_env`.

Sources, first readable wins: `/dev/kmsg` (one record per read, seeked to its end so
old records are not replayed), else `journalctl -k -f -o short-monotonic -n 0`. When
neither can be read, `open_kernel_log` says why in one line and swarmd runs without.
Tests (and any other producer) hand a byte stream to `StreamSource`: the same reader,
the same parser.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

from swarmd.events import KernelOom

__all__ = [
    "JournalSource",
    "KernelLogReader",
    "KernelWatch",
    "KmsgSource",
    "OomRecord",
    "StreamSource",
    "open_kernel_log",
    "parse_oom",
    "victim_in_tree",
]

_KMSG = "/dev/kmsg"
_POLL = 0.2  # seconds between checks of the stop flag while the log is quiet
_MAX_RECORD = 8192  # /dev/kmsg returns one record per read; longer ones are refused by the kernel

# The victim: "Out of memory: Killed process 4242 (python)", the cgroup variant, the
# pre-4.x "Kill process", the reaper, and the 5.x one-line summary (task=…,pid=…).
_KILLED = re.compile(r"(?:Out of memory|Memory cgroup out of memory): Kill(?:ed)? process (\d+) \(([^)]*)\)")
_REAPED = re.compile(r"oom_reaper: reaped process (\d+) \(([^)]*)\)")
_SUMMARY = re.compile(r"\boom-kill:.*?\btask=([^,]*),pid=(\d+)")
# Not the victim: the process whose allocation woke the killer.
_INVOKED = re.compile(r"(?:^|[\s\]])([^\s\]]+) invoked oom-killer")
_KMSG_HEAD = re.compile(r"^\d+,\d+,\d+,[^;]*;")


@dataclass(frozen=True, slots=True)
class OomRecord:
    """`victim`: `pid` was killed; otherwise `name` only invoked the killer."""

    pid: int | None
    name: str
    line: str
    victim: bool


def parse_oom(line: str) -> OomRecord | None:
    """One kernel log line (kmsg, journald or dmesg format) -> its OOM record, if any."""
    if "oom" not in line and "memory" not in line:
        return None
    text = _KMSG_HEAD.sub("", line.rstrip("\n"))
    m = _KILLED.search(text) or _REAPED.search(text)
    if m is not None:
        return OomRecord(int(m.group(1)), m.group(2), text.strip(), True)
    m = _SUMMARY.search(text)
    if m is not None:
        return OomRecord(int(m.group(2)), m.group(1), text.strip(), True)
    m = _INVOKED.search(text)
    if m is not None:
        return OomRecord(None, m.group(1), text.strip(), False)
    return None


def victim_in_tree(record: OomRecord, tree: Mapping[int, str]) -> bool:
    """Whether the record's victim is a process of the recorded tree (pid -> name).

    The kernel truncates names to 15 characters (comm); a pid whose recorded name
    disagrees was reused by another process and is not ours.
    """
    if not record.victim or record.pid is None or record.pid not in tree:
        return False
    ours = tree[record.pid][:15]
    return not ours or not record.name or ours == record.name[:15]


class Source(Protocol):
    description: str

    def lines(self, stop: threading.Event) -> Iterator[str]: ...

    def close(self) -> None: ...


class KmsgSource:
    """`/dev/kmsg`, from its end: each read() returns exactly one record."""

    def __init__(self, path: str = _KMSG) -> None:
        self.description = path
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.lseek(self._fd, 0, os.SEEK_END)
        except OSError:
            os.close(self._fd)
            raise

    def lines(self, stop: threading.Event) -> Iterator[str]:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], _POLL)
            except (OSError, ValueError):
                return  # closed under us
            if not ready:
                continue
            try:
                data = os.read(self._fd, _MAX_RECORD)
            except BlockingIOError:
                continue
            except BrokenPipeError:
                continue  # records were overwritten before we read them: go on from here
            except OSError:
                return
            if not data:
                return
            yield data.decode("utf-8", "replace")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class StreamSource:
    """Kernel-format lines from any byte stream (a pipe, a recorded file)."""

    def __init__(self, stream: IO[bytes], description: str = "stream") -> None:
        self.description = description
        self._stream = stream

    def lines(self, stop: threading.Event) -> Iterator[str]:
        fd = self._stream.fileno()
        buf = b""
        while not stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], _POLL)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                if buf:
                    yield buf.decode("utf-8", "replace")
                return
            buf += chunk
            *complete, buf = buf.split(b"\n")
            for raw in complete:
                yield raw.decode("utf-8", "replace")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.close()


class JournalSource(StreamSource):
    """`journalctl -k -f`: the journald copy of the kernel log, new records only."""

    def __init__(self, journalctl: str) -> None:
        self._proc = subprocess.Popen(
            [journalctl, "-k", "-f", "-o", "short-monotonic", "-n", "0", "--no-pager"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        assert self._proc.stdout is not None  # noqa: S101 - stdout=PIPE guarantees it
        super().__init__(self._proc.stdout, "journalctl -k")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=2.0)
        super().close()


def open_kernel_log(kmsg: str = _KMSG, journalctl: str | None = None) -> tuple[Source | None, str]:
    """The first readable kernel log, and what it is; or None and the one-line reason."""
    problems: list[str] = []
    try:
        return KmsgSource(kmsg), kmsg
    except OSError as err:
        problems.append(f"{kmsg}: {err.strerror or err}")
    exe = journalctl or shutil.which("journalctl")
    if exe is None:
        problems.append("journalctl: not installed")
    else:
        try:
            probe = subprocess.run(
                [exe, "-k", "-n", "0", "--no-pager", "-q"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if probe.returncode == 0:
                return JournalSource(exe), "journalctl -k"
            problems.append(f"journalctl -k: {(probe.stderr.strip() or f'exit {probe.returncode}')[:200]}")
        except (OSError, subprocess.TimeoutExpired) as err:
            problems.append(f"{exe}: {err}")
    reason = (
        "kernel log not readable (" + "; ".join(problems) + "): OOM kills are not confirmed, "
        "so a SIGKILL is a plain restart; fix: run swarmd as root, or add its user to group "
        "systemd-journal (or adm)"
    )
    return None, reason


class KernelLogReader:
    """A thread that reads a `Source` and hands each OOM record to `on_record`; it also
    keeps the last few, for an exit judged just before its record was read."""

    def __init__(self, source: Source, on_record: Callable[[OomRecord], None]) -> None:
        self.source = source
        self._on_record = on_record
        self._stop = threading.Event()
        self._recent: deque[OomRecord] = deque(maxlen=32)
        self._lock = threading.Lock()
        self._seen = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name="kernel-log", daemon=True)

    def start(self) -> KernelLogReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        for line in self.source.lines(self._stop):
            record = parse_oom(line)
            if record is None:
                continue
            with self._seen:
                self._recent.append(record)
                self._seen.notify_all()
            self._on_record(record)

    def wait_for_victim(self, tree: Mapping[int, str], timeout: float) -> OomRecord | None:
        """A recent record whose victim is in `tree`, waiting up to `timeout` for it
        (the kernel writes the record as it kills; our reader may be a moment behind)."""
        with self._seen:
            found = self._find(tree)
            if found is None and timeout > 0:
                self._seen.wait_for(lambda: self._find(tree) is not None, timeout)
                found = self._find(tree)
            return found

    def _find(self, tree: Mapping[int, str]) -> OomRecord | None:
        for record in reversed(self._recent):
            if victim_in_tree(record, tree):
                return record
        return None

    def close(self) -> None:
        self._stop.set()
        # Join first (the reader wakes every _POLL seconds): closing an fd a thread still
        # selects on could hand its number to another file.
        self._thread.join(timeout=2.0)
        self.source.close()


class KernelWatch:
    """The supervisor's part: follow the kernel log while swarmd runs and post each
    OOM victim (`events.KernelOom`); `lookup` answers an exit judged before the
    record reached the loop."""

    name = "kernel_log"

    def __init__(self, post: Callable[[Any], None], log: Any, opener: Callable[[], tuple[Source | None, str]] = open_kernel_log) -> None:
        self._post = post
        self._log = log
        self._opener = opener
        self._reader: KernelLogReader | None = None

    def start(self) -> None:
        if self._reader is not None:
            return
        source, what = self._opener()
        if source is None:
            self._log.warning("kernel_log_unavailable", reason=what)
            return
        self._reader = KernelLogReader(source, self._on_record).start()
        self._log.info("kernel_log_followed", source=what)

    def reconfigure(self, config: object) -> list[Any]:
        return []

    def stop(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def lookup(self, tree: Mapping[int, str], timeout: float) -> str:
        reader = self._reader
        if reader is None:
            return ""
        record = reader.wait_for_victim(tree, timeout)
        return record.line if record is not None else ""

    def _on_record(self, record: OomRecord) -> None:
        if record.victim and record.pid is not None:
            self._post(KernelOom(record.pid, record.name, record.line))

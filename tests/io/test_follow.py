"""follow: real files in tmp_path, changed underneath a running FileFollower."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swarmd.clock import SystemClock
from swarmd.follow import FileFollower
from tests.conftest import wait_until

pytestmark = pytest.mark.io


class Seen:
    """Thread-safe record of (file name, line) pairs delivered by the follower."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[str, str]] = []

    def __call__(self, path: Path, line: str, t_mono: float) -> None:
        with self._lock:
            self._items.append((path.name, line))

    def lines(self) -> list[str]:
        with self._lock:
            return [line for _, line in self._items]

    def pairs(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._items)

    def wait_for(self, expected: list[str], timeout: float = 10.0) -> None:
        wait_until(
            lambda: self.lines() == expected,
            timeout,
            lambda: f"expected {expected!r}, saw {self.lines()!r}",
        )


@pytest.fixture
def follow() -> Iterator[Callable[..., tuple[FileFollower, Seen]]]:
    """Start followers for a test and always stop them (threads joined, fds closed)."""
    started: list[FileFollower] = []

    def start(*paths: Path, rescan: float = 0.2) -> tuple[FileFollower, Seen]:
        seen = Seen()
        f = FileFollower(list(paths), seen, clock=SystemClock(), rescan_interval=rescan)
        f.start()
        started.append(f)
        return f, seen

    yield start
    for f in started:
        f.stop(timeout=10)


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(text)


def test_appended_lines_are_delivered(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """Lines appended to a followed file reach on_line in order, tagged with the path."""
    log = tmp_path / "extra.log"
    log.touch()
    _, seen = follow(log)
    append(log, "one\ntwo\n")
    seen.wait_for(["one", "two"])
    assert seen.pairs() == [("extra.log", "one"), ("extra.log", "two")]


def test_existing_content_is_not_replayed(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """A file that exists at start is followed from its end, not from its history."""
    log = tmp_path / "extra.log"
    log.write_text("old 1\nold 2\n")
    _, seen = follow(log)
    append(log, "new\n")
    seen.wait_for(["new"])


def test_watchdog_event_wakes_before_rescan(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """With a 60 s rescan, a new line still arrives promptly: the inotify event woke us."""
    log = tmp_path / "extra.log"
    log.touch()
    _, seen = follow(log, rescan=60.0)
    time.sleep(0.2)  # let the observer thread arm its watch
    append(log, "prompt\n")
    seen.wait_for(["prompt"], timeout=5.0)


def test_rotation_by_rename_loses_no_line(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """Lines written to the old file after its rename, then the new file's, all arrive in order."""
    log = tmp_path / "extra.log"
    log.touch()
    _, seen = follow(log)
    with log.open("a", encoding="utf-8") as old:
        old.write("a1\n")
        old.flush()
        seen.wait_for(["a1"])
        log.rename(tmp_path / "extra.log.1")
        old.write("a2\na3")  # the writer has not reopened yet; a3 has no newline
        old.flush()
    append(log, "b1\nb2\n")
    seen.wait_for(["a1", "a2", "a3", "b1", "b2"])


def test_truncation_restarts_from_the_beginning(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """After the file is truncated, lines written from offset 0 are delivered."""
    log = tmp_path / "extra.log"
    log.touch()
    _, seen = follow(log)
    append(log, "a long first line\nand another one\n")
    seen.wait_for(["a long first line", "and another one"])
    log.write_text("")
    seen.wait_for(["a long first line", "and another one"], timeout=1.0)
    time.sleep(0.5)  # > 2 rescans: the follower has seen the empty file
    append(log, "x\n")
    seen.wait_for(["a long first line", "and another one", "x"])


def test_file_appearing_later_is_read_from_start(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """A file (and its directory) created after start is read from its first byte."""
    log = tmp_path / "later" / "extra.log"
    _, seen = follow(log)
    time.sleep(0.3)
    log.parent.mkdir()
    log.write_text("first\nsecond\n")
    seen.wait_for(["first", "second"])
    append(log, "third\n")
    seen.wait_for(["first", "second", "third"])


def test_partial_line_is_completed_later(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """A slow writer's half line is held until its newline, then delivered once, whole."""
    log = tmp_path / "extra.log"
    log.touch()
    _, seen = follow(log)
    append(log, "hel")
    time.sleep(0.5)  # > 2 rescans
    assert seen.lines() == []
    append(log, "lo\n")
    seen.wait_for(["hello"])


def test_deleted_then_recreated_file_is_followed_again(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """Deleting the file does not stop following: a new file at the path is read from 0."""
    log = tmp_path / "extra.log"
    log.touch()
    _, seen = follow(log)
    append(log, "before\n")
    seen.wait_for(["before"])
    log.unlink()
    time.sleep(0.5)
    log.write_text("after\n")
    seen.wait_for(["before", "after"])


def test_two_files_are_followed_independently(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """Each line is tagged with the file it came from."""
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.touch()
    b.touch()
    _, seen = follow(a, b)
    append(a, "from a\n")
    append(b, "from b\n")
    wait_until(
        lambda: sorted(seen.pairs()) == [("a.log", "from a"), ("b.log", "from b")],
        10.0,
        lambda: repr(seen.pairs()),
    )


def test_many_lines_from_a_fast_writer_all_arrive(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """20k lines written in odd-sized chunks arrive complete and in order."""
    log = tmp_path / "extra.log"
    log.touch()
    _, seen = follow(log)
    data = "".join(f"line {i}\n" for i in range(20_000))
    with log.open("a", encoding="utf-8") as fh:
        for i in range(0, len(data), 4999):
            fh.write(data[i : i + 4999])
            fh.flush()
    wait_until(
        lambda: len(seen.lines()) >= 20_000,
        20.0,
        lambda: f"{len(seen.lines())} lines",
    )
    assert seen.lines() == [f"line {i}" for i in range(20_000)]


def test_set_paths_follows_a_new_file_and_stops_a_dropped_one(
    tmp_path: Path, follow: Callable[..., tuple[FileFollower, Seen]]
) -> None:
    """A reload's new follow list: the kept file keeps its offset (nothing replayed,
    nothing lost), the new file is read from the moment of the switch, the dropped
    file's last line before the switch still counts and later ones do not."""
    kept, new, dropped = tmp_path / "kept.log", tmp_path / "new.log", tmp_path / "dropped.log"
    kept.write_text("old history\n")
    new.write_text("history of new\n")
    f, seen = follow(kept, dropped)
    with kept.open("a") as fh:
        fh.write("k1\n")
    seen.wait_for(["k1"])
    with dropped.open("a") as fh:
        fh.write("d1\n")
    f.set_paths([kept, new])
    assert f.paths == [kept, new]
    with new.open("a") as fh:
        fh.write("n1\n")
    with kept.open("a") as fh:
        fh.write("k2\n")
    wait_until(lambda: {"d1", "n1", "k2"} <= set(seen.lines()), 10.0, lambda: f"saw {seen.lines()!r}")
    with dropped.open("a") as fh:
        fh.write("d2\n")
    with new.open("a") as fh:
        fh.write("n2\n")
    wait_until(lambda: "n2" in seen.lines(), 10.0, lambda: f"saw {seen.lines()!r}")
    time.sleep(0.5)  # two rescans: a dropped file still followed would show d2 by now
    assert "d2" not in seen.lines()
    assert "history of new" not in seen.lines()
    assert sorted(seen.lines()) == sorted(["k1", "d1", "n1", "k2", "n2"])

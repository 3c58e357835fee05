"""monitor.log: one JSON object per line, rotated without losing a line, secrets redacted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from swarmd.cli import format_event
from swarmd.logs import configure, get_logger
from swarmd.rotating import RotatingLog

pytestmark = pytest.mark.io


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[RotatingLog]:
    log = RotatingLog(tmp_path / "monitor.log", max_bytes=256 * 1024, keep=1000, compress=False)
    configure(log, console=None)
    yield log
    log.close()
    structlog.reset_defaults()


def _events(tmp_path: Path) -> list[dict[str, object]]:
    out = []
    for f in sorted(tmp_path.glob("monitor.log*")):
        out += [json.loads(line) for line in f.read_text().splitlines()]
    return out


def test_every_event_survives_rotation_under_concurrent_writers(tmp_path: Path, monitor: RotatingLog) -> None:
    """4 threads x 25k events through 256 KiB rotation: all 100k are there, each valid JSON."""
    log = get_logger()

    def writer(k: int) -> None:
        for i in range(25_000):
            log.info("tick", writer=k, i=i)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    events = _events(tmp_path)
    assert len(list(tmp_path.glob("monitor.log.*"))) > 5
    seen = {(e["writer"], e["i"]) for e in events}
    assert len(seen) == 100_000
    assert all({"ts", "level", "event"} <= e.keys() for e in events)


def test_secrets_in_event_fields_are_redacted(tmp_path: Path, monitor: RotatingLog) -> None:
    """A token in a field value or under a secret-looking key never reaches monitor.log."""
    get_logger().info("decision", evidence="login hf_A1b2C3d4E5f6G7h8I9j0K1 ok", hf_token="abcdefghijklmnop")
    text = (tmp_path / "monitor.log").read_text()
    assert "hf_A1b2C3d4E5f6G7h8I9j0K1" not in text
    assert "abcdefghijklmnop" not in text


def test_tail_formatting_is_readable_and_tolerates_garbage() -> None:
    """`swarmd tail` renders JSON events as one human line and passes other lines through."""
    line = json.dumps({"ts": "2026-11-23T12:00:01.5Z", "level": "info", "event": "decision", "action": "restart", "reason": "stall"})
    assert format_event(line) == "12:00:01 INFO    decision action=restart reason=stall"
    assert format_event("not json \x00") == "not json \x00"

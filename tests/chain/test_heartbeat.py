"""The trainer's heartbeat carries the chain queue depth to swarmd (`chain_queue`), which
exports it as `swarmd_chain_queue_depth`."""

from __future__ import annotations

import json
from pathlib import Path

from swarmd.heartbeat import Heartbeat, read_heartbeat, write_heartbeat


def test_chain_queue_round_trips_through_the_heartbeat_file(tmp_path: Path) -> None:
    path = tmp_path / "trainer.json"
    write_heartbeat(path, Heartbeat(pid=1, chain_queue=5))
    beat = read_heartbeat(path)
    assert beat is not None
    assert beat.chain_queue == 5


def test_heartbeat_without_a_chain_or_with_junk_reads_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "trainer.json"
    path.write_text(json.dumps({"pid": 1}))
    assert read_heartbeat(path).chain_queue is None  # type: ignore[union-attr]
    path.write_text(json.dumps({"pid": 1, "chain_queue": True}))
    assert read_heartbeat(path).chain_queue is None  # type: ignore[union-attr]

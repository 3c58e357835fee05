"""The heartbeat file `state_dir/trainer.json`: the trainer's one-way status channel.

Standard library only, because the trainer imports it too (it owns the writer side).
The writer replaces the file atomically (tmp + `os.replace`), so the reader never sees
a half-written file; the reader is still tolerant (missing, empty, garbage -> None)
because swarmd may supervise a trainer that writes something else there.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pid: int
    peer_id: str = ""
    animal: str = ""
    round: int | None = None
    stage: int | None = None
    peers: int | None = None
    last_progress: float | None = None  # wall-clock seconds (time.time()) of the last step
    step_seconds: tuple[float, ...] = field(default_factory=tuple)  # recent step durations
    last_reward: float | None = None
    status: str = ""  # free text: "training", "waiting", "reconnecting", ...
    written_at: float | None = None  # wall-clock seconds when written
    chain_queue: int | None = None  # chain submissions waiting on disk (None: no chain)


def write_heartbeat(path: Path, beat: Heartbeat) -> None:
    """Write atomically: a reader sees the old file or the new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = asdict(beat)
    data["step_seconds"] = list(beat.step_seconds)
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_heartbeat(path: Path) -> Heartbeat | None:
    """Return the heartbeat, or None when the file is absent or not a heartbeat."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return _from_dict(data)


def _from_dict(data: dict[str, Any]) -> Heartbeat | None:
    pid = data.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None

    def num(key: str) -> float | None:
        v = data.get(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def integer(key: str) -> int | None:
        v = data.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def text(key: str) -> str:
        v = data.get(key)
        return v if isinstance(v, str) else ""

    steps_raw = data.get("step_seconds")
    steps: tuple[float, ...] = ()
    if isinstance(steps_raw, list):
        steps = tuple(float(s) for s in steps_raw if isinstance(s, int | float) and not isinstance(s, bool))
    return Heartbeat(
        pid=pid,
        peer_id=text("peer_id"),
        animal=text("animal"),
        round=integer("round"),
        stage=integer("stage"),
        peers=integer("peers"),
        chain_queue=integer("chain_queue"),
        last_progress=num("last_progress"),
        step_seconds=steps,
        last_reward=num("last_reward"),
        status=text("status"),
        written_at=num("written_at"),
    )

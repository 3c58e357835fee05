"""A durable, bounded queue of chain submissions in `state_dir`.

Upstream keeps its reward batch and its 3-hour timer in memory from process start (W17):
a node restarted more often than that never submits, and a crash loses the batch. Here
every submission is a file, written before anything is sent (temp file, fsync, rename,
fsync of the directory), so it survives kill -9 and power loss; it is deleted only after
the chain holds it. One file per (kind, round, stage): queueing the same submission twice
is a no-op, which makes "send, crash before delete, resend" harmless together with the
sender's on-chain "already submitted?" check.

Bounded: at `max_items` the oldest rounds are dropped first (counted, logged) so that
weeks of RPC outage cannot fill the disk; a recent reward is worth more than an old one.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

log = structlog.get_logger(__name__)

Kind = Literal["reward", "winners"]
_NAME = re.compile(r"^(reward|winners)-r(\d{1,18})-s(\d{1,6})\.json$")


@dataclass(frozen=True, slots=True)
class Submission:
    kind: Kind
    round: int
    stage: int
    peer_id: str
    reward: int = 0
    winners: tuple[str, ...] = ()
    queued_at: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.kind}-r{self.round:018d}-s{self.stage:06d}.json"

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "round": self.round, "stage": self.stage, "peer_id": self.peer_id,
                           "reward": self.reward, "winners": list(self.winners), "queued_at": self.queued_at})

    @staticmethod
    def from_json(text: str) -> Submission:
        obj: dict[str, Any] = json.loads(text)
        kind = obj["kind"]
        if kind not in ("reward", "winners"):
            raise ValueError(f"unknown kind {kind!r}")
        return Submission(kind=kind, round=int(obj["round"]), stage=int(obj["stage"]), peer_id=str(obj["peer_id"]),
                          reward=int(obj["reward"]), winners=tuple(str(w) for w in obj["winners"]),
                          queued_at=float(obj.get("queued_at", 0.0)))


class SubmissionQueue:
    def __init__(self, directory: Path, max_items: int = 10_000) -> None:
        self.dir = directory
        self.max_items = max_items
        self.dropped = 0
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.tmp"):  # a write interrupted by a crash: never renamed, never valid
            stale.unlink(missing_ok=True)

    def _files(self) -> list[Path]:
        return sorted((p for p in self.dir.iterdir() if _NAME.match(p.name)), key=_order)

    def depth(self) -> int:
        return len(self._files())

    def put(self, item: Submission) -> bool:
        """Persist `item` durably; False when the same submission is already queued."""
        final = self.dir / item.name
        if final.exists():
            return False
        files = self._files()
        for old in files[: max(0, len(files) - self.max_items + 1)]:
            old.unlink(missing_ok=True)
            self.dropped += 1
            log.warning("chain_queue_full_dropped_oldest", file=old.name, max_items=self.max_items)
        tmp = self.dir / (item.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(item.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(final)
        _fsync_dir(self.dir)
        return True

    def pending(self) -> list[Submission]:
        """Queued submissions, oldest round first; unreadable files are set aside, not fatal."""
        items = []
        for path in self._files():
            try:
                items.append(Submission.from_json(path.read_text(encoding="utf-8")))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, KeyError, TypeError) as exc:
                bad = path.with_suffix(".bad")
                path.replace(bad)
                log.warning("chain_queue_bad_file", file=path.name, moved_to=bad.name, error=type(exc).__name__)
        return items

    def done(self, item: Submission) -> None:
        (self.dir / item.name).unlink(missing_ok=True)
        _fsync_dir(self.dir)


def _order(path: Path) -> tuple[int, int, str]:
    m = _NAME.match(path.name)
    return (int(m.group(2)), int(m.group(3)), m.group(1)) if m else (0, 0, path.name)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

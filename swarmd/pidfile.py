"""`state_dir/trainer.pid`: what a restarted swarmd needs to end the trainer tree a
killed swarmd left behind (crash, SIGKILL, OOM of the supervisor itself). Written
atomically (tmp + rename); a file that does not parse reads as "nothing recorded"."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from swarmd.process import ProcRef


class PidRecord(NamedTuple):
    pid: int
    create_time: float


@dataclass
class PidFile:
    """`state_dir/trainer.pid`: lets a restarted swarmd find a trainer its previous
    run left behind (crash, SIGKILL, OOM of the supervisor itself)."""

    path: Path

    def write(
        self, child_pid: int, child_create_time: float, supervisor_pid: int, tree: Iterable[ProcRef] = ()
    ) -> None:
        """`tree`: every process of the trainer's tree seen so far, so a restarted swarmd
        can end the p2pd a dead trainer left behind even when the trainer itself is gone
        (it usually dies of EPIPE at its next print once our end of the pipe is closed)."""
        data = {
            "pid": child_pid,
            "create_time": child_create_time,
            "supervisor_pid": supervisor_pid,
            "tree": [[r.pid, r.create_time, r.name, list(r.cmdline)] for r in tree],
        }
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.path)

    def read(self) -> PidRecord | None:
        try:
            data = json.loads(self.path.read_bytes())
            pid, create_time = data["pid"], data["create_time"]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if not isinstance(pid, int) or isinstance(pid, bool) or not isinstance(create_time, int | float):
            return None
        return PidRecord(pid, float(create_time))

    def read_tree(self) -> list[ProcRef]:
        """The recorded tree; entries that do not parse are skipped, never raised."""
        try:
            raw = json.loads(self.path.read_bytes()).get("tree", [])
        except (OSError, ValueError, AttributeError):
            return []
        return [
            ProcRef(item[0], float(item[1]), item[2], tuple(str(a) for a in item[3]))
            for item in (raw if isinstance(raw, list) else [])
            if isinstance(item, list)
            and len(item) == 4
            and isinstance(item[0], int)
            and isinstance(item[1], int | float)
            and isinstance(item[2], str)
            and isinstance(item[3], list)
        ]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

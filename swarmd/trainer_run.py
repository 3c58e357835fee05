"""One trainer process and the threads that serve it, from spawn to the last socket.

`Launcher` starts a run (spawn, pipe reader, exit waiter, pid file) and ends one (the
stop worker: group stop, orphans, sockets, ports), and ends the tree a killed swarmd
left behind. It decides nothing: the supervisor says when, and learns the outcome
through `ChildExited` / `ChildDown` events on its queue.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from swarmd.capture import PipeCapture
from swarmd.cleanup import end_leftover_tree, find_leftover_tree, stop_and_clean
from swarmd.clock import Clock
from swarmd.config import TrainerConfig
from swarmd.events import ChildDown, ChildExited
from swarmd.log_files import TrainerLog
from swarmd.pidfile import PidFile
from swarmd.process import ProcRef, snapshot_tree
from swarmd.redact import redact_bytes
from swarmd.rotating import RotatingLog
from swarmd.spawn import Child, Spawner

_CAPTURE_GRACE = 2.0  # after the group is gone, wait this long for the pipe's EOF
_EXIT_EVIDENCE_WAIT = 0.25  # after an exit, wait this long at most for the pipe's EOF


@dataclass(slots=True)
class Run:
    """One trainer process and what is known about its tree."""

    gen: int
    child: Child
    capture: PipeCapture
    log: RotatingLog  # the trainer log this run writes to (a reload may move the next one)
    started_at: float
    started_wall: float
    refs: dict[tuple[int, float], ProcRef] = field(default_factory=dict)
    exited: int | None = None
    stopping: bool = False
    lines_counted: int = 0

    def new_lines(self) -> int:
        """Lines the reader counted since the last call (fed to metrics per tick, not
        per line: the reader's hot path stays free of it)."""
        total = self.capture.lines_total
        fresh = max(0, total - self.lines_counted)
        self.lines_counted = max(total, self.lines_counted)
        return fresh

    def pids(self) -> set[int]:
        return {ref.pid for ref in self.refs.values()}


class Launcher:
    def __init__(
        self,
        spawner: Spawner,
        trainer_log: TrainerLog,
        pidfile: PidFile,
        *,
        clock: Clock,
        post: Callable[[Any], None],
        log: Any,
    ) -> None:
        self._spawner = spawner
        self._trainer_log = trainer_log
        self._pidfile = pidfile
        self._clock = clock
        self._post = post
        self._log = log
        self._closing = threading.Event()
        self._current: Run | None = None
        self.gen = 0

    def spawn(
        self,
        cfg: TrainerConfig,
        env: Mapping[str, str],
        on_lines: Callable[[int], Callable[[str, float], None]],
    ) -> Run:
        """Start the trainer; `on_lines(gen)` builds the reader's callback (see
        `PipeCapture`: the lines of one read, joined by `\\n`).
        Raises `SpawnError` (a config mistake) or `OSError` (maybe transient)."""
        stdin = "".join(f"{line}\n" for line in cfg.stdin_lines).encode() if cfg.stdin_lines else None
        now = self._clock.monotonic()
        child = self._spawner.spawn(cfg.command, env, cfg.cwd, stdin)
        self.gen += 1
        gen = self.gen
        log = self._trainer_log.current
        capture = PipeCapture(
            child.stdout_fd,
            log,
            on_lines(gen),
            clock=self._clock,
            name=f"capture-{gen}",
            transform=redact_bytes,
        )
        run = Run(gen, child, capture, log, now, self._clock.wall())
        self._current = run
        self.remember_tree(run)
        capture.start()
        threading.Thread(target=self._wait_child, args=(run,), name=f"waiter-{gen}", daemon=True).start()
        self._pidfile.write(child.pid, child.create_time, os.getpid())
        return run

    def remember_tree(self, run: Run) -> None:
        """Record the trainer's tree while it runs: once a daemon is orphaned it is no
        longer anyone's descendant, and the stop must still end it.

        By pid AND start time: between the waiter reaping the trainer and the loop
        hearing of it, its pid may already belong to another process, whose tree must
        never be recorded (the cleanup would end it)."""
        if run.exited is not None:
            return
        known = len(run.refs)
        for ref in snapshot_tree(run.child.pid, run.child.create_time):
            run.refs[(ref.pid, ref.create_time)] = ref
        if len(run.refs) != known:
            self._pidfile.write(run.child.pid, run.child.create_time, os.getpid(), run.refs.values())

    def begin_stop(self, run: Run, stop_timeout: float) -> None:
        """Stop and clean up the tree off the loop; `ChildDown` reports the end."""
        if run.stopping:
            return
        run.stopping = True
        self.remember_tree(run)
        threading.Thread(
            target=self._stop_worker, args=(run, stop_timeout), name=f"stopper-{run.gen}", daemon=True
        ).start()

    def finished(self, run: Run) -> None:
        """The loop has handled `ChildDown`: the pipe and the pid file go."""
        run.child.close()
        self._trainer_log.release(run.log)
        if self._current is run:
            self._current = None
        self._pidfile.remove()

    def end_leftover(self, stop_timeout: float, log_event: Callable[..., None]) -> None:
        """The trainer tree a swarmd killed -9 left behind: end it before starting
        another, so one identity never runs twice."""
        found = find_leftover_tree(self._pidfile)
        if found is None:
            return
        pid, refs = found
        log_event(
            "leftover_trainer_found",
            pid=pid,
            processes=sorted(r.pid for r in refs),
            action="ending them before starting a new trainer",
        )
        ended = end_leftover_tree(pid, refs, stop_timeout)
        log_event("leftover_trainer_ended", processes=ended)
        self._pidfile.remove()

    def close(self) -> None:
        self._closing.set()

    def _wait_child(self, run: Run) -> None:
        """Blocks in wait() so an exit is seen at once (kill -9 -> replacement in < 1 s)."""
        while not self._closing.is_set():
            began = time.monotonic()
            rc = run.child.wait(None)
            if rc is not None:
                # Let the reader deliver the child's last lines first, so the exit is
                # judged with its evidence (the error line usually comes just before).
                # Bounded: a grandchild may hold the pipe open.
                if self._current is run:
                    run.capture.eof.wait(_EXIT_EVIDENCE_WAIT)
                self._post(ChildExited(run.gen, rc))
                return
            if time.monotonic() - began < 0.05:
                self._closing.wait(0.05)  # a Child whose wait() does not block

    def _stop_worker(self, run: Run, stop_timeout: float) -> None:
        # run.refs was recorded by the loop, last in begin_stop.
        result = stop_and_clean(run.child, list(run.refs.values()), stop_timeout, self._log)
        run.capture.stop(_CAPTURE_GRACE)
        self._post(ChildDown(run.gen, result.returncode, result.escalated, result.orphans, result.sockets))

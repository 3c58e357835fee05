"""trainer_run.Launcher against real processes: what it records of a trainer's tree."""

from __future__ import annotations

import queue
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import structlog

from swarmd.capture import PipeCapture
from swarmd.cleanup import stop_and_clean
from swarmd.clock import SystemClock
from swarmd.config import LogsConfig
from swarmd.log_files import TrainerLog
from swarmd.pidfile import PidFile
from swarmd.trainer_run import Launcher, Run
from tests.conftest import wait_until
from tests.fakes.doubles import FakeChild, FakeSpawner

pytestmark = pytest.mark.io


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process (with a child of its own) that got a pid our trainer once had."""
    code = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    yield proc
    for p in psutil.Process(proc.pid).children(recursive=True):
        p.kill()
    proc.kill()
    proc.wait()


def test_a_reused_pid_is_never_recorded_as_the_trainers_tree(tmp_path: Path, stranger: subprocess.Popen[bytes]) -> None:
    """The trainer was reaped and its pid reused before the loop heard of the exit: the
    tree recorded for it stays empty, so the cleanup never touches the stranger."""
    me = psutil.Process(stranger.pid)
    wait_until(me.children, 10, "the stranger's child never started")
    logs = LogsConfig(dir=tmp_path, trainer_log=tmp_path / "trainer.log", monitor_log=tmp_path / "monitor.log", compress=False)
    trainer_log = TrainerLog(logs, lambda err: None)
    launcher = Launcher(
        FakeSpawner(), trainer_log, PidFile(tmp_path / "trainer.pid"),
        clock=SystemClock(), post=queue.SimpleQueue().put, log=structlog.get_logger(),
    )
    # Our trainer had this pid, but started an hour before the stranger did.
    gone = FakeChild(stranger.pid, create_time=me.create_time() - 3600)
    gone.returncode = 0
    capture = PipeCapture(gone.stdout_fd, trainer_log.current, lambda line, t: None, clock=SystemClock())
    run = Run(1, gone, capture, trainer_log.current, 0.0, 0.0)
    try:
        launcher.remember_tree(run)
        assert run.refs == {}, f"recorded a stranger's tree: {list(run.refs.values())}"
        stop_and_clean(gone, list(run.refs.values()), 0.5, structlog.get_logger())
        assert stranger.poll() is None
        assert all(p.is_running() for p in me.children())
    finally:
        gone.close()
        trainer_log.stop()

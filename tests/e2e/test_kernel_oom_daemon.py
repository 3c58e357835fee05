"""The real daemon sees the kernel kill its trainer for memory: restart after cleanup,
with the kernel's record as evidence, and the OOM fallback env on the next start.

The trainer enters a memory-limited cgroup created for this test (v1 or v2, under the
test's own cgroup) and grows until the kernel's OOM killer ends it. Where the host
gives no such cgroup, tests/io/test_kernel_log.py still feeds a recorded kernel record
through the same reader, and tests/unit/test_supervisor.py drives the machine with it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmd.kernel_log import KmsgSource
from tests.e2e.daemon import Daemon, write_config
from tests.memcg import memory_cgroup

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOG = """
import os, sys, time
if os.environ.get("HOG_FALLBACK"):
    print("Joining round: 1 starting at stage: 0", flush=True)
    time.sleep(600)
open(os.environ["CG_PROCS"], "w").write(str(os.getpid()))
print("Joining round: 1 starting at stage: 0", flush=True)
time.sleep(1.0)
blocks = []
while True:
    blocks.append(bytearray(8 << 20))
"""


@pytest.fixture
def procs_file() -> Iterator[Path]:
    try:
        KmsgSource().close()
    except OSError as err:
        pytest.skip(f"/dev/kmsg not readable ({err.strerror}); covered by the recorded-record tests")
    with memory_cgroup(96 << 20, "swarmd-e2e-oom") as (procs, why):
        if procs is None:
            pytest.skip(f"no memory cgroup here ({why}); covered by the recorded-record tests")
        yield procs


def test_kernel_oom_kill_of_the_trainer_restarts_after_cleanup_with_the_fallback_env(tmp_path: Path, procs_file: Path) -> None:
    script = tmp_path / "hog.py"
    script.write_text(HOG)
    config = write_config(
        tmp_path,
        [sys.executable, str(script)],
        restart='oom_fallback_env = { HOG_FALLBACK = "1" }',
    )
    text = config.read_text().replace("[logs]", f'env = {{ CG_PROCS = "{procs_file}" }}\n[logs]', 1)
    config.write_text(text)
    d = Daemon(tmp_path, config)
    try:
        decision = d.wait_event(lambda e: e.get("event") == "decision", timeout=60)
        assert decision["action"] == "restart_after_cleanup", decision
        assert decision["reason"] == "kernel_oom", decision
        first = d.wait_event(lambda e: e.get("event") == "child_started")["pid"]
        assert f"pid={first}" in decision["evidence"] or f"process {first} " in decision["evidence"], decision
        d.wait_event(lambda e: e.get("event") == "oom_fallback_applied", timeout=30)
        d.wait_event(lambda e: e.get("event") == "child_started", count=2, timeout=30)
    finally:
        d.close()

"""The kernel log reader against a real kernel OOM kill (a memory-limited cgroup), and,
where the host forbids that, a recorded kernel record through the same reader."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from swarmd.kernel_log import (
    KernelLogReader,
    KmsgSource,
    OomRecord,
    StreamSource,
    open_kernel_log,
    victim_in_tree,
)
from swarmd.process import snapshot_tree
from tests.memcg import memory_cgroup

pytestmark = pytest.mark.io

# Enters the cgroup named by $CG_PROCS, then grows until the kernel kills it.
_HOG = (
    "import os, sys, time\n"
    "open(os.environ['CG_PROCS'], 'w').write(str(os.getpid()))\n"
    "print('in cgroup', flush=True)\n"
    "sys.stdin.readline()\n"
    "blocks = []\n"
    "while True:\n"
    "    blocks.append(bytearray(8 << 20))\n"
)


def _tree(pid: int) -> dict[int, str]:
    return {ref.pid: ref.name for ref in snapshot_tree(pid)}


def test_recorded_kernel_record_through_the_reader_names_a_process_of_a_real_tree() -> None:
    """A recorded kmsg OOM record for a pid of a real running tree is matched; one for a
    pid outside the tree is not."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tree = _tree(proc.pid)
        name = tree[proc.pid]
        read_fd, write_fd = os.pipe()
        got: list[OomRecord] = []
        seen = threading.Event()

        def on_record(rec: OomRecord) -> None:
            got.append(rec)
            seen.set()

        reader = KernelLogReader(StreamSource(os.fdopen(read_fd, "rb"), "recorded"), on_record).start()
        try:
            records = (
                "6,1200,597411196,-;eth0: link becomes ready\n"
                f"3,1201,597411197,-;Out of memory: Killed process 1 (init) total-vm:1kB\n"
                f"3,1202,597411198,-;Out of memory: Killed process {proc.pid} ({name}) total-vm:8123456kB\n"
            )
            os.write(write_fd, records.encode())
            match = reader.wait_for_victim(tree, timeout=10.0)
            assert match is not None
            assert match.pid == proc.pid
            assert seen.wait(5.0)
            assert [r.pid for r in got] == [1, proc.pid]
            assert not victim_in_tree(got[0], tree)
        finally:
            os.close(write_fd)
            reader.close()
    finally:
        proc.kill()
        proc.wait()


def test_real_oom_kill_in_a_memory_limited_cgroup_is_read_from_the_kernel_log(tmp_path: Path) -> None:
    """A process of a real tree grows past its cgroup's limit; the kernel kills it and
    the reader, following /dev/kmsg, names that pid."""
    try:
        source = KmsgSource()
    except OSError as err:
        pytest.skip(f"/dev/kmsg not readable here ({err.strerror}); the recorded-record test covers the reader")
    with memory_cgroup(64 << 20, "swarmd-oom-test") as (procs, why):
        if procs is None:
            source.close()
            pytest.skip(f"no memory cgroup to limit a process ({why}); the recorded-record test covers the reader")
        reader = KernelLogReader(source, lambda rec: None).start()
        try:
            with subprocess.Popen(
                [sys.executable, "-c", _HOG],
                env={**os.environ, "CG_PROCS": str(procs)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            ) as hog:
                assert hog.stdout is not None
                assert hog.stdin is not None
                assert hog.stdout.readline() == b"in cgroup\n"
                tree = _tree(hog.pid)
                hog.stdin.write(b"go\n")
                hog.stdin.flush()
                rc = hog.wait(timeout=60)
            assert rc == -9, "the kernel's OOM killer ends it with SIGKILL"
            match = reader.wait_for_victim(tree, timeout=10.0)
            assert match is not None, "the kernel's record names the killed pid"
            assert match.pid == hog.pid
            assert "out of memory" in match.line.lower() or "oom" in match.line
        finally:
            reader.close()


def test_open_kernel_log_degrades_to_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-kmsg"
    source, why = open_kernel_log(kmsg=str(missing), journalctl=str(tmp_path / "no-journalctl"))
    if source is not None:
        source.close()
        pytest.fail("a missing kmsg and a missing journalctl cannot give a source")
    assert "\n" not in why
    assert str(missing) in why
    assert "fix:" in why

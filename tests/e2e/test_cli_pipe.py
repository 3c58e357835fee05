"""Every printing CLI command behaves like a Unix tool when its reader goes away.

`swarmd status | head -1` closes the pipe before swarmd has written everything; a
Python program then gets `BrokenPipeError` (Python ignores SIGPIPE), and by default
prints a traceback and an "Exception ignored ... stdout" line at exit. The tests hand
each command a real pipe whose read end is already closed, the worst case of `head`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon, fake, write_config

pytestmark = [pytest.mark.e2e]

# What a shell reports for a command ended by SIGPIPE; `cmd | head` users expect it.
SIGPIPE_EXIT = 141


def _run_into_closed_pipe(argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m swarmd ARGV` with stdout a pipe nobody reads any more."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "swarmd", *argv],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, cwd=cwd, check=False,
        )
    finally:
        os.close(write_end)


def _assert_quiet_pipe_exit(
    out: subprocess.CompletedProcess[str], argv: Sequence[str], codes: Sequence[int] = (SIGPIPE_EXIT,)
) -> None:
    for noise in ("Traceback", "BrokenPipeError", "Exception ignored"):
        assert noise not in out.stderr, (argv, out.stderr)
    assert out.returncode in codes, (argv, out.returncode, out.stderr)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    hb = tmp_path / "state" / "trainer.json"
    d = Daemon(tmp_path, write_config(tmp_path, fake("progress", "--rounds", "1000", "--interval", "0.2", "--heartbeat", str(hb))))
    try:
        d.state("running")
        yield d
    finally:
        d.close()


@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["table", "json"])
def test_status_into_a_closed_pipe_exits_quietly(daemon: Daemon, extra: list[str]) -> None:
    """`swarmd status | head` against a live daemon: no traceback, exit 141."""
    out = _run_into_closed_pipe(["status", "--config", str(daemon.config), *extra], daemon.tmp)
    _assert_quiet_pipe_exit(out, ["status", *extra])


def test_offline_commands_into_a_closed_pipe_exit_quietly(tmp_path: Path) -> None:
    """classify, tail, check-config, --help and --version: no traceback, exit 141."""
    cfg = write_config(tmp_path, fake("hang"))
    log = tmp_path / "logs" / "monitor.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f'{{"event": "e{i}", "level": "info"}}\n' for i in range(2000)))
    node_log = tmp_path / "node.log"
    node_log.write_text("p2pd failed to connect to bootstrap peers\n" * 50)
    for argv in (
        ["classify", "-v", str(node_log)],
        ["tail", "--config", str(cfg), "--no-follow", "-n", "2000"],
        ["check-config", str(cfg)],
        ["--help"],
        ["--version"],
    ):
        out = _run_into_closed_pipe(argv, tmp_path)
        # argparse swallows write errors of --help/--version itself and exits 0.
        codes = (0, SIGPIPE_EXIT) if argv[0].startswith("--") else (SIGPIPE_EXIT,)
        _assert_quiet_pipe_exit(out, argv, codes)

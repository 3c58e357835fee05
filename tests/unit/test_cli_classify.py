"""`swarmd classify`: per file the verdict; -v the rule, fix and deciding block; --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmd.cli import main

CRASH = """# source: https://example.invalid/issue
# class: module-not-found
# expect: give_up_fatal
>> Good luck in the swarm!
Traceback (most recent call last):
  File "/x/swarm_launcher.py", line 3, in <module>
    import hydra
ModuleNotFoundError: No module named 'hydra'
>> An error was detected while running rl-swarm. See /x/logs for full logs.
"""


@pytest.fixture
def crash(tmp_path: Path) -> Path:
    path = tmp_path / "crash.log"
    path.write_text(CRASH)
    return path


def test_verbose_prints_verdict_rule_fix_and_the_whole_traceback(crash: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "-v", str(crash)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{crash}\tgive_up_fatal"
    assert out[1].startswith("\trule: traceback:import_error")
    assert "'hydra'" in out[2]
    assert out[2].startswith("\tfix: ")
    assert "\t| Traceback (most recent call last):" in out
    assert "\t| ModuleNotFoundError: No module named 'hydra'" in out


def test_json_is_one_object_per_file(crash: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = tmp_path / "quiet.log"
    quiet.write_text("nothing known here\n")
    assert main(["classify", "--json", str(crash), str(quiet)]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (first["verdict"], first["kind"]) == ("give_up_fatal", "dependency_missing")
    assert first["block"][-1] == "ModuleNotFoundError: No module named 'hydra'"
    assert (second["verdict"], second["rule"], second["block"]) == ("healthy_progress", None, [])


def test_config_exception_rule_is_used(crash: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        '[trainer]\ncommand = ["python"]\n[[rules]]\nname = "hydra-optional"\n'
        'exception = "ModuleNotFoundError"\nverdict = "restart"\n'
    )
    assert main(["classify", "--config", str(cfg), str(crash)]) == 0
    assert capsys.readouterr().out == f"{crash}\trestart\n"

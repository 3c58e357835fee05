"""config_diff: what `check-config --diff` and the `config_reloaded` event compare."""

from __future__ import annotations

import json
from pathlib import Path

from swarmd.config import parse
from swarmd.config_diff import NOT_LIVE, changed_keys, flatten, render_diff

BASE = """
state_dir = "state"
[trainer]
command = ["python", "-m", "trainer"]
env = { HF_TOKEN = "hf_abcdefghijklmnopqrstuvwxyz012345", MODE = "demo" }
[web]
port = 9464
"""


def flat(text: str) -> dict[str, object]:
    return flatten(parse(text, "<t>", Path("/srv")))


def test_flat_config_is_json_and_names_keys_as_in_the_toml_file() -> None:
    """Every value survives a JSON round trip (it crosses the control socket) under its TOML name."""
    f = flat(BASE)
    assert json.loads(json.dumps(f)) == f
    assert f["web.port"] == 9464
    assert f["control.socket"] == "/srv/state/swarmd.sock"
    assert f["trainer.command"] == ["python", "-m", "trainer"]
    assert "source" not in f


def test_a_secret_env_value_is_digested_so_a_change_shows_but_the_value_does_not() -> None:
    """HF_TOKEN appears as a digest; a new token differs; the raw value is nowhere."""
    old, new = flat(BASE), flat(BASE.replace("012345", "999999"))
    assert "hf_abc" not in json.dumps(old)
    assert old["trainer.env"]["MODE"] == "demo"  # type: ignore[index]
    assert changed_keys(old, new) == ["trainer.env"]


def test_render_diff_lists_each_changed_key_and_marks_what_needs_a_swarmd_restart() -> None:
    """One line per key, old -> new; state_dir says it is kept until swarmd restarts."""
    new = flat(BASE.replace("9464", "9500").replace('state_dir = "state"', 'state_dir = "other"'))
    lines = render_diff(flat(BASE), new)
    port = next(line for line in lines if line.startswith("web.port:"))
    assert port == "web.port: 9464 -> 9500"
    state = next(line for line in lines if line.startswith("state_dir:"))
    assert NOT_LIVE["state_dir"] in state
    assert render_diff(flat(BASE), flat(BASE)) == []

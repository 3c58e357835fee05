"""Which identity file a node uses, read the way the node itself reads it."""

from __future__ import annotations

from pathlib import Path

from swarmd.identity import resolve_identity

CWD = Path("/srv/node")


def test_the_config_key_wins() -> None:
    got = resolve_identity(Path("/keys/a.pem"), {"IDENTITY_PATH": "b.pem"}, {"IDENTITY_PATH": "c.pem"}, ["x"], CWD)
    assert got == Path("/keys/a.pem")


def test_the_trainers_env_before_our_own() -> None:
    assert resolve_identity(None, {"IDENTITY_PATH": "b.pem"}, {"IDENTITY_PATH": "c.pem"}, [], CWD) == CWD / "b.pem"
    assert resolve_identity(None, {}, {"IDENTITY_PATH": "/abs/c.pem"}, [], CWD) == Path("/abs/c.pem")


def test_an_identity_path_argument_of_the_command() -> None:
    argv = ["python", "-m", "hivemind_exp.gsm8k.train_single_gpu", "--identity_path", "keys/swarm.pem"]
    assert resolve_identity(None, {}, {}, argv, CWD) == CWD / "keys/swarm.pem"
    assert resolve_identity(None, {}, {}, ["node", "--identity-path=/k.pem"], CWD) == Path("/k.pem")


def test_run_rl_swarm_defaults_to_swarm_pem_in_its_checkout() -> None:
    assert resolve_identity(None, {}, {}, ["bash", "run_rl_swarm.sh"], CWD) == CWD / "swarm.pem"


def test_nothing_names_an_identity() -> None:
    assert resolve_identity(None, {"IDENTITY_PATH": ""}, {}, ["python", "-m", "other"], CWD) is None

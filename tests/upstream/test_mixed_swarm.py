"""A mixed swarm: two unmodified genrl 0.3.0 nodes and one of ours (`compat =
"genrl-0.3"`) in one DHT on loopback, each side training on the other's rollouts.

The genrl nodes run Gensyn's CodeZero game from genrl 0.3.0 (genrl_swarm.CODEZERO_CONFIG:
its game manager, data manager, rewards and GRPO trainer, unchanged), whose data manager
transplants peers' trees into the game state it trains on. They run under
tests.upstream.observe_launcher, genrl's own launcher plus a record of what each train()
call received, which is how "genrl trained on our rollouts" is seen: a tree keyed by our
peer id in a train() call that returned.

Our node starts first and the genrl nodes bootstrap from it. genrl's gathers wait for
HIVEMIND_WORLD_SIZE=3 records per round key, so every round a genrl node completes held
OUR record, decoded by genrl's own unpacker (a record it could not decode would be
logged "SKIPPING: Failed to decode value"). num_transplant_trees exceeds the trees on
offer per round (the other genrl node's one and our PROMPTS), so the transplant, a
random sample, takes ours every round. Our node trains on the genrl nodes' rollouts
(`external=N` > 0), scored against our own tasks: the genrl questions are ones our
`local_arith` source also generates."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.upstream import observe_launcher
from tests.upstream.genrl_swarm import (
    LAUNCHER,
    MAX_NEW_TOKENS,
    NUM_GENERATIONS,
    REPO,
    SWARM_ERROR,
    GenrlNode,
    build_codezero_datasets,
    rounds,
    stop_group,
)
from trainer.data import TaskSource

pytestmark = [pytest.mark.upstream, pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(480)]

log = logging.getLogger(__name__)
FINISHED = re.compile(r"Finished training round: (\d+) stage: \d+ reward=\S+ external=(\d+)")
HELLO = re.compile(r"Hello .*\[(\w+)\]!")
# Anything genrl logs when a round goes wrong: its swarm and train-step fallbacks, a
# record it could not decode, a traceback, an ERROR or CRITICAL line from it or hivemind.
GENRL_TROUBLE = re.compile("|".join([re.escape(SWARM_ERROR), "Error occurred during", "SKIPPING",
                                     "Traceback", "Exception occurred", r"\bERROR\b", r"\bCRITICAL\b"]))
PROMPTS = 2  # our tasks per round: trees we offer the genrl nodes each round
TRANSPLANTS = PROMPTS + 2  # more than the trees on offer, so ours are always taken


def _wait(pred: Callable[[], bool], timeout: float, describe: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s; saw: {describe()}")
        time.sleep(0.5)


def _text(p: Path) -> str:
    return p.read_text(errors="replace") if p.exists() else ""


def _our_config(root: Path) -> Path:
    state = root / "ours"
    state.mkdir(parents=True, exist_ok=True)
    cfg = root / "trainer.toml"
    cfg.write_text(f"""
state_dir = "{state}"
model = "tiny"
compat = "genrl-0.3"
host_maddrs = ["/ip4/127.0.0.1/tcp/0"]
initial_peers_file = "{state / 'peers.txt'}"
families = ["local_arith"]
round_seconds = 2.0
gather_timeout = 1.5
num_generations = {NUM_GENERATIONS}
max_new_tokens = {MAX_NEW_TOKENS}
prompts_per_round = {PROMPTS}
max_external = 8
seed = 0
""")
    return cfg


def _genrl_questions() -> list[tuple[str, str]]:
    """Questions our local_arith source generates too (so our node can score them)."""
    tasks = TaskSource(seed=0)
    return [(t.question, t.answer) for t in tasks.sample(0, 6, salt="genrl")]


@dataclass(frozen=True)
class Genrl:
    """One observed genrl node: its console log and its record of train() calls."""

    name: str
    log: Path
    observed: Path
    proc: subprocess.Popen[bytes]

    def rounds(self) -> list[int]:
        return rounds(_text(self.log))

    def trained_trees_of(self, agent: str) -> list[tuple[int, str]]:
        """(round, batch item) of `agent`'s trees in train() calls that returned."""
        return [(call["round"], batch) for call in observe_launcher.read(self.observed) if call["ok"]
                for batch in call["trees"].get(agent, [])]

    def moved_by(self, agent: str) -> int:
        """`agent`'s trained trees whose completions got unequal rewards: a non-zero GRPO
        advantage, so a gradient from that peer's rollouts (equal ones give none)."""
        return sum(1 for call in observe_launcher.read(self.observed) if call["ok"]
                   for rows in call["rewards"].get(agent, {}).values()
                   if any(len(set(row)) > 1 for row in rows))


def _start_observed(node: GenrlNode, log: Path, observed: Path) -> subprocess.Popen[bytes]:
    """genrl's launcher under the observer, in its own session (as swarmd would run it)."""
    argv = node.argv()
    assert argv[1:3] == list(LAUNCHER), argv
    argv[1:3] = ["-m", "tests.upstream.observe_launcher"]
    env = {**os.environ, **node.env(), "PYTHONPATH": str(REPO),
           observe_launcher.OBSERVE_ENV: str(observed)}
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=node.root, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


@pytest.fixture
def mixed(tmp_path: Path, genrl_assets: tuple[Path, Path]) -> Iterator[tuple[Path, list[Genrl]]]:
    model_dir, _ = genrl_assets
    ours_log = tmp_path / "ours.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with ours_log.open("wb") as out:
        ours = subprocess.Popen([sys.executable, "-m", "trainer", "--config", str(_our_config(tmp_path))],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    procs = [ours]
    try:
        peers_file = tmp_path / "ours" / "peers.txt"
        _wait(peers_file.exists, 180, lambda: _text(ours_log)[-1500:])
        maddrs = tuple(line for line in peers_file.read_text().split() if line.startswith("/"))
        data = build_codezero_datasets(tmp_path / "data", _genrl_questions())
        genrls = []
        for i, name in enumerate(("g1", "g2")):
            node = GenrlNode(tmp_path / name, name, False, tmp_path / "unused", model_dir, data, seed=i)
            node = replace(node, world_size=3, initial_peers=maddrs, game="codezero",
                           num_transplant_trees=TRANSPLANTS)
            node.write()
            g_log, observed = tmp_path / f"{name}.log", tmp_path / f"{name}.train.jsonl"
            procs.append(_start_observed(node, g_log, observed))
            genrls.append(Genrl(name, g_log, observed, procs[-1]))
        yield ours_log, genrls
    finally:
        for p in procs:
            stop_group(p)


def test_genrl_nodes_and_ours_train_on_each_others_rollouts(mixed: tuple[Path, list[Genrl]]) -> None:
    """Each genrl node's train() takes trees of our peer id and returns; ours trains on
    theirs; genrl logs no error and keeps advancing."""
    ours_log, genrls = mixed

    def external() -> list[int]:
        return [int(n) for _, n in FINISHED.findall(_text(ours_log))]

    def our_peer() -> str:
        found = HELLO.search(_text(ours_log))
        return found.group(1) if found else "(not yet)"

    def enough() -> bool:
        ended = [g.name for g in genrls if g.proc.poll() is not None]
        if ended:
            raise AssertionError(f"genrl node(s) {ended} exited: {describe()}")
        return (all(len(g.rounds()) >= 4 and g.trained_trees_of(our_peer()) for g in genrls)
                and any(n > 0 for n in external()))

    def describe() -> str:
        return json.dumps({"ours_external": external()[-5:], "our_peer": our_peer(),
                           "genrl_rounds": [g.rounds()[-3:] for g in genrls],
                           "genrl_train_calls": [observe_launcher.read(g.observed)[-2:] for g in genrls],
                           "genrl_tail": [_text(g.log)[-600:] for g in genrls],
                           "ours_tail": _text(ours_log)[-800:]}, default=str)

    _wait(enough, 240, describe)
    seen = {g.name: len(g.rounds()) for g in genrls}
    time.sleep(6)  # never stall: every genrl node advances again within a few rounds' time
    for g in genrls:
        assert len(g.rounds()) > seen[g.name], f"{g.name} stalled at round {g.rounds()[-1:]}"
        trouble = [line for line in _text(g.log).splitlines() if GENRL_TROUBLE.search(line)]
        assert not trouble, f"{g.name}: {trouble[:3]}"
        calls = observe_launcher.read(g.observed)
        assert all(c["ok"] for c in calls), [c for c in calls if not c["ok"]][:1]
        ours = g.trained_trees_of(our_peer())
        log.info("%s: %d rounds, %d train() calls, %d with our trees, %d of our trees trained on, "
                 "%d of them with a non-zero advantage", g.name, len(g.rounds()), len(calls),
                 len({r for r, _ in ours}), len(ours), g.moved_by(our_peer()))
    assert "dropped" not in _text(ours_log), _text(ours_log)[-1500:]

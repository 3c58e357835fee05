"""A mixed swarm: two unmodified genrl 0.3.0 nodes and one of ours (`compat =
"genrl-0.3"`) in one DHT on loopback.

Our node starts first and the genrl nodes bootstrap from it. genrl's gathers wait for
HIVEMIND_WORLD_SIZE=3 records per round key, so every round a genrl node completes is one
whose key held OUR record, read and decoded by genrl's own unpacker (a record it could not
decode would be logged "SKIPPING: Failed to decode value" and not counted). Our node
trains on the genrl nodes' rollouts (`external=N` > 0), scored against our own tasks:
the genrl dataset is made of questions our `local_arith` source also generates.

What genrl does with our rollouts is genrl's data manager's choice: the
`SimpleTextDataManager` used here never puts peers' payloads into its training batch
(its `prepare_opponent` returns None), so "genrl trains on ours" holds only for data
managers that use swarm states; this test proves they are delivered and decoded."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.upstream.genrl_swarm import (
    SWARM_ERROR,
    GenrlNode,
    build_dataset_dir,
    rounds,
    start_unsupervised,
    stop_group,
)
from trainer.data import TaskSource

pytestmark = [pytest.mark.upstream, pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(480)]

FINISHED = re.compile(r"Finished training round: (\d+) stage: \d+ reward=\S+ external=(\d+)")
GENRL_TROUBLE = (SWARM_ERROR, "SKIPPING", "Traceback", "Exception occurred")


def _wait(pred: object, timeout: float, describe: object) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s; saw: {describe()}")  # type: ignore[operator]
        time.sleep(0.5)


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
num_generations = 2
max_new_tokens = 8
prompts_per_round = 2
max_external = 8
seed = 0
""")
    return cfg


def _genrl_questions() -> list[tuple[str, str]]:
    """Questions our local_arith source generates too (so our node can score them)."""
    tasks = TaskSource(seed=0)
    return [(t.question, t.answer) for t in tasks.sample(0, 6, salt="genrl")]


@pytest.fixture
def mixed(tmp_path: Path, genrl_assets: tuple[Path, Path]) -> Iterator[tuple[Path, list[Path]]]:
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
        _wait(peers_file.exists, 180, lambda: ours_log.read_text(errors="replace")[-1500:])
        maddrs = tuple(line for line in peers_file.read_text().split() if line.startswith("/"))
        data = build_dataset_dir(tmp_path / "data", _genrl_questions())
        logs = []
        for i, name in enumerate(("g1", "g2")):
            node = GenrlNode(tmp_path / name, name, False, tmp_path / "unused", model_dir, data, seed=i)
            node = replace(node, world_size=3, initial_peers=maddrs)
            node.write()
            logs.append(tmp_path / f"{name}.log")
            procs.append(start_unsupervised(node, logs[-1]))
        yield ours_log, logs
    finally:
        for p in procs:
            stop_group(p)


def test_genrl_nodes_and_ours_share_rounds_in_both_directions(mixed: tuple[Path, list[Path]]) -> None:
    """Each genrl node completes rounds that needed our record; ours trains on theirs;
    genrl logs no error and keeps advancing."""
    ours_log, genrl_logs = mixed

    def text(p: Path) -> str:
        return p.read_text(errors="replace") if p.exists() else ""

    def external() -> list[int]:
        return [int(n) for _, n in FINISHED.findall(text(ours_log))]

    def enough() -> bool:
        return all(len(rounds(text(g))) >= 4 for g in genrl_logs) and any(n > 0 for n in external())

    _wait(enough, 240, lambda: json.dumps({"ours_external": external()[-5:],
                                           "genrl_rounds": [rounds(text(g))[-3:] for g in genrl_logs],
                                           "ours_tail": text(ours_log)[-800:]}))
    seen = {g.name: len(rounds(text(g))) for g in genrl_logs}
    time.sleep(6)  # never stall: every genrl node advances again within a few rounds' time
    for g in genrl_logs:
        assert len(rounds(text(g))) > seen[g.name], f"{g.name} stalled at round {rounds(text(g))[-1:]}"
        trouble = [line for line in text(g).splitlines() if any(t in line for t in GENRL_TROUBLE)]
        assert not trouble, f"{g.name}: {trouble[:3]}"
    assert "dropped" not in text(ours_log), text(ours_log)[-1500:]

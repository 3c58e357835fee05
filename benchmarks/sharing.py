"""Does training on peers' rollouts help? SAPO-style sharing vs training alone.

Three GRPOLearner instances in one process exchange Rollouts through plain lists
(the in-memory stand-in for the DHT); a fourth, built from the same seed and fed the
same tasks as the first, trains alone. The figure is the first learner's cumulative
reward on its own tasks relative to its solo twin (the SAPO paper's measure), and
benchmarks/out/sharing.png plots both curves per round.

Each trial uses its own task and model seeds; the curves are averaged over trials,
since one 20-round run of a tiny model is noisy.

Run: .venv/bin/python benchmarks/sharing.py [--rounds 20] [--trials 3] [--lr 2e-3]
Last line: rounds= trials= shared_reward= solo_reward= reward_gain_pct= seconds=
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from trainer.data import TaskSource
from trainer.train import GRPOLearner, TrainSettings

OUT = Path(__file__).resolve().parent / "out"
PEERS = ("peer-a", "peer-b", "peer-c")


def _settings(seed: int, tmp: Path, lr: float) -> TrainSettings:
    return TrainSettings(seed=seed, learning_rate=lr, num_generations=4, max_new_tokens=16,
                         prompts_per_round=4, checkpoint_dir=tmp / f"ckpt-{seed}")


def run(rounds: int, lr: float, trial: int) -> tuple[list[float], list[float]]:
    """Per-round local reward of the sharing learner and of its solo twin."""
    tasks = TaskSource(("local_arith",), seed=trial)
    base = 10 * trial
    with tempfile.TemporaryDirectory() as tmp:
        swarm = [GRPOLearner(_settings(base + i, Path(tmp), lr), tasks) for i in range(len(PEERS))]
        solo = GRPOLearner(_settings(base, Path(tmp), lr), tasks)
        shared_curve, solo_curve = [], []
        for rnd in range(rounds):
            batches = []
            for peer, learner in zip(PEERS, swarm, strict=True):
                mine = tasks.sample(rnd, learner.settings.prompts_per_round, salt=peer)
                batches.append(learner.generate(mine, round=rnd, stage=0, peer_id=peer))
            stats = [
                learner.train_on(batches[i], [r for j, b in enumerate(batches) if j != i for r in b])
                for i, learner in enumerate(swarm)
            ]
            mine = tasks.sample(rnd, solo.settings.prompts_per_round, salt=PEERS[0])
            alone = solo.train_on(solo.generate(mine, round=rnd, stage=0, peer_id=PEERS[0]), [])
            shared_curve.append(stats[0].local_reward)
            solo_curve.append(alone.local_reward)
    return shared_curve, solo_curve


def plot(shared: list[float], solo: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    rounds = range(1, len(shared) + 1)
    ax.plot(rounds, shared, marker="o", label="with 2 peers' rollouts")
    ax.plot(rounds, solo, marker="s", label="alone")
    ax.set_xlabel("round")
    ax.set_ylabel("mean reward on own tasks")
    ax.set_title("GRPO, tiny Qwen2 on local_arith: sharing vs alone")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--trials", type=int, default=3, help="independent seeds, curves averaged")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # tiny matmuls: threads only add contention on a shared CPU
    start = time.perf_counter()
    runs = [run(args.rounds, args.lr, trial) for trial in range(args.trials)]
    shared = [sum(r[0][i] for r in runs) / len(runs) for i in range(args.rounds)]
    solo = [sum(r[1][i] for r in runs) / len(runs) for i in range(args.rounds)]
    plot(shared, solo, OUT / "sharing.png")
    total_shared, total_solo = sum(shared), sum(solo)
    gain = 100.0 * (total_shared - total_solo) / total_solo if total_solo else float("nan")
    for rnd, (a, b) in enumerate(zip(shared, solo, strict=True)):
        print(f"round={rnd} shared={a:.3f} solo={b:.3f}")
    print(f"rounds={args.rounds} trials={args.trials} shared_reward={total_shared:.3f} solo_reward={total_solo:.3f} "
          f"reward_gain_pct={gain:.1f} seconds={time.perf_counter() - start:.1f}")


if __name__ == "__main__":
    main()

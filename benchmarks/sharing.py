"""Does training on peers' rollouts help, at equal batch? SAPO's experiment, small.

Every arm trains on the same number of rollout groups per step (8): own/external =
8/0 (no sharing), 4/4 (SAPO's best) and 2/6. A swarm of PEERS real processes
(benchmarks/_peers.py: each its own hivemind DHT node and p2pd, signed records) runs
each arm: every round each peer generates its own groups, publishes them through the
trainer's `DhtExchange`, gathers the other peers' records through the DHT (waiting
until all have arrived, so the swarm keeps in step), picks its external groups
round-robin over peers (`pick_external`), and takes one GRPO step on own + external,
rewards recomputed locally as in the node. A store that fails on the loaded machine
is retried (the peer reads its own record back), and reported as `republished`; a
gather that still comes back short is reported as `short_rounds`.

Held out: local_arith has 100 distinct questions (single-digit additions); a fixed
fifth of them (by a hash of the question) is never sampled for training by any peer,
so no peer trains on them, its own or shared. After the last round each peer is
scored on all held-out questions (num_generations samples each, temperature 1, as it
generates in training), reward = `total_reward` (correctness + format).

A seed fixes the tasks and every peer's initial weights; all arms of a seed start
from the same weights and see the same own-task stream (a prefix of it), so arms are
compared per seed. Per arm: the mean over seeds of the swarm's mean held-out reward,
with a 95% t-interval; the gain of a sharing arm is its paired per-seed difference
to 8/0, as a percentage of 8/0's mean, with the 95% t-interval of that difference
(ci_low_ > 0 means sharing helped at that confidence). benchmarks/out/sharing.png
plots it.

Run: .venv/bin/python benchmarks/sharing.py [--seeds 10] [--rounds 10]   (~11 min on 2 loaded cores)
Last line: gain_pct_own8_ext0= ci_low_own8_ext0= gain_pct_own4_ext4= ci_low_own4_ext4= ...
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from _peers import (
    bootstrap,
    exchange,
    exit_on_sigterm,
    join,
    publish_checked,
    ready_then_start_time,
    run_peers,
    worker_args,
    write_result,
)

from trainer.data import LOCAL_ARITH, TaskSource, local_arith_task
from trainer.exchange import pick_external
from trainer.rewards import total_reward
from trainer.rollout import Rollout, Task

OUT = Path(__file__).resolve().parent / "out"
ARMS = ((8, 0), (4, 4), (2, 6))
PEERS = 4  # 3 other peers x 2 own groups = 6 external groups: enough for the 2/6 arm
GATHER_TIMEOUT = 60.0  # generous: a round waits for the slowest peer on a shared CPU
POLL = 0.02
# two-sided 95% Student t quantiles by degrees of freedom (beyond 30: 1.96 is within 3%)
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
        18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


def arm_name(own: int, ext: int) -> str:
    return f"own{own}_ext{ext}"


def held_out(question: str) -> bool:
    """A fixed fifth of the questions, chosen by hash so the split has no pattern."""
    return hashlib.sha256(question.encode()).digest()[0] % 5 == 0


def held_out_tasks(seed: int) -> list[Task]:
    """Every held-out question once (the first index that yields it)."""
    found: dict[str, Task] = {}
    for index in range(5000):
        task = local_arith_task(seed, index)
        if held_out(task.question):
            found.setdefault(task.question, task)
    return sorted(found.values(), key=lambda t: t.question)


def training_tasks(source: TaskSource, rnd: int, n: int, salt: str) -> list[Task]:
    """The first n non-held-out tasks of this peer's stream for `rnd` (a prefix for any n)."""
    picked = [t for t in source.sample(rnd, 8 * n, salt=salt) if not held_out(t.question)]
    return picked[:n]


def _settings(seed: int, own: int, args: Any, tmp: Path) -> Any:
    from trainer.train import TrainSettings

    return TrainSettings(seed=seed, learning_rate=args.lr, num_generations=args.generations,
                         max_new_tokens=args.tokens, prompts_per_round=own, checkpoint_dir=tmp / "ckpt")


def run_arm(node: Any, index: int, seed: int, own: int, ext: int, args: Any, tmp: Path) -> dict[str, Any]:
    """One peer's run of one arm for one seed: train, then score the held-out set."""
    from trainer.train import GRPOLearner

    source = TaskSource((LOCAL_ARITH,), seed=seed)
    learner = GRPOLearner(_settings(10_000 * seed + index, own, args, tmp), source)
    ex = exchange(node, f"sharing-s{seed}-{arm_name(own, ext)}", expected_peers=args.peers - 1, poll=POLL)
    rng = random.Random(f"{seed}:{index}")
    short, received, republished = 0, 0, 0
    for rnd in range(args.rounds):
        mine = learner.generate(training_tasks(source, rnd, own, f"peer{index}"), round=rnd, stage=0,
                                peer_id=node.peer_id)
        republished += publish_checked(ex, node, rnd, mine) - 1
        external: list[Rollout] = []
        if ext:
            got = ex.gather(rnd, 0, limit=(args.peers - 1) * own, timeout=GATHER_TIMEOUT)
            by_peer: dict[str, list[Rollout]] = defaultdict(list)
            for r in got:
                by_peer[r.peer_id].append(r)
            external = pick_external(by_peer, ext, rng)
            received += len(external)
            short += len(external) < ext
        learner.train_on(mine, external)
    tasks = held_out_tasks(seed)
    rollouts = learner.generate(tasks, round=args.rounds, stage=0, peer_id="eval")
    scores = [total_reward(c, task) for task, r in zip(tasks, rollouts, strict=True) for c in r.completions]
    row = {"seed": seed, "arm": arm_name(own, ext), "held_out": statistics.fmean(scores),
           "samples": len(scores), "short_rounds": short, "external": received, "republished": republished}
    print(f"done {row} at {time.strftime('%H:%M:%S')}", flush=True)
    return row


def worker(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    exit_on_sigterm()
    args = worker_args(argv, _add_run_args)
    node = join(args.work, args.worker, args.initial)
    try:
        ready_then_start_time(args.work, args.worker)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.seeds):
                for own, ext in ARMS:
                    rows.append(run_arm(node, args.worker, seed, own, ext, args, Path(tmp)))
        write_result(args.work, args.worker, {"rows": rows})
    finally:
        node.shutdown()


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--peers", type=int, default=PEERS)


def _t(df: int) -> float:
    if df > 30:
        return 1.96
    return T975[max(k for k in T975 if k <= df)]  # the nearest tabled df below: conservative


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% t-interval."""
    mean = statistics.fmean(values)
    half = _t(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return mean, mean - half, mean + half


def summarise(rows: list[dict[str, Any]], seeds: int) -> dict[str, dict[str, Any]]:
    """Per arm: per-seed swarm means, their interval, and the paired gain over 8/0."""
    per: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        per[r["arm"]][r["seed"]].append(r["held_out"])
    seed_means = {arm: [statistics.fmean(by_seed[s]) for s in range(seeds)] for arm, by_seed in per.items()}
    base = seed_means[arm_name(*ARMS[0])]
    base_mean = statistics.fmean(base)
    out = {}
    for own, ext in ARMS:
        arm = arm_name(own, ext)
        values = seed_means[arm]
        diff = [v - b for v, b in zip(values, base, strict=True)]
        d_mean, d_low, d_high = interval(diff) if any(diff) else (0.0, 0.0, 0.0)
        out[arm] = {"values": values, "interval": interval(values), "gain_pct": 100 * d_mean / base_mean,
                    "ci_low": 100 * d_low / base_mean, "ci_high": 100 * d_high / base_mean,
                    "short_rounds": sum(r["short_rounds"] for r in rows if r["arm"] == arm),
                    "republished": sum(r["republished"] for r in rows if r["arm"] == arm),
                    "external": sum(r["external"] for r in rows if r["arm"] == arm)}
    return out


def plot(summary: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for x, s in enumerate(summary.values()):
        mean, low, high = s["interval"]
        ax.bar(x, mean, color="#9ecae1", edgecolor="#3182bd")
        ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], color="black", capsize=6)
        ax.scatter([x] * len(s["values"]), s["values"], color="#08519c", s=12, zorder=3)
    ax.set_xticks(range(len(summary)), [a.replace("_", " / ") for a in summary])
    ax.set_ylabel("mean reward on held-out questions")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    _add_run_args(parser)
    args = parser.parse_args()
    exit_on_sigterm()
    extra = ["--seeds", str(args.seeds), "--rounds", str(args.rounds), "--lr", str(args.lr),
             "--generations", str(args.generations), "--tokens", str(args.tokens), "--peers", str(args.peers)]
    root = Path(tempfile.mkdtemp(prefix="sharing-"))
    start = time.monotonic()
    try:
        boot = bootstrap(root)
        try:
            results = run_peers(Path(__file__), args.peers, root, boot.visible_maddrs(), extra,
                                lead=2.0, timeout=3 * 3600.0)
        finally:
            boot.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = [row for r in results for row in r["rows"]]
    summary = summarise(rows, args.seeds)
    scale = (f"{args.peers} peers, {args.seeds} seeds, {args.rounds} rounds, 8 groups/step x "
             f"{args.generations} completions x {args.tokens} tokens, tiny Qwen2, lr {args.lr}")
    plot(summary, OUT / "sharing.png", f"GRPO on local_arith: held-out reward, mean and 95% CI\n{scale}")
    print(f"scale: {scale}; held-out questions: {len(held_out_tasks(0))}; seconds={time.monotonic() - start:.0f}")
    for arm, s in summary.items():
        mean, low, high = s["interval"]
        print(f"arm={arm} held_out_reward={mean:.4f} ci95=[{low:.4f},{high:.4f}] gain_pct={s['gain_pct']:.1f} "
              f"gain_ci95=[{s['ci_low']:.1f},{s['ci_high']:.1f}] external_groups={s['external']} "
              f"short_rounds={s['short_rounds']} republished={s['republished']} per_seed={','.join(f'{v:.3f}' for v in s['values'])}")
    print(" ".join(f"gain_pct_{arm}={s['gain_pct']:.1f} ci_low_{arm}={s['ci_low']:.1f}" for arm, s in summary.items()))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker(sys.argv[1:])
    else:
        main()

"""GRPO throughput at equal work: our GRPOLearner vs an unmodified trl GRPOTrainer.

Equal work means both sides take the same number of optimizer steps, each on the same
prompts (the same TaskSource draw, in the same order), with the same group size, max
completion tokens, dtype, sampling settings, KV cache (`--cache none`: dynamic on both;
`--cache static`: static on both), initial weights, learning rate and reward
(`total_reward`, format + correctness). Ours runs with `skip_zero_advantage=False`, so
every sequence goes through forward and backward and every call steps the optimizer,
as trl does. The zero-advantage skip is a feature, timed apart by a third run with it
on ("ours_skip"), and never enters the headline ratio.

Each side runs in its own process (clean peak memory, no shared allocator or compile
state); the sides alternate `--repeats` times and the figures are medians. A step is one optimizer step including its generation, wall-clock, with a CUDA
sync at each end; step 0 is a warm-up and not counted. Completion tokens are counted
from the generated ids, EOS included, on both sides (ours: StepStats; trl: the reward
function's `completion_ids`). Peak memory: CUDA max allocated, or the process's peak
RSS on CPU.

Shapes. CUDA: Qwen2.5-0.5B's transformer with random weights, bf16, 8 generations x 256
completion tokens, 2 prompts per step; its vocabulary is sized to the local tokenizer's
(~100 tokens), so sampled ids decode to text and rewards are not all zero (see
trainer/model.py: 358M parameters instead of 494M). CPU (no GPU): the tiny model,
fp32, 8 x 32 tokens; its figures prove the comparison, not GPU speed.

Run: .venv/bin/python benchmarks/gpu_grpo.py [--steps 6] [--repeats 2] [--cache none|static]
Last line: ours_tok_s= baseline_tok_s= ratio= equal_work=1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SIDES = ("ours", "baseline", "ours_skip")


def _settings(cuda: bool, tmp: Path, *, skip: bool, static: bool) -> Any:
    from trainer.train import TrainSettings

    common: dict[str, Any] = {"checkpoint_dir": tmp / "ckpt", "skip_zero_advantage": skip,
                              "static_kv_cache": static, "num_generations": 8, "prompts_per_round": 2}
    if cuda:
        return TrainSettings(model="tiny:qwen2.5-0.5b", device="cuda", dtype="bf16",
                             max_new_tokens=256, learning_rate=1e-6, **common)
    return TrainSettings(model="tiny", device="cpu", dtype="fp32", max_new_tokens=32, **common)


def _step_tasks(steps: int, prompts: int) -> list[list[Any]]:
    """The prompts of each step (warm-up included), the same for every side."""
    from trainer.data import TaskSource

    source = TaskSource(seed=0)
    return [source.sample(step, prompts, salt="bench") for step in range(steps + 1)]


class _Clock:
    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda

    def now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()


def run_ours(settings: Any, steps: int, cuda: bool) -> list[dict[str, float]]:
    from trainer.data import TaskSource
    from trainer.train import GRPOLearner

    learner = GRPOLearner(settings, TaskSource(seed=0))
    clock, rows = _Clock(cuda), []
    for step, batch in enumerate(_step_tasks(steps, settings.prompts_per_round)):
        start = clock.now()
        stats = learner.train_on(learner.generate(batch, round=step, stage=0, peer_id="bench"), [])
        rows.append({"seconds": clock.now() - start, "tokens": stats.completion_tokens, "loss": stats.loss,
                     "reward": stats.mean_reward, "groups": stats.groups,
                     "zero_adv_groups": stats.zero_advantage_groups})
    return rows


def run_baseline(settings: Any, steps: int, cuda: bool, tmp: Path) -> list[dict[str, float]]:
    from transformers import PrinterCallback, TrainerCallback

    from trainer.rewards import total_reward
    from trainer.rollout import Task, TaskRef
    from trainer.trl_baseline import plain_trl_trainer

    clock = _Clock(cuda)
    rows: list[dict[str, float]] = []
    pending: dict[str, float] = {}

    def reward(completions: list[Any], completion_ids: list[list[int]], answer: list[str],
               **_: Any) -> list[float]:
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        scores = [total_reward(t, Task(TaskRef("bench", 0, 0), "", a)) for t, a in zip(texts, answer, strict=True)]
        pending["tokens"] = sum(len(ids) for ids in completion_ids)
        pending["reward"] = sum(scores) / len(scores)
        return scores

    class Timer(TrainerCallback):
        def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
            pending["start"] = clock.now()

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            rows.append({"seconds": clock.now() - pending.pop("start"), "tokens": pending.pop("tokens"),
                         "reward": pending.pop("reward"), "loss": float("nan")})

        def on_log(self, *args: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
            if logs and "loss" in logs and rows:
                rows[-1]["loss"] = float(logs["loss"])

    tasks = [t for batch in _step_tasks(steps, settings.prompts_per_round) for t in batch]
    trainer = plain_trl_trainer(settings, tasks, reward, steps + 1, tmp / "trl")
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(Timer())
    trainer.train()
    return rows


def side_main(side: str, steps: int, cache: str) -> None:
    """One side in this process; prints one JSON line."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)  # tiny matmuls on a shared CPU: the same for both sides
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(cuda, Path(tmp), skip=side == "ours_skip", static=cache == "static")
        rows = run_baseline(settings, steps, cuda, Path(tmp)) if side == "baseline" else run_ours(settings, steps, cuda)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if cuda
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    device = torch.cuda.get_device_name().replace(" ", "_") if cuda else "cpu"
    print(json.dumps({"side": side, "rows": rows, "peak_mb": peak_mb, "device": device,
                      "model": settings.model, "dtype": settings.dtype, "G": settings.num_generations,
                      "max_new_tokens": settings.max_new_tokens, "prompts": settings.prompts_per_round}))


def _run_side(side: str, steps: int, cache: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--side", side, "--steps", str(steps), "--cache", cache]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        sys.exit(f"gpu_grpo.py: side {side} failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _summary(result: dict[str, Any]) -> dict[str, float]:
    rows = result["rows"][1:]  # step 0 is the warm-up
    seconds, tokens = sum(r["seconds"] for r in rows), sum(r["tokens"] for r in rows)
    return {"tok_s": tokens / seconds, "s_step": seconds / len(rows), "tokens": tokens,
            "peak_mb": result["peak_mb"]}


def _median_summary(results: list[dict[str, Any]]) -> dict[str, float]:
    summaries = [_summary(r) for r in results]
    return {key: statistics.median(s[key] for s in summaries) for key in summaries[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="measured optimizer steps (plus one warm-up)")
    parser.add_argument("--cache", choices=("none", "static"), default="none",
                        help="KV cache on both sides: dynamic (none) or static")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side, alternating; medians reported")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side_main(args.side, args.steps, args.cache)
        return
    # Sides alternate, `--repeats` times, and each figure is the median over repeats:
    # on a shared machine the load drifts, and a fixed order would hand it to one side.
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for _ in range(args.repeats):
        for side in SIDES:
            runs[side].append(_run_side(side, args.steps, args.cache))
    ours, base = runs["ours"][0], runs["baseline"][0]
    print(f"repeats={args.repeats} (figures: median over repeats; loss curves: first repeat)")
    print(f"device={ours['device']} model={ours['model']} dtype={ours['dtype']} generations={ours['G']} "
          f"max_new_tokens={ours['max_new_tokens']} prompts_per_step={ours['prompts']} "
          f"optimizer_steps={args.steps} (+1 warm-up) cache={args.cache}")
    for step, (a, b) in enumerate(zip(ours["rows"], base["rows"], strict=True)):
        print(f"step={step} ours_loss={a['loss']:.5f} baseline_loss={b['loss']:.5f} "
              f"ours_reward={a['reward']:.3f} baseline_reward={b['reward']:.3f} "
              f"ours_s={a['seconds']:.3f} baseline_s={b['seconds']:.3f}")
    o, b, k = (_median_summary(runs[s]) for s in SIDES)
    for name, s in (("ours", o), ("baseline", b), ("ours_skip", k)):
        print(f"{name}: completion_tok_s={s['tok_s']:.1f} s_per_step={s['s_step']:.3f} "
              f"tokens={s['tokens']:.0f} peak_mb={s['peak_mb']:.0f}")
    groups = sum(r["groups"] for run in runs["ours_skip"] for r in run["rows"][1:])
    zero = sum(r["zero_adv_groups"] for run in runs["ours_skip"] for r in run["rows"][1:])
    saved = 100.0 * (o["s_step"] - k["s_step"]) / o["s_step"]
    print(f"skip (not in the ratio): zero_adv_groups={zero}/{groups} ({100.0 * zero / max(groups, 1):.0f}%) "
          f"s_per_step {o['s_step']:.3f} -> {k['s_step']:.3f}, time_saved_pct={saved:.1f}")
    print(f"ours_tok_s={o['tok_s']:.1f} baseline_tok_s={b['tok_s']:.1f} ratio={o['tok_s'] / b['tok_s']:.2f} equal_work=1")


if __name__ == "__main__":
    main()

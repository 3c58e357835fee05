"""GRPO throughput: our GRPOLearner vs a plain trl GRPOTrainer, same model and settings.

On CUDA: a Qwen2.5-0.5B-shaped model with random weights (no download), bf16,
num_generations=8 x 256 completion tokens, 2 prompts per step. Without CUDA it runs a
tiny CPU configuration instead, only to prove the path works (printing device=cpu);
its figures say nothing about GPU speed.

A step is one optimizer step including its generation, timed wall-clock with a CUDA
sync at each end; the first step of each side is a warm-up (CUDA context, kernels,
static-cache compilation) and is not counted. Completion tokens are counted from the
generated ids on both sides (ours: StepStats; trl: the reward function's
`completion_ids`).

Run: .venv/bin/python benchmarks/gpu_grpo.py [--steps 3]
Last line: device= ours_tok_s= baseline_tok_s= ratio= ours_s_step= baseline_s_step=
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from trainer.data import TaskSource
from trainer.rewards import format_reward
from trainer.train import GRPOLearner, TrainSettings, plain_trl_trainer


def _settings(cuda: bool, tmp: Path) -> TrainSettings:
    if cuda:
        return TrainSettings(model="tiny:qwen2.5-0.5b", device="cuda", dtype="bf16",
                             num_generations=8, max_new_tokens=256, prompts_per_round=2,
                             learning_rate=1e-6, checkpoint_dir=tmp / "ckpt")
    return TrainSettings(model="tiny", device="cpu", dtype="fp32", num_generations=4,
                         max_new_tokens=16, prompts_per_round=2, checkpoint_dir=tmp / "ckpt")


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def bench_ours(settings: TrainSettings, steps: int, cuda: bool) -> tuple[float, float]:
    """(completion tokens/s, s/step) over `steps` measured steps after one warm-up."""
    tasks = TaskSource(seed=0)
    learner = GRPOLearner(settings, tasks)
    seconds, tokens = 0.0, 0
    for step in range(steps + 1):
        batch = tasks.sample(step, settings.prompts_per_round, salt="bench")
        _sync(cuda)
        start = time.perf_counter()
        rollouts = learner.generate(batch, round=step, stage=0, peer_id="bench")
        stats = learner.train_on(rollouts, [])
        _sync(cuda)
        if step:
            seconds += time.perf_counter() - start
            tokens += stats.completion_tokens
    del learner
    return tokens / seconds, seconds / steps


class _StepTimer:
    """Times each trl optimizer step and counts the completion tokens it generated."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self._start, self._pending = cuda, 0.0, 0
        self.durations: list[float] = []
        self.tokens: list[int] = []

    def reward(self, completions: list[Any], completion_ids: list[list[int]], **_: Any) -> list[float]:
        self._pending += sum(len(ids) for ids in completion_ids)
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [format_reward(t) for t in texts]

    def callback(self) -> Any:
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
                _sync(timer.cuda)
                timer._start = time.perf_counter()

            def on_step_end(self, *args: Any, **kwargs: Any) -> None:
                _sync(timer.cuda)
                timer.durations.append(time.perf_counter() - timer._start)
                timer.tokens.append(timer._pending)
                timer._pending = 0

        return Callback()


def bench_baseline(settings: TrainSettings, steps: int, cuda: bool, tmp: Path) -> tuple[float, float]:
    """Same figures for an unmodified trl GRPOTrainer."""
    timer = _StepTimer(cuda)
    tasks = TaskSource(seed=0)
    prompts = [t.question for t in tasks.sample(0, settings.prompts_per_round * (steps + 1), "bench")]
    trainer = plain_trl_trainer(settings, prompts, timer.reward, steps + 1, tmp / "trl")
    trainer.add_callback(timer.callback())
    trainer.train()
    seconds, tokens = sum(timer.durations[1:]), sum(timer.tokens[1:])
    del trainer
    return tokens / seconds, seconds / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="measured steps (plus one warm-up)")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)  # tiny matmuls on a shared CPU
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(cuda, Path(tmp))
        ours_tok, ours_step = bench_ours(settings, args.steps, cuda)
        if cuda:
            torch.cuda.empty_cache()
        base_tok, base_step = bench_baseline(settings, args.steps, cuda, Path(tmp))
    device = torch.cuda.get_device_name().replace(" ", "_") if cuda else "cpu"
    print(f"model={settings.model} dtype={settings.dtype} generations={settings.num_generations} "
          f"max_new_tokens={settings.max_new_tokens} prompts={settings.prompts_per_round} steps={args.steps}")
    print(f"device={device} ours_tok_s={ours_tok:.1f} baseline_tok_s={base_tok:.1f} "
          f"ratio={ours_tok / base_tok:.2f} ours_s_step={ours_step:.3f} baseline_s_step={base_step:.3f}")


if __name__ == "__main__":
    main()

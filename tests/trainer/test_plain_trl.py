"""The benchmark's baseline (`plain_trl_trainer`) does the work a GRPOLearner does:
same weights, same prompts in the same order, same group size, tokens and settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.data import TaskSource
from trainer.train import GRPOLearner, TrainSettings
from trainer.trl_baseline import plain_trl_trainer

pytest.importorskip("trl")
pytestmark = [
    pytest.mark.slow,
    # trl 1.16's own GRPOConfig still sets the deprecated transformers argument.
    pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning"),
    # transformers 5's Trainer.train() asks the model through the deprecated name.
    pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"),
]

STEPS = 2


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _settings(tmp_path: Path) -> TrainSettings:
    return TrainSettings(checkpoint_dir=tmp_path / "ckpt", num_generations=3, max_new_tokens=8,
                         prompts_per_round=2, learning_rate=1e-3, seed=5)


def test_baseline_starts_from_our_weights_with_our_settings(tmp_path: Path) -> None:
    """Same initial weights as a GRPOLearner of the same settings, and every setting
    that decides the work pinned to ours (order, batch, tokens, lr schedule, cache)."""
    settings = _settings(tmp_path)
    tasks = TaskSource().sample(0, 4, "me")
    trainer = plain_trl_trainer(settings, tasks, lambda completions, **_: [0.0] * len(completions),
                                STEPS, tmp_path / "trl")
    ours = GRPOLearner(settings, TaskSource())
    theirs = trainer.model.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.model.state_dict().items())
    args = trainer.args
    assert (args.num_generations, args.max_completion_length) == (3, 8)
    assert args.per_device_train_batch_size == 3 * 2  # prompts_per_round groups per step
    assert (args.learning_rate, args.lr_scheduler_type, args.weight_decay) == (1e-3, "constant", 0.0)
    assert (args.shuffle_dataset, args.cache_implementation, args.beta) == (False, None, 0.0)
    assert (args.temperature, ours.temperature) == (1.0, 1.0)
    assert (args.epsilon, args.loss_type) == (ours.epsilon_low, "dapo")


def test_baseline_steps_on_the_given_prompts_in_order_with_their_answers(tmp_path: Path) -> None:
    """Each optimizer step generates num_generations completions for the next
    prompts_per_round tasks, in the order given, and the reward sees their answers."""
    settings = _settings(tmp_path)
    tasks = TaskSource().sample(0, 2 * STEPS, "me")
    calls: list[dict[str, Any]] = []

    def reward(prompts: list[Any], completion_ids: list[list[int]], answer: list[str], **_: Any) -> list[float]:
        questions = [p[-1]["content"] for p in prompts]
        calls.append({"questions": questions, "answers": answer, "lengths": [len(c) for c in completion_ids]})
        return [float(i % 2) for i in range(len(prompts))]

    trainer = plain_trl_trainer(settings, tasks, reward, STEPS, tmp_path / "trl")
    trainer.train()
    assert trainer.state.global_step == STEPS
    assert len(calls) == STEPS
    for step, call in enumerate(calls):
        mine = tasks[2 * step:2 * step + 2]
        assert call["questions"] == [t.question for t in mine for _ in range(3)]
        assert call["answers"] == [t.answer for t in mine for _ in range(3)]
        assert all(1 <= n <= 8 for n in call["lengths"])

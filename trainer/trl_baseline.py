"""The baseline for the GPU benchmark: an unmodified trl GRPOTrainer set up to do the
same work as one `GRPOLearner` (trainer.train), so the two can be compared like for like."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer.model import load_model_and_tokenizer
from trainer.train import SYSTEM_PROMPT, TrainSettings

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from trainer.rollout import Task

__all__ = ["plain_trl_trainer"]



def plain_trl_trainer(settings: TrainSettings, tasks: Sequence[Task],
                      reward_func: Callable[..., list[float]], max_steps: int,
                      output_dir: Path, model: Any = None, tokenizer: Any = None) -> Any:
    """An unmodified trl GRPOTrainer doing the work a GRPOLearner does: the baseline.

    Equal work is the point, so everything that decides the work is pinned: the same
    weights (same loader and seed), `prompts_per_round` tasks x `num_generations` per
    optimizer step, taken in the order given (`shuffle_dataset=False`), one generation
    per step, the same sampling (trl's defaults, which ours reads), max tokens, dtype,
    learning rate, clipping and beta, and the same KV cache (static on CUDA only when
    `static_kv_cache`, as `GRPOLearner`; trl builds its GenerationConfig with
    `disable_compile=True`, which is trl's choice, kept). Rows carry `answer`, so
    `reward_func(completions=..., answer=[...], ...)` can score as `total_reward` does.
    """
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer  # type: ignore[attr-defined]

    if model is None or tokenizer is None:
        model, tokenizer = load_model_and_tokenizer(
            settings.model, device=settings.device, dtype=settings.dtype, seed=settings.seed
        )
    bf16 = settings.dtype == "bf16"
    static = settings.device.startswith("cuda") and settings.static_kv_cache
    config = GRPOConfig(
        output_dir=str(output_dir), max_steps=max_steps, learning_rate=settings.learning_rate,
        max_grad_norm=settings.max_grad_norm, beta=settings.beta, seed=settings.seed,
        num_generations=settings.num_generations, max_completion_length=settings.max_new_tokens,
        per_device_train_batch_size=settings.num_generations * settings.prompts_per_round,
        shuffle_dataset=False, cache_implementation="static" if static else None,
        weight_decay=0.0, lr_scheduler_type="constant", warmup_steps=0,  # ours: AdamW, fixed lr
        bf16=bf16, fp16=False, use_cpu=settings.device == "cpu",
        gradient_checkpointing=False,  # ours does not checkpoint either: compare like with like
        report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
        dataloader_num_workers=0,
    )
    data = Dataset.from_dict({
        "prompt": [[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": t.question}]
                   for t in tasks],
        "answer": [t.answer for t in tasks],
    })
    return GRPOTrainer(
        model=model, reward_funcs=reward_func, args=config,  # type: ignore[arg-type]
        train_dataset=data, processing_class=tokenizer,
    )

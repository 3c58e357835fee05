"""Reward functions: pure text -> float, recomputed by every peer for every rollout.

Pure on purpose (no torch, no I/O): the receiver of a peer's rollout scores it with
the same code against the answer it regenerated itself (trainer.rollout, W22), so
the functions must be cheap, deterministic and safe on hostile text. Inputs longer
than the wire cap are cut before any regex runs.

Scale: `format_reward` in [0, 1] is shaped (partial credit per tag, as the hm era's
`xmlcount`) because a small model starts far from the format and needs a gradient
toward it; `correctness_reward` is 0 or 1; `total_reward` weights format by
FORMAT_WEIGHT so a well-formatted wrong answer never beats a right one.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from trainer.rollout import MAX_COMPLETION_CHARS

if TYPE_CHECKING:
    from trainer.rollout import Task

FORMAT_WEIGHT = 0.5
_OPEN, _CLOSE = "<answer>", "</answer>"
_STRICT = re.compile(r"\s*(?:<think>.*?</think>\s*)?<answer>[^<>]*</answer>\s*", re.DOTALL)
_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_SPACES = re.compile(r"\s+")


def extract_answer(completion: str) -> str | None:
    """The content of the last closed <answer> block, stripped; None without one."""
    blocks = _BLOCK.findall(completion[:MAX_COMPLETION_CHARS])
    return blocks[-1].strip() if blocks else None


def format_reward(completion: str) -> float:
    """0.25 for an <answer> tag, 0.25 more for a </answer> after it, 0.5 more if the
    completion is nothing but (an optional <think> block and) one answer block."""
    text = completion[:MAX_COMPLETION_CHARS]
    opened = text.find(_OPEN)
    if opened < 0:
        return 0.0
    score = 0.25
    if text.find(_CLOSE, opened + len(_OPEN)) >= 0:
        score += 0.25
    if _STRICT.fullmatch(text):
        score += 0.5
    return score


def _normalise(text: str) -> str:
    """Numbers compare by value ("7.0" == "7"), other text case- and space-insensitively."""
    cleaned = _SPACES.sub(" ", text.strip()).lower()
    try:
        number = Decimal(cleaned.replace(",", ""))
    except InvalidOperation:
        return cleaned
    if not number.is_finite() or abs(number.adjusted()) > 64:
        return cleaned  # a huge exponent would expand to a huge string below
    return format(number.normalize(), "f") if number != 0 else "0"


def correctness_reward(completion: str, answer: str) -> float:
    """1.0 when the extracted answer equals the reference answer, else 0.0."""
    given = extract_answer(completion)
    if given is None or len(given) > 256:
        return 0.0
    return 1.0 if _normalise(given) == _normalise(answer) else 0.0


def total_reward(completion: str, task: Task) -> float:
    """The scalar GRPO trains on: correctness plus weighted format, in [0, 1.5]."""
    return correctness_reward(completion, task.answer) + FORMAT_WEIGHT * format_reward(
        completion
    )

"""Reward functions: the table every peer must agree on."""

from __future__ import annotations

import pytest

from trainer.rewards import (
    FORMAT_WEIGHT,
    correctness_reward,
    extract_answer,
    format_reward,
    total_reward,
)
from trainer.rollout import Task, TaskRef

TASK = Task(TaskRef("local_arith", 0, 0), "3+4=?", "7")


@pytest.mark.parametrize(
    ("completion", "fmt", "correct"),
    [
        ("<answer>7</answer>", 1.0, 1.0),
        ("  <think>3 plus 4</think>\n<answer> 7 </answer>\n", 1.0, 1.0),
        ("<answer>7.0</answer>", 1.0, 1.0),
        ("<answer>8</answer>", 1.0, 0.0),
        ("the answer is <answer>7</answer> ok", 0.5, 1.0),
        ("<answer>7", 0.25, 0.0),
        ("</answer>7<answer>", 0.25, 0.0),
        ("7", 0.0, 0.0),
        ("", 0.0, 0.0),
        ("<answer>1</answer><answer>7</answer>", 0.5, 1.0),
        ("<answer>1E+999999999</answer>", 1.0, 0.0),
    ],
)
def test_reward_table_scores_as_specified(completion: str, fmt: float, correct: float) -> None:
    """Each completion gets the documented format and correctness scores, and their weighted sum."""
    assert format_reward(completion) == fmt
    assert correctness_reward(completion, TASK.answer) == correct
    assert total_reward(completion, TASK) == correct + FORMAT_WEIGHT * fmt


def test_text_answer_compares_case_and_space_insensitively() -> None:
    """Non-numeric answers match regardless of case and repeated whitespace."""
    assert correctness_reward("<answer>Hello   World</answer>", "hello world") == 1.0
    assert correctness_reward("<answer>1,234</answer>", "1234") == 1.0


def test_huge_completion_is_cut_before_parsing() -> None:
    """An answer beyond the wire cap is never seen, so hostile text costs bounded work."""
    completion = "x" * 20_000 + "<answer>7</answer>"
    assert extract_answer(completion) is None
    assert total_reward(completion, TASK) == 0.0

"""TaskSource: deterministic tasks every peer can regenerate from a TaskRef, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.data import INDEX_SPACE, TaskSource
from trainer.rollout import TaskRef


def test_same_ref_resolves_to_same_task_across_instances() -> None:
    """Two independent sources (two peers) regenerate identical tasks from the same refs."""
    mine, theirs = TaskSource(seed=5), TaskSource(seed=9)
    for task in mine.sample(round=3, n=8, salt="peer-a"):
        assert theirs.resolve(task.ref) == task


def test_sample_is_deterministic_and_salted_per_peer() -> None:
    """The same round and salt give the same tasks; another peer's salt gives other ones."""
    source = TaskSource(seed=1)
    assert source.sample(7, 6, "a") == TaskSource(seed=1).sample(7, 6, "a")
    assert source.sample(7, 6, "a") != source.sample(7, 6, "b")
    assert source.sample(7, 6, "a") != source.sample(8, 6, "a")


def test_local_arith_answer_is_the_sum() -> None:
    """local_arith questions are single-digit additions whose answer is their sum."""
    for task in TaskSource().sample(0, 20):
        a, b = task.question.removesuffix("=?").split("+")
        assert task.answer == str(int(a) + int(b))


@pytest.mark.parametrize(
    "ref",
    [
        TaskRef("no_such_family", 0, 0),
        TaskRef("local_arith", 0, -1),
        TaskRef("local_arith", 0, INDEX_SPACE),
        TaskRef("local_arith", -3, 0),
        TaskRef("basic_arithmetic", 0, 0),  # a real family, but not configured here
    ],
)
def test_bad_or_unconfigured_ref_resolves_to_none(ref: TaskRef) -> None:
    """A ref outside this node's families or index space yields None, never an exception."""
    assert TaskSource().resolve(ref) is None


def test_reasoning_gym_family_works_offline_and_deterministically() -> None:
    """reasoning-gym tasks are generated locally and identically by two sources."""
    a = TaskSource(("basic_arithmetic",), seed=2)
    b = TaskSource(("basic_arithmetic", "local_arith"), seed=4)
    tasks = a.sample(0, 3, "p")
    assert len(tasks) == 3
    for task in tasks:
        assert task.question
        assert task.answer
        assert b.resolve(task.ref) == task


def test_unknown_family_is_rejected_at_construction() -> None:
    """A typo in the configured families fails at start, not mid-round."""
    with pytest.raises(ValueError, match="unknown task family"):
        TaskSource(("basic_arithmetc",))


def test_gsm8k_loads_local_jsonl(tmp_path: Path) -> None:
    """GSM8K rows come from a local JSONL file; the answer is the text after '####'."""
    path = tmp_path / "gsm8k.jsonl"
    rows = [{"question": f"Q{i}?", "answer": f"work\n#### {i},000"} for i in range(3)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    source = TaskSource(("gsm8k",), gsm8k_path=path)
    task = source.resolve(TaskRef("gsm8k", 0, 2))
    assert task is not None
    assert (task.question, task.answer) == ("Q2?", "2000")
    assert source.resolve(TaskRef("gsm8k", 0, 3)) is None
    assert all(t.ref.family == "gsm8k" for t in source.sample(1, 4))


def test_gsm8k_without_path_is_rejected() -> None:
    """Asking for GSM8K with no local copy is a configuration error, not a download."""
    with pytest.raises(ValueError, match="gsm8k_path"):
        TaskSource(("gsm8k",))

"""The observing wrapper around genrl's trainer only records: the wrapped train() gets
the same arguments, its result and its exception pass through, and each call leaves
one line naming the trees (agent, batch item) and their rewards."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.upstream import observe_launcher

pytestmark = [pytest.mark.upstream]


class StepError(RuntimeError):
    pass


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[Any, ...]]:
    """genrl's train() replaced by a recorder (raising for state.round == 9), then wrapped."""
    from genrl.trainer.grpo_trainer import GRPOLanguageTrainerModule

    seen: list[tuple[Any, ...]] = []

    def original(self: Any, state: Any, data_manager: Any, reward_manager: Any) -> str:
        seen.append((self, state, data_manager, reward_manager))
        if state.round == 9:
            raise StepError("step failed")
        return "result"

    monkeypatch.setattr(GRPOLanguageTrainerModule, "train", original)
    observe_launcher.observe(tmp_path / "train.jsonl")
    return seen


def _state(round: int) -> SimpleNamespace:
    return SimpleNamespace(round=round, trees={"QmPeer": {"b1": object(), "b2": object()}})


def test_train_call_passes_through_and_is_recorded(calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    from genrl.trainer.grpo_trainer import GRPOLanguageTrainerModule

    trainer, data, state = object(), object(), _state(3)
    rewards = SimpleNamespace(rewards=[{"QmPeer": {"b1": [[1.0, 0.0]], "b2": [[0.0, 0.0]]}}])
    assert GRPOLanguageTrainerModule.train(trainer, state, data, rewards) == "result"  # type: ignore[arg-type]
    assert calls == [(trainer, state, data, rewards)]
    (entry,) = observe_launcher.read(tmp_path / "train.jsonl")
    assert entry == {"round": 3, "trees": {"QmPeer": ["b1", "b2"]}, "ok": True,
                     "rewards": {"QmPeer": {"b1": [[1.0, 0.0]], "b2": [[0.0, 0.0]]}}}


def test_failing_train_raises_as_before_and_is_recorded_as_failed(
        calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    from genrl.trainer.grpo_trainer import GRPOLanguageTrainerModule

    with pytest.raises(StepError, match="step failed"):
        GRPOLanguageTrainerModule.train(object(), _state(9), object(), SimpleNamespace(rewards=[]))  # type: ignore[arg-type]
    (entry,) = observe_launcher.read(tmp_path / "train.jsonl")
    assert entry["ok"] is False
    assert entry["error"] == "StepError: step failed"
    assert entry["rewards"] == {}

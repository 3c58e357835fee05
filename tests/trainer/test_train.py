"""GRPOLearner on the tiny local model: generation, one GRPO step on local + peer
rollouts, dropping bad peer rollouts, checkpoints that survive tearing, and resume."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from structlog.testing import capture_logs

from trainer import hub_push, train
from trainer.data import TaskSource
from trainer.node import StepInterrupted
from trainer.rollout import Rollout, Task, TaskRef
from trainer.train import GRPOLearner, StepStats, TrainSettings


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny matmuls run fastest single-threaded on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _learner(tmp_path: Path, stop_requested: Callable[[], bool] = lambda: False,
             **overrides: object) -> GRPOLearner:
    fields: dict[str, object] = {"checkpoint_dir": tmp_path / "ckpt", "num_generations": 3,
                                 "max_new_tokens": 16, **overrides}
    settings = TrainSettings(**fields)  # type: ignore[arg-type]
    return GRPOLearner(settings, TaskSource(), stop_requested=stop_requested)


class StopAfter:
    """A stop request that arrives on the n-th look (1 = already there)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.looks = 0

    def __call__(self) -> bool:
        self.looks += 1
        return self.looks >= self.n


def _task(source: TaskSource, index: int = 0) -> Task:
    task = source.resolve(TaskRef("local_arith", 0, index))
    assert task is not None
    return task


def _graded(task: Task, peer: str = "me") -> Rollout:
    """A rollout whose completions score differently, so its advantages are non-zero."""
    comps = (f"<answer>{task.answer}</answer>", "<answer>x</answer>", "no idea")
    return Rollout(peer, 0, 0, task.ref, comps)


def _weights(learner: GRPOLearner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in learner.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_generate_returns_num_generations_per_task(tmp_path: Path) -> None:
    """One rollout per task, each with num_generations completions and the caller's labels."""
    learner = _learner(tmp_path)
    tasks = learner.tasks.sample(0, 2, "me")
    rollouts = learner.generate(tasks, round=4, stage=1, peer_id="me")
    assert [r.task for r in rollouts] == [t.ref for t in tasks]
    assert all(len(r.completions) == 3 for r in rollouts)
    assert {(r.peer_id, r.round, r.stage) for r in rollouts} == {("me", 4, 1)}


def test_generated_rollouts_train_with_their_token_ids(tmp_path: Path) -> None:
    """A generate -> train_on round trip counts the generated tokens and reports rewards."""
    learner = _learner(tmp_path)
    rollouts = learner.generate(learner.tasks.sample(0, 2, "me"), round=0, stage=0, peer_id="me")
    stats = learner.train_on(rollouts, [])
    assert isinstance(stats, StepStats)
    assert 0 < stats.completion_tokens <= 2 * 3 * 16
    assert stats.external_count == 0
    assert 0.0 <= stats.mean_reward <= 1.5
    assert [p for p, _ in stats.peer_rewards] == ["me"]  # per-peer means: the winner vote's basis
    assert stats.peer_rewards[0][1] == pytest.approx(stats.mean_reward)


def test_graded_rollouts_move_the_weights(tmp_path: Path) -> None:
    """Completions with different rewards give a non-zero loss and one optimizer step."""
    learner = _learner(tmp_path)
    before = _weights(learner)
    task = _task(learner.tasks)
    stats = learner.train_on([_graded(task)], [])
    assert not _same(before, _weights(learner))
    assert stats.local_reward == pytest.approx((1.5 + 0.5 + 0.0) / 3)
    assert stats.loss != 0.0


def test_equal_rewards_take_no_step(tmp_path: Path) -> None:
    """A group where every completion scores the same carries no signal: weights stay put."""
    learner = _learner(tmp_path)
    before = _weights(learner)
    task = _task(learner.tasks)
    stats = learner.train_on([Rollout("me", 0, 0, task.ref, ("a", "b", "c"))], [])
    assert _same(before, _weights(learner))
    assert stats.loss == 0.0


def test_external_garbage_is_dropped_with_a_log_line(tmp_path: Path) -> None:
    """Unresolvable, oversized and malformed peer rollouts are dropped; the good one is used."""
    learner = _learner(tmp_path)
    task = _task(learner.tasks, 1)
    garbage: list[object] = [
        Rollout("evil", 0, 0, TaskRef("no_such_family", 0, 0), ("<answer>1</answer>",)),
        Rollout("evil", 0, 0, TaskRef("local_arith", 0, -5), ("<answer>1</answer>",)),
        Rollout("evil", 0, 0, task.ref, ("9" * 500,)),  # far more tokens than max_new_tokens
        Rollout("evil", 0, 0, task.ref, ("x",) * 65),
        Rollout("evil", 0, 0, task.ref, ()),
        {"peer": "evil", "completions": ["<answer>1</answer>"]},
    ]
    with capture_logs() as logs:
        stats = learner.train_on([], [*garbage, _graded(task, "friend")])  # type: ignore[list-item]
    assert stats.external_count == 1
    events = [e["event"] for e in logs]
    assert events.count("rollout_task_unresolvable") == 2
    assert events.count("rollout_oversized") == 1
    assert events.count("external_rollout_dropped") == 6


def test_kl_penalty_uses_a_frozen_reference(tmp_path: Path) -> None:
    """With beta > 0 a reference copy is kept frozen while the policy moves."""
    learner = _learner(tmp_path, beta=0.1)
    assert learner.ref_model is not None
    ref_before = {k: v.clone() for k, v in learner.ref_model.state_dict().items()}
    learner.train_on([_graded(_task(learner.tasks))], [])
    assert _same(ref_before, learner.ref_model.state_dict())
    assert not _same(ref_before, _weights(learner))


def test_resume_restores_round_weights_optimizer_and_rng(tmp_path: Path) -> None:
    """A fresh learner resumes at the saved round/stage with identical weights and sampling."""
    learner = _learner(tmp_path)
    task = _task(learner.tasks)
    learner.train_on([_graded(task)], [])
    path = learner.save_checkpoint(round=5, stage=1)
    assert path.name == "round-000005"
    saved = _weights(learner)
    next_rollouts = learner.generate([task], round=6, stage=0, peer_id="me")

    resumed = _learner(tmp_path)
    assert not _same(saved, _weights(resumed))
    assert resumed.load_latest_checkpoint() == (5, 1)
    assert _same(saved, _weights(resumed))
    assert resumed.optimizer.state_dict()["state"].keys() == learner.optimizer.state_dict()["state"].keys()
    assert resumed.generate([task], round=6, stage=0, peer_id="me") == next_rollouts


def test_no_checkpoint_dir_means_fresh_start(tmp_path: Path) -> None:
    """With nothing saved yet, resume reports None and training starts from scratch."""
    assert _learner(tmp_path).load_latest_checkpoint() is None


@pytest.mark.parametrize(
    "tear",
    [
        lambda p: (p / "model.safetensors").write_bytes(b"torn"),
        lambda p: (p / "optimizer.pt").unlink(),
        lambda p: (p / "manifest.json").unlink(),
        lambda p: (p / "manifest.json").write_text("{not json", encoding="utf-8"),
    ],
    ids=["bad-hash", "missing-file", "no-manifest", "corrupt-manifest"],
)
def test_torn_newest_checkpoint_falls_back_to_previous(tmp_path: Path, tear: object) -> None:
    """A corrupt newest checkpoint is skipped with a log line and the previous one loaded."""
    learner = _learner(tmp_path)
    task = _task(learner.tasks)
    learner.save_checkpoint(1, 0)
    first = _weights(learner)
    learner.train_on([_graded(task)], [])
    newest = learner.save_checkpoint(2, 0)
    tear(newest)  # type: ignore[operator]

    resumed = _learner(tmp_path)
    with capture_logs() as logs:
        assert resumed.load_latest_checkpoint() == (1, 0)
    assert _same(first, _weights(resumed))
    assert any(e["event"] == "checkpoint_skipped" and e["path"] == str(newest) for e in logs)


def test_partial_tmp_dir_is_ignored_and_removed(tmp_path: Path) -> None:
    """A checkpoint interrupted before its rename (a .tmp dir) is never loaded, and is cleaned up."""
    learner = _learner(tmp_path)
    good = learner.save_checkpoint(3, 0)
    partial = tmp_path / "ckpt" / ".tmp-round-000004-1-deadbeef"
    shutil.copytree(good, partial)
    (partial / "manifest.json").unlink()
    with capture_logs() as logs:
        assert _learner(tmp_path).load_latest_checkpoint() == (3, 0)
    assert not partial.exists()
    assert any(e["event"] == "checkpoint_partial_removed" for e in logs)


def test_only_the_last_checkpoints_are_kept(tmp_path: Path) -> None:
    """Saving more than checkpoint_keep rounds prunes the oldest; resaving a round replaces it."""
    learner = _learner(tmp_path, checkpoint_keep=2)
    for rnd in (1, 2, 3, 3):
        learner.save_checkpoint(rnd, 0)
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["round-000002", "round-000003"]


def test_failed_push_is_retried_never_raised_and_hides_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub outage costs three attempts and a warning without the token, never an exception."""
    token = "hf_SECRETSECRET"
    calls: list[str] = []

    def refuse(model: object, tokenizer: object, repo: str, tok: str, message: str) -> None:
        calls.append(repo)
        raise ConnectionError(f"401 for token {tok}")

    monkeypatch.setattr(hub_push, "push_to_hub", refuse)
    learner = _learner(tmp_path, hf_token=token, hf_push_repo="me/tiny", hf_push_every=2)
    learner._push_wait = 0.0
    with capture_logs() as logs:
        learner.maybe_push(3)  # not a push round
        assert calls == []
        learner.maybe_push(4)
    assert calls == ["me/tiny"] * 3
    assert token not in repr(logs)
    assert token not in repr(learner.settings)
    assert any(e["event"] == "hf_push_failed" for e in logs)


def test_stop_during_generation_ends_it_early_and_keeps_the_rng(tmp_path: Path) -> None:
    """A stop request mid-`generate` ends it at the next token and raises
    StepInterrupted; the RNG stream is where the last completed step left it."""
    stop = StopAfter(4)
    learner = _learner(tmp_path, stop, max_new_tokens=400)
    rng_before = learner._rng["torch"].clone()
    with pytest.raises(StepInterrupted):
        learner.generate(learner.tasks.sample(0, 2, "me"), round=0, stage=0, peer_id="me")
    assert stop.looks < 20, f"generation ran on for {stop.looks} tokens after the stop"
    assert torch.equal(learner._rng["torch"], rng_before)


def test_stop_between_micro_batches_undoes_the_step(tmp_path: Path) -> None:
    """A stop request after the first micro-batch's backward: no optimizer step, no
    gradients left, weights and optimizer state exactly as before the step."""
    stop = StopAfter(2)
    learner = _learner(tmp_path, stop)
    before = _weights(learner)
    groups = [_graded(_task(learner.tasks, i)) for i in range(train.MICRO_BATCH // 3 + 2)]  # > 1 micro-batch
    with pytest.raises(StepInterrupted):
        learner.train_on(groups, [])
    assert stop.looks == 2, "the step was not interrupted between its micro-batches"
    assert _same(before, _weights(learner))
    assert not learner.optimizer.state, "the optimizer stepped"
    assert all(p.grad is None for p in learner.model.parameters())

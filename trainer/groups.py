"""What a rollout becomes before a GRPO step: a group of token ids with rewards
recomputed here and trl's group-scaled advantages, plus the checks a peer's rollout
must pass before any tokenising and the per-peer reward the winner vote uses.

Pure: no model, no tokenizer (the learner in `trainer.train` tokenises and scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from trainer.rollout import MAX_COMPLETION_CHARS, MAX_COMPLETIONS, Rollout

ADV_EPS = 1e-4  # trl's denominator guard

__all__ = ["ADV_EPS", "Group", "external_problem", "group_advantages", "per_peer"]


@dataclass
class Group:
    """One rollout ready to train on: token ids, recomputed rewards, advantages."""

    prompt_ids: list[int]
    completion_ids: list[list[int]]
    rewards: list[float]
    local: bool
    advantages: list[float] = field(default_factory=list)
    peer: str = ""


def group_advantages(rewards: Sequence[float]) -> list[float]:
    """trl's group-scaled advantages; a group of one carries no relative signal."""
    if len(rewards) < 2:
        return [0.0] * len(rewards)
    r = torch.tensor(rewards, dtype=torch.float64)
    return ((r - r.mean()) / (r.std() + ADV_EPS)).tolist()


def external_problem(r: object) -> str | None:
    """Why a peer's rollout cannot be used, or None; checks before any tokenising."""
    if not isinstance(r, Rollout):
        return "not a Rollout"
    comps: object = r.completions  # a peer's object: check, don't trust the annotation
    if not isinstance(comps, tuple) or not 1 <= len(comps) <= MAX_COMPLETIONS:
        return "bad completions count"
    if not all(isinstance(c, str) and len(c) <= MAX_COMPLETION_CHARS for c in comps):
        return "completion not text or oversized"
    return None


def per_peer(groups: Sequence[Group]) -> tuple[tuple[str, float], ...]:
    """Mean recomputed reward of each peer's rollouts this step: the basis of the winner vote."""
    sums: dict[str, list[float]] = {}
    for g in groups:
        sums.setdefault(g.peer, []).extend(g.rewards)
    return tuple((peer, sum(v) / len(v)) for peer, v in sorted(sums.items()) if v)

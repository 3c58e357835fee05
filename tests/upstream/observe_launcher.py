"""genrl's own launcher (`genrl.runner.hivemind_launcher`), run unchanged, with one
observation added: what each call of its trainer's `train()` received.

Whether a genrl node trained on a peer's rollouts is not visible from outside: which
peers' trees its data manager transplanted lives only in its game state, and its game
manager swallows a failing train step ("Error occurred during training, continuing...").
So before the launcher runs, `GRPOLanguageTrainerModule.train` is wrapped: each call
appends one JSON line to $GENRL_OBSERVE_FILE with the round, the (agent, batch item)
trees in the game state (every one of them is a row of the GRPO batch that `step`
builds from stage 0), their rewards, and whether the call returned. The wrapper calls
the original with the same arguments and lets its result and exceptions through; it
reads the state only through plain attributes (no genrl accessor, some of which create
entries). Run as: python -m tests.upstream.observe_launcher <the launcher's arguments>.
"""

from __future__ import annotations

import functools
import json
import os
import runpy
from pathlib import Path
from typing import Any

OBSERVE_ENV = "GENRL_OBSERVE_FILE"
LAUNCHER = "genrl.runner.hivemind_launcher"


def trees_in(state: Any) -> dict[str, list[str]]:
    """{agent: [batch item ids]} of the game state's trees."""
    return {str(agent): [str(b) for b in batches] for agent, batches in state.trees.items()}


def stage0_rewards(reward_manager: Any) -> dict[str, dict[str, Any]]:
    """{agent: {batch item: rewards per node}} computed for stage 0, if any yet."""
    rewards = reward_manager.rewards
    if not rewards:
        return {}
    return {str(a): {str(b): r for b, r in per.items()} for a, per in rewards[0].items()}


def observe(out: Path) -> None:
    """Wrap the trainer's train() to record each call in `out` (module docstring)."""
    from genrl.trainer.grpo_trainer import GRPOLanguageTrainerModule

    original = GRPOLanguageTrainerModule.train

    @functools.wraps(original)
    def train(self: Any, state: Any, data_manager: Any, reward_manager: Any) -> Any:
        entry: dict[str, Any] = {"round": state.round, "trees": trees_in(state),
                                 "rewards": stage0_rewards(reward_manager)}
        try:
            result = original(self, state, data_manager, reward_manager)
        except BaseException as exc:
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
            raise
        else:
            entry["ok"] = True
            return result
        finally:
            with out.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")

    GRPOLanguageTrainerModule.train = train  # type: ignore[method-assign]


def read(path: Path) -> list[dict[str, Any]]:
    """The recorded train() calls (a torn last line, mid-write, is skipped)."""
    if not path.exists():
        return []
    calls = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            calls.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return calls


def main() -> None:
    observe(Path(os.environ[OBSERVE_ENV]))
    runpy.run_module(LAUNCHER, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

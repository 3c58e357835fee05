"""Publishing the model to the Hugging Face hub: a few jittered retries, never an
exception (a hub outage must not end training), and never the token in a log line.
The learner (`trainer.train`) decides which rounds push.
"""

from __future__ import annotations

from typing import Any

import structlog

log = structlog.get_logger(__name__)

__all__ = ["push"]


def push(model: Any, tokenizer: Any, repo: str, token: str, round: int, *, max_wait: float = 10.0) -> None:
    """Push model and tokenizer to `repo` (private), up to 3 attempts; log the outcome."""
    from tenacity import Retrying, stop_after_attempt, wait_exponential

    message = f"rl-swarm: round {round}"
    try:
        for attempt in Retrying(stop=stop_after_attempt(3), wait=wait_exponential(max=max_wait), reraise=True):
            with attempt:
                push_to_hub(model, tokenizer, repo, token, message)
    except Exception as exc:  # noqa: BLE001 - a failed push must never end training
        detail = str(exc).replace(token, "***")[:200]
        log.warning("hf_push_failed", repo=repo, round=round, error=type(exc).__name__, detail=detail)
    else:
        log.info("hf_pushed", repo=repo, round=round)


def push_to_hub(model: Any, tokenizer: Any, repo: str, token: str, message: str) -> None:
    """One attempt (the seam tests replace)."""
    model.push_to_hub(repo, token=token, commit_message=message, private=True)
    tokenizer.push_to_hub(repo, token=token, commit_message=message)

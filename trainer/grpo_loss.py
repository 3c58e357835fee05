"""The GRPO loss on per-token log-probs, in trl's default ("dapo") formulation.

Why a module of its own: "our step is trl's formulation" is a claim a test must be able
to check term by term. Kept apart from the model forward, the same function is fed the
log-probs of our forward in training and trl's in `tests/trainer/test_loss_equivalence.py`,
so the loss algebra is compared exactly and the forward numerics separately.
"""

from __future__ import annotations

import torch


def grpo_token_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    normaliser: float,
    epsilon_low: float,
    epsilon_high: float,
    beta: float,
    bias_corrected_kl: bool = True,
) -> torch.Tensor:
    """Token-level clipped surrogate plus the k3 KL, summed over completion tokens and
    divided by `normaliser` (the completion tokens of the whole generation batch).

    Shapes: `logps`, `old_logps`, `ref_logps`, `mask` are (B, T); `advantages` is (B,).
    With one optimizer step per generation batch (trl's `num_iterations=1`) the caller
    passes `old_logps = logps.detach()`, so the ratio is 1 in value but carries the
    policy gradient. `bias_corrected_kl` (trl's `use_bias_correction_kl`, on by default
    since trl 1.x) multiplies the KL by that ratio, which leaves the loss value alone at
    one iteration but changes the KL's gradient into the unbiased reverse-KL one.
    """
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, clipped * adv)
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("beta > 0 needs the reference model's log-probs")
        kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
        if bias_corrected_kl:
            kl = kl * ratio
        per_token = per_token + beta * kl
    return (per_token * mask).sum() / max(normaliser, 1.0)

"""GRPO on local + shared rollouts (SAPO-style), with atomic checkpoints and resume.

Why not trl's GRPOTrainer itself (trl 1.16): it owns the loop. `train()` samples
prompts from its dataset, generates (or calls `rollout_func` for those same prompts),
scores and steps, with optimizer, scheduler and checkpoints held by
`transformers.Trainer`. A swarm node instead gets, once per round and from the
network, completions for tasks that were never in its dataset (peers' TaskRefs),
with group sizes it does not choose, and must take exactly one optimizer step then
hand control back to the round loop. Driving `Trainer.train()` once per round would
rebuild optimizer and scheduler state each time; driving its private methods would
break with the next trl release. So the step is implemented here in trl's own
formulation, read from the installed version, and trl's utilities are used for the
numerics:

- advantages: per task group (r - mean) / (std + 1e-4), trl's `scale_rewards="group"`;
- loss: trl's default `loss_type` ("dapo"): token-level clipped surrogate
  -min(ratio*A, clip(ratio, 1-eps, 1+eps_high)*A) summed over completion tokens and
  divided by the completion tokens of the whole batch; optional k3 KL with `beta`,
  multiplied by the importance ratio as trl's default `use_bias_correction_kl` does
  (trainer/grpo_loss.py; tests/trainer/test_loss_equivalence.py holds it to trl's
  `compute_loss`);
- eps / eps_high / temperature: `GRPOConfig`'s defaults; `trl.trainer.utils.pad`
  and `selective_log_softmax` build the batch and the per-token log-probs.

With one step per generation batch (trl's `num_iterations=1`) the old log-probs equal
the current ones detached, as in trl. Sequences whose advantage is exactly 0 (a group
where every completion scored the same) add nothing to the loss, so their forward
and backward are skipped when `beta == 0`; they still count in the normaliser, and a
step with nothing left to learn from skips the optimizer too. `skip_zero_advantage =
False` turns that off (every sequence through forward/backward, one optimizer step per
call, as trl does): benchmarks compare equal work that way and time the skip apart.

Every reward is recomputed here from the TaskRef (trainer.rollout, W22): a peer's
text is the only thing trusted, and bad or oversized external rollouts are dropped
with a log line. `trainer.trl_baseline` builds the unmodified trl GRPOTrainer with the same
settings for the GPU benchmark's baseline; `trainer.checkpoint` writes and restores
the checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import structlog
import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from trl.trainer.utils import pad, selective_log_softmax

from trainer import checkpoint, hub_push
from trainer.groups import Group, external_problem, group_advantages, per_peer
from trainer.grpo_loss import grpo_token_loss
from trainer.model import load_model_and_tokenizer
from trainer.node import StepInterrupted
from trainer.rewards import total_reward
from trainer.rollout import MAX_COMPLETION_CHARS, Rollout, Task

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from trainer.data import TaskSource

log = structlog.get_logger(__name__)

SYSTEM_PROMPT = "Reply as <answer>N</answer>."
MAX_PROMPT_TOKENS = 512
MICRO_BATCH = 32  # sequences per forward/backward; bounds memory when many peers share
_ID_CACHE_LIMIT = 4096


def _grpo_default(name: str) -> Any:
    """A default of the installed trl's GRPOConfig, so our step tracks trl's."""
    from trl import GRPOConfig  # type: ignore[attr-defined]

    return GRPOConfig.__dataclass_fields__[name].default


@dataclass(frozen=True)
class TrainSettings:
    model: str = "tiny"
    device: str = "cpu"
    dtype: str = "fp32"  # pass "bf16" on CUDA
    num_generations: int = 4
    max_new_tokens: int = 32
    prompts_per_round: int = 4
    learning_rate: float = 5e-4  # for the tiny model; ~1e-6 for real checkpoints
    max_grad_norm: float = 1.0
    beta: float = 0.0
    seed: int = 0
    checkpoint_dir: Path = field(default=Path("checkpoints"))
    checkpoint_keep: int = 3
    hf_token: str | None = field(default=None, repr=False)  # never in a repr or a log
    hf_push_repo: str | None = None
    hf_push_every: int = 0
    skip_zero_advantage: bool = True  # see the module docstring
    static_kv_cache: bool = True  # CUDA only: static KV cache, which HF compiles for decode


@dataclass(frozen=True)
class StepStats:
    loss: float
    mean_reward: float
    local_reward: float
    external_count: int
    step_seconds: float
    completion_tokens: int
    peer_rewards: tuple[tuple[str, float], ...] = ()  # (peer id, mean reward recomputed here)
    groups: int = 0
    zero_advantage_groups: int = 0  # every completion scored the same: no signal




def _short(text: str) -> str:
    return text[:64]


class GRPOLearner:
    """Generates this node's rollouts and takes one GRPO step per round on them and
    on peers' rollouts; owns the model, optimizer, RNG and their checkpoints."""

    def __init__(
        self, settings: TrainSettings, tasks: TaskSource, *, stop_requested: Callable[[], bool] = lambda: False
    ) -> None:
        self.settings = settings
        self.tasks = tasks
        # Polled inside generation (per token) and between micro-batches, so a stop
        # never waits for a whole step (see trainer/node.py on StepInterrupted).
        self._stop_requested = stop_requested
        self.model, self.tokenizer = load_model_and_tokenizer(
            settings.model, device=settings.device, dtype=settings.dtype,
            hf_token=settings.hf_token, seed=settings.seed,
        )
        self.tokenizer.truncation_side = "left"
        self.device = torch.device(settings.device)
        self.temperature = float(_grpo_default("temperature"))
        self.epsilon_low = float(_grpo_default("epsilon"))
        self.epsilon_high = float(_grpo_default("epsilon_high") or self.epsilon_low)
        self.bias_corrected_kl = bool(_grpo_default("use_bias_correction_kl"))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=settings.learning_rate, weight_decay=0.0
        )
        self.ref_model = self._frozen_copy() if settings.beta else None
        self._eos_id = int(self.tokenizer.eos_token_id)
        self._pad_id = int(self.tokenizer.pad_token_id)
        self._cuda = self.device.type == "cuda"
        self._static_cache = self._cuda and settings.static_kv_cache
        self._rng = self._seeded_rng(settings.seed)
        self._ids: dict[Rollout, tuple[list[int], list[list[int]]]] = {}
        self.model.train()

    @property
    def _model_any(self) -> Any:
        return self.model  # transformers' stubs type generate() too loosely to call cleanly

    # ---- generation ---------------------------------------------------------

    def prompt_text(self, task: Task) -> str:
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": task.question},
        ]
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def _prompt_ids(self, task: Task) -> list[int]:
        ids: list[int] = self.tokenizer(
            self.prompt_text(task), add_special_tokens=False, truncation=True,
            max_length=MAX_PROMPT_TOKENS,
        )["input_ids"]
        return ids

    def generate(
        self, tasks: Sequence[Task], *, round: int, stage: int, peer_id: str
    ) -> list[Rollout]:
        """All prompts x num_generations in one sampled `generate` call with KV cache."""
        if not tasks:
            return []
        g = self.settings.num_generations
        prompts = [self._prompt_ids(t) for t in tasks]
        input_ids = pad([torch.tensor(p) for p in prompts], self._pad_id, "left", 64 if self._cuda else None)
        attention = pad([torch.ones(len(p), dtype=torch.long) for p in prompts], 0, "left", 64 if self._cuda else None)
        input_ids = input_ids.repeat_interleave(g, 0).to(self.device, non_blocking=True)
        attention = attention.repeat_interleave(g, 0).to(self.device, non_blocking=True)
        with self._own_rng(), torch.no_grad():
            self.model.eval()  # type: ignore[no-untyped-call]
            try:
                out = self._sample(input_ids, attention)
            finally:
                self.model.train()
            if self._stop_requested():
                # Raised inside _own_rng: the RNG stream stays where the last step left it.
                raise StepInterrupted("generation")
        completions = self._trim_at_eos(out[:, input_ids.shape[1]:].cpu().tolist())
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        rollouts = []
        for i, task in enumerate(tasks):
            ids = completions[i * g:(i + 1) * g]
            chunk = tuple(t[:MAX_COMPLETION_CHARS] for t in texts[i * g:(i + 1) * g])
            rollout = Rollout(peer_id, round, stage, task.ref, chunk)
            if len(self._ids) >= _ID_CACHE_LIMIT:
                self._ids.clear()
            self._ids[rollout] = (prompts[i], ids)
            rollouts.append(rollout)
        return rollouts

    def _sample(self, input_ids: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = {
            "do_sample": True, "temperature": self.temperature, "top_p": 1.0, "top_k": 0,
            "max_new_tokens": self.settings.max_new_tokens, "use_cache": True,
            "pad_token_id": self._pad_id, "eos_token_id": self._eos_id,
            "stopping_criteria": StoppingCriteriaList([_StopWhen(self._stop_requested)]),
        }
        if self._static_cache:
            try:
                out = cast("torch.Tensor", self._model_any.generate(
                    input_ids=input_ids, attention_mask=attention,
                    cache_implementation="static", **kwargs,
                ))
            except RuntimeError as exc:  # compile/static-cache trouble: keep training
                log.warning("static_cache_disabled", error=type(exc).__name__)
                self._static_cache = False
            else:
                return out
        return cast("torch.Tensor", self._model_any.generate(input_ids=input_ids, attention_mask=attention, **kwargs))

    def _trim_at_eos(self, rows: list[list[int]]) -> list[list[int]]:
        """Keep tokens up to and including the first EOS (trl's completion mask)."""
        trimmed = []
        for row in rows:
            end = row.index(self._eos_id) + 1 if self._eos_id in row else len(row)
            trimmed.append(row[:end])
        return trimmed

    # ---- training -----------------------------------------------------------

    def train_on(self, local: Sequence[Rollout], external: Sequence[Rollout]) -> StepStats:
        """One GRPO optimizer step on local + external rollouts, rewards recomputed here."""
        start = time.perf_counter()
        groups = [g for r in local if (g := self._group(r, local=True)) is not None]
        for r in external:
            reason = external_problem(r)
            if reason is None:
                group = self._group(r, local=False)
                if group is not None:
                    groups.append(group)
                    continue
                reason = "dropped"
            log.warning("external_rollout_dropped", peer=_short(str(getattr(r, "peer_id", "?"))), reason=reason)
        self._ids.clear()
        for group in groups:
            group.advantages = group_advantages(group.rewards)
        loss, tokens = self._step(groups)
        all_rewards = [x for g in groups for x in g.rewards]
        local_rewards = [x for g in groups if g.local for x in g.rewards]
        return StepStats(
            loss=loss,
            mean_reward=sum(all_rewards) / len(all_rewards) if all_rewards else 0.0,
            local_reward=sum(local_rewards) / len(local_rewards) if local_rewards else 0.0,
            external_count=sum(1 for g in groups if not g.local),
            step_seconds=time.perf_counter() - start,
            completion_tokens=tokens,
            peer_rewards=per_peer(groups),
            groups=len(groups),
            zero_advantage_groups=sum(1 for g in groups if not any(g.advantages)),
        )


    def _group(self, r: Rollout, *, local: bool) -> Group | None:
        task = self.tasks.resolve(r.task)
        if task is None:
            log.warning("rollout_task_unresolvable", peer=_short(r.peer_id), family=_short(r.task.family),
                        seed=r.task.seed, index=r.task.index)
            return None
        cached = self._ids.get(r) if local else None
        if cached is not None:
            prompt_ids, completion_ids = cached
        else:
            prompt_ids = self._prompt_ids(task)
            completion_ids = self.tokenizer(list(r.completions), add_special_tokens=False)["input_ids"]
            if any(len(c) > self.settings.max_new_tokens for c in completion_ids):
                log.warning("rollout_oversized", peer=_short(r.peer_id),
                            max_new_tokens=self.settings.max_new_tokens)
                return None
        rewards = [total_reward(c, task) for c in r.completions]
        return Group(prompt_ids, completion_ids, rewards, local, peer=r.peer_id)

    def _step(self, groups: Sequence[Group]) -> tuple[float, int]:
        """Loss over all sequences, one clipped optimizer step; returns (loss, tokens)."""
        seqs = [(g.prompt_ids, c, a) for g in groups for c, a in zip(g.completion_ids, g.advantages, strict=True)]
        tokens = sum(len(c) for _, c, _ in seqs)
        if self.ref_model is None and self.settings.skip_zero_advantage:
            seqs = [s for s in seqs if s[2] != 0.0 and s[1]]
        if not seqs:
            return 0.0, tokens  # nothing to learn from: no step, so Adam's momentum stays put
        total = torch.zeros((), device=self.device)
        for i in range(0, len(seqs), MICRO_BATCH):
            if self._stop_requested():
                # No optimizer step yet: dropping the gradients undoes the step whole.
                self.optimizer.zero_grad(set_to_none=True)
                raise StepInterrupted("training step")
            loss = self._chunk_loss(seqs[i:i + MICRO_BATCH], max(tokens, 1))
            loss.backward()  # type: ignore[no-untyped-call]
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(total.item()), tokens

    def _chunk_loss(self, seqs: Sequence[tuple[list[int], list[int], float]], normaliser: int) -> torch.Tensor:
        prompts = pad([torch.tensor(p) for p, _, _ in seqs], self._pad_id, "left")
        prompt_mask = pad([torch.ones(len(p), dtype=torch.long) for p, _, _ in seqs], 0, "left")
        comps = pad([torch.tensor(c or [self._pad_id]) for _, c, _ in seqs], self._pad_id, "right")
        comp_mask = pad([torch.ones(len(c), dtype=torch.long) for _, c, _ in seqs], 0, "right")
        if comp_mask.shape[1] < comps.shape[1]:
            comp_mask = torch.nn.functional.pad(comp_mask, (0, comps.shape[1] - comp_mask.shape[1]))
        adv = torch.tensor([a for _, _, a in seqs], dtype=torch.float32)
        prompts, prompt_mask, comps, comp_mask, adv = (
            t.to(self.device, non_blocking=True) for t in (prompts, prompt_mask, comps, comp_mask, adv)
        )
        logps = self._logps(self.model, prompts, prompt_mask, comps, comp_mask)
        ref = None
        if self.ref_model is not None:
            with torch.no_grad():
                ref = self._logps(self.ref_model, prompts, prompt_mask, comps, comp_mask)
        return grpo_token_loss(
            logps, logps.detach(), ref, adv, comp_mask, normaliser=normaliser,
            epsilon_low=self.epsilon_low, epsilon_high=self.epsilon_high,
            beta=self.settings.beta if self.ref_model is not None else 0.0,
            bias_corrected_kl=self.bias_corrected_kl,
        )

    def _logps(self, model: Any, prompts: torch.Tensor, prompt_mask: torch.Tensor,
               comps: torch.Tensor, comp_mask: torch.Tensor) -> torch.Tensor:
        input_ids = torch.cat([prompts, comps], dim=1)
        attention = torch.cat([prompt_mask, comp_mask], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # as generate() saw left padding
        n = comps.shape[1]
        logits = model(input_ids=input_ids, attention_mask=attention, position_ids=positions,
                       logits_to_keep=n + 1, use_cache=False).logits
        logps: torch.Tensor = selective_log_softmax(logits[:, :-1, :] / self.temperature, comps)
        return logps.float()

    # ---- RNG ----------------------------------------------------------------

    def _seeded_rng(self, seed: int) -> dict[str, Any]:
        with self._forked():
            torch.manual_seed(seed)
            return self._capture_rng()

    def _capture_rng(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self._cuda:
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    @contextlib.contextmanager
    def _forked(self) -> Iterator[None]:
        devices = [self.device] if self._cuda else []
        with torch.random.fork_rng(devices=devices):
            yield

    @contextlib.contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Sample from this learner's RNG stream, so in-process peers stay independent."""
        with self._forked():
            torch.set_rng_state(self._rng["torch"])
            if self._cuda and "cuda" in self._rng:
                torch.cuda.set_rng_state(self._rng["cuda"], self.device)
            yield
            self._rng = self._capture_rng()

    def _frozen_copy(self) -> Any:
        ref = copy.deepcopy(self.model).eval()  # type: ignore[no-untyped-call]
        for p in ref.parameters():
            p.requires_grad_(False)
        return ref

    # ---- checkpoints --------------------------------------------------------

    def save_checkpoint(self, round: int, stage: int) -> Path:
        """Save model, optimizer and RNG as `round` (see trainer.checkpoint); keep the last N."""
        s = self.settings
        return checkpoint.save(
            s.checkpoint_dir, round=round, stage=stage, model_name=s.model, model=self.model,
            optimizer=self.optimizer, rng=self._rng, keep=s.checkpoint_keep,
        )

    def load_latest_checkpoint(self) -> tuple[int, int] | None:
        """Restore the newest checkpoint whose manifest verifies; skip torn ones."""
        restored = checkpoint.load_latest(
            self.settings.checkpoint_dir, model_name=self.settings.model, model=self.model,
            optimizer=self.optimizer, device=self.device,
        )
        if restored is None:
            return None
        round, stage, self._rng = restored
        return round, stage

    # ---- Hugging Face push --------------------------------------------------

    def maybe_push(self, round: int) -> None:
        """Push every `hf_push_every` rounds when a token and repo are set; never raise."""
        s = self.settings
        if not (s.hf_token and s.hf_push_repo and s.hf_push_every > 0) or round % s.hf_push_every:
            return
        hub_push.push(self.model, self.tokenizer, s.hf_push_repo, s.hf_token, round, max_wait=self._push_wait)

    _push_wait: float = 10.0


class _StopWhen(StoppingCriteria):
    """Ends `generate` at the next token once `pred()` says so (a stop request)."""

    def __init__(self, pred: Callable[[], bool]) -> None:
        self._pred = pred

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.BoolTensor:
        done = torch.full((input_ids.shape[0],), self._pred(), dtype=torch.bool, device=input_ids.device)
        return cast("torch.BoolTensor", done)

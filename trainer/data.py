"""Deterministic task generators: the same (family, seed, index) is the same Task on
every peer, so a rollout can travel as a TaskRef and be re-scored by its receiver.

Families:
- "local_arith": single-digit additions, offline and easy, so a tiny random model
  shows a measurable reward change within a few rounds (tests, demo, benchmarks).
- any reasoning-gym dataset name ("basic_arithmetic", ...): generated locally and
  lazily by `reasoning_gym.create_dataset(name, seed=, size=)`; item i depends only
  on (seed, i), so no download and no shared state.
- "gsm8k": a local JSONL or parquet copy (`question`, `answer` with the final answer
  after "####"), enabled by `gsm8k_path`; the ref's seed is ignored, the index is the
  row number, so peers need the same file.

Only configured families are resolved: a peer cannot make this node build arbitrary
generators, and a ref outside the index space resolves to None instead of raising.
"""

from __future__ import annotations

import json
import random
import re
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from trainer.rollout import Task, TaskRef

if TYPE_CHECKING:
    from collections.abc import Sequence

log = structlog.get_logger(__name__)

LOCAL_ARITH = "local_arith"
GSM8K = "gsm8k"
INDEX_SPACE = 1_000_000  # virtual size of generated families: indexes are 0..INDEX_SPACE-1
MAX_SEED = 2**32
_FIND_TRIES = 5000  # local_arith indexes searched for a question (100 distinct ones)
_LOCAL_ARITH_Q = re.compile(r"\d\+\d=\?")
_DATASET_CACHE = 16  # reasoning-gym datasets kept per source (one per peer seed seen)


def local_arith_task(seed: int, index: int) -> Task:
    """Single-digit addition drawn from a PRNG keyed by (seed, index) only."""
    rng = random.Random(f"local_arith:{seed}:{index}")
    a, b = rng.randrange(10), rng.randrange(10)
    return Task(TaskRef(LOCAL_ARITH, seed, index), f"{a}+{b}=?", str(a + b))


def gsm8k_final_answer(solution: str) -> str:
    """GSM8K solutions end with '#### <answer>'; the text after the marker is the answer."""
    return solution.rsplit("####", 1)[-1].strip().replace(",", "")


def load_gsm8k(path: Path) -> list[tuple[str, str]]:
    """(question, final answer) rows from a JSONL or parquet copy of GSM8K."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    else:
        with path.open(encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    return [(str(r["question"]), gsm8k_final_answer(str(r["answer"]))) for r in rows]


def _known_reasoning_gym(name: str) -> bool:
    from reasoning_gym.factory import DATASETS

    return name in DATASETS


class TaskSource:
    """Samples this node's tasks per round and regenerates peers' tasks from refs."""

    def __init__(
        self,
        families: Sequence[str] = (LOCAL_ARITH,),
        *,
        gsm8k_path: Path | None = None,
        seed: int = 0,
    ) -> None:
        if not families:
            raise ValueError("TaskSource needs at least one task family")
        if not 0 <= seed < MAX_SEED:
            raise ValueError(f"seed must be in [0, 2**32), got {seed}")
        self.families = tuple(families)
        self.seed = seed
        self._gsm8k: list[tuple[str, str]] = []
        for family in self.families:
            if family == GSM8K:
                if gsm8k_path is None:
                    raise ValueError("family 'gsm8k' needs gsm8k_path (a local JSONL/parquet copy)")
                self._gsm8k = load_gsm8k(gsm8k_path)
                if not self._gsm8k:
                    raise ValueError(f"no GSM8K rows in {gsm8k_path}")
            elif family != LOCAL_ARITH and not _known_reasoning_gym(family):
                raise ValueError(f"unknown task family {family!r}")
        self._datasets: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._found: dict[str, TaskRef | None] = {}
        self._gsm8k_rows: dict[str, int] = {}

    def sample(self, round: int, n: int, salt: str = "") -> list[Task]:
        """n tasks for `round`; `salt` (the peer id) gives each peer different ones."""
        rng = random.Random(f"{self.seed}:{round}:{salt}")
        tasks: list[Task] = []
        for _ in range(n):
            family = self.families[rng.randrange(len(self.families))]
            size = len(self._gsm8k) if family == GSM8K else INDEX_SPACE
            task = self.resolve(TaskRef(family, self.seed, rng.randrange(size)))
            if task is not None:
                tasks.append(task)
        return tasks

    def resolve(self, ref: TaskRef) -> Task | None:
        """The task a ref names, regenerated here; None if unknown or out of range."""
        if ref.family not in self.families or not 0 <= ref.seed < MAX_SEED:
            return None
        if ref.family == GSM8K:
            if not 0 <= ref.index < len(self._gsm8k):
                return None
            question, answer = self._gsm8k[ref.index]
            return Task(ref, question, answer)
        if not 0 <= ref.index < INDEX_SPACE:
            return None
        if ref.family == LOCAL_ARITH:
            return local_arith_task(ref.seed, ref.index)
        return self._reasoning_gym_task(ref)

    def find_question(self, question: str) -> TaskRef | None:
        """A ref of ours whose task asks exactly `question`, or None (a peer that sends
        the question text, as genrl does, gets it scored against OUR answer). Bounded:
        local_arith searches at most `_FIND_TRIES` indexes of our seed; gsm8k looks the
        row up; reasoning-gym questions are not searchable and give None."""
        if question in self._found:
            return self._found[question]
        ref = None
        if LOCAL_ARITH in self.families and _LOCAL_ARITH_Q.fullmatch(question):
            ref = next((t.ref for i in range(_FIND_TRIES)
                        if (t := local_arith_task(self.seed, i)).question == question), None)
        elif GSM8K in self.families:
            if not self._gsm8k_rows:
                self._gsm8k_rows = {q: i for i, (q, _) in reversed(list(enumerate(self._gsm8k)))}
            row = self._gsm8k_rows.get(question)
            ref = None if row is None else TaskRef(GSM8K, self.seed, row)
        if len(self._found) < 4096:
            self._found[question] = ref
        return ref

    def _reasoning_gym_task(self, ref: TaskRef) -> Task | None:
        try:
            entry = self._dataset(ref.family, ref.seed)[ref.index]
        except (ValueError, IndexError, KeyError, TypeError, ArithmeticError) as exc:
            # A generator bug on one index must not end the round; the rollout is dropped.
            log.warning("task_generation_failed", family=ref.family, seed=ref.seed,
                        index=ref.index, error=type(exc).__name__)
            return None
        return Task(ref, str(entry["question"]), str(entry["answer"]))

    def _dataset(self, family: str, seed: int) -> Any:
        key = (family, seed)
        if key in self._datasets:
            self._datasets.move_to_end(key)
            return self._datasets[key]
        import reasoning_gym

        dataset = reasoning_gym.create_dataset(family, seed=seed, size=INDEX_SPACE)
        self._datasets[key] = dataset
        if len(self._datasets) > _DATASET_CACHE:
            self._datasets.popitem(last=False)
        return dataset

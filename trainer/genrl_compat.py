"""The "genrl-0.3" compatibility lane: share a DHT with unmodified gensyn-genrl 0.3.0 nodes.

Opt-in (`compat = "genrl-0.3"` in trainer.toml). Learned from genrl 0.3.0's own source
(`communication/hivemind/hivemind_backend.py`, `serialization/msgpack_utils.py`,
`state/game_state.py`): a genrl node's gather stores ONE record per round under
- key `str(round)`: a bare number, no namespace (genrl's per-process round counter; the
  chain round in rl-swarm),
- subkey `str(peer_id)`: the plain base58 peer id, unsigned,
- value: msgpack (`use_bin_type=True`) of `{batch item id: [Payload, ...]}`, where a
  Payload is the map `{"__type__": "Payload", "world_state": {"__type__": "WorldState",
  "environment_states": {...}, "opponent_states": None, "personal_states": None},
  "actions": [completion, ...], "metadata": None}` and the batch item id is the md5 hex
  of the question,
- expiry: now + 600 s (genrl's `timeout`).

What a genrl node does with a peer's Payload is its data manager's choice, and each
reads its own keys from `environment_states`: every one reads "question"; the text
managers read "answer"; the CodeZero manager (`examples.code_generation`, the one whose
transplant of peers' trees works on 0.3.0's msgpack payloads) trains on a peer's tree
and then reads "test" and `metadata["dataset"]`, where a missing key would fail its
whole train step. So ours carry all four: our answer, no unit tests (""), and our task
family as the dataset.

Never signed: hivemind's signature validator appends `[signature:…]` to a value it
signs, and genrl's reader, which runs no validator, then fails inside hivemind's
callback and its `DHT.get` never returns (measured: the upstream node hangs forever in
its gather). So this lane stores through `PlainBoard.put_plain` only, and
`SwarmDht.put` (the signing path) refuses bare numeric keys.

What is read is a peer's bytes: the size is checked before parsing, msgpack runs with
limits on every length and no object hook, and each item must have exactly the shape
above. The answer a genrl peer sends is never used: a question is accepted only when
this node's own task source knows it (`TaskIndex.find_question`), and the reward is
recomputed from that task, as for our own peers' rollouts (W22).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from trainer.exchange import Board, BoardExchange
from trainer.rollout import (
    MAX_COMPLETION_CHARS,
    MAX_COMPLETIONS,
    Rollout,
    RolloutRejected,
    Task,
    TaskRef,
)

# A record's items: the task answered and our completions for it.
Item = tuple[Task, Sequence[str]]

COMPAT = "genrl-0.3"
TTL = 600.0  # genrl's default `timeout`, used as the record's expiry
MAX_RECORD_BYTES = 256 * 1024
MAX_ITEMS = 64  # batch items per record
MAX_PAYLOADS = 8  # payloads (game-tree nodes) per batch item
MAX_QUESTION_CHARS = 4096
# A libp2p peer id in base58 (genrl's subkey); owner-marked subkeys are never genrl's.
_PEER_ID = re.compile(r"[1-9A-HJ-NP-Za-km-z]{32,64}")


def round_key(round: int) -> str:
    """genrl's key for a round: the bare number."""
    return str(round)


def is_bare_round_key(key: str) -> bool:
    """Keys a genrl node reads; a signed record under one of them hangs its reader."""
    return key.isascii() and key.isdigit()


@dataclass(frozen=True, slots=True)
class GenrlItem:
    """One batch item of a genrl record: a question and the completions for it."""

    question: str
    completions: tuple[str, ...]


class PlainBoard(Board, Protocol):
    """A board that also stores unsigned records under plain subkeys (what genrl reads
    and writes); SwarmDht and LocalBoard are both."""

    def put_plain(self, key: str, subkey: str, value: bytes, ttl: float) -> bool: ...

    def get_plain(self, key: str, timeout: float) -> dict[str, bytes]: ...


class TaskIndex(Protocol):
    def resolve(self, ref: TaskRef) -> Task | None: ...

    def find_question(self, question: str) -> TaskRef | None: ...


def encode_record(items: Sequence[Item], max_bytes: int = MAX_RECORD_BYTES) -> tuple[bytes, int]:
    """genrl's record for (task, completions) items, dropping items from the end until
    it fits in `max_bytes`; returns (record, items kept)."""
    kept = list(items)
    while True:
        record = {batch_item_id(task.question): [_payload(task, comps)] for task, comps in kept}
        raw: bytes = msgpack.packb(record, use_bin_type=True)
        if len(raw) <= max_bytes or not kept:
            return raw, len(kept)
        kept.pop()


def batch_item_id(question: str) -> str:
    """genrl's batch item id (`generate_md5_hash_id`); its transplant asserts it."""
    return hashlib.md5(question.encode("utf-8"), usedforsecurity=False).hexdigest()


def environment_states(task: Task) -> dict[str, Any]:
    """What every genrl data manager reads from a peer's world state (module docstring)."""
    return {"question": task.question, "answer": task.answer, "test": "",
            "metadata": {"dataset": task.ref.family}}


def _payload(task: Task, completions: Sequence[str]) -> dict[str, Any]:
    world = {"__type__": "WorldState", "environment_states": environment_states(task),
             "opponent_states": None, "personal_states": None}
    return {"__type__": "Payload", "world_state": world, "actions": list(completions), "metadata": None}


def decode_record(subkey: str, raw: object, max_bytes: int = MAX_RECORD_BYTES) -> list[GenrlItem]:
    """Validate one genrl peer's record; raise `RolloutRejected` with the reason."""
    if not _PEER_ID.fullmatch(subkey):
        raise RolloutRejected("subkey is not a plain peer id")
    if not isinstance(raw, bytes):
        raise RolloutRejected("record is not bytes")
    if len(raw) > max_bytes:
        raise RolloutRejected(f"record of {len(raw)} bytes exceeds the {max_bytes} cap")
    try:
        record = msgpack.unpackb(
            raw, raw=False, use_list=True, strict_map_key=False,
            max_str_len=MAX_COMPLETION_CHARS * 4, max_bin_len=0, max_ext_len=0,
            max_array_len=max(MAX_COMPLETIONS, MAX_PAYLOADS), max_map_len=max(MAX_ITEMS, 8),
        )
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise RolloutRejected(f"record is not genrl msgpack ({type(exc).__name__})") from None
    if not isinstance(record, dict) or not record or len(record) > MAX_ITEMS:
        raise RolloutRejected("record is not a non-empty map of batch items")
    out = []
    for batch_id, payloads in record.items():
        if not isinstance(batch_id, str | int) or not isinstance(payloads, list) or not 1 <= len(payloads) <= MAX_PAYLOADS:
            raise RolloutRejected("batch item is not a list of payloads")
        out += [_item(p) for p in payloads]
    return out


def _item(payload: object) -> GenrlItem:
    if not isinstance(payload, dict) or payload.get("__type__") != "Payload":
        raise RolloutRejected("not a Payload map")
    world = payload.get("world_state")
    if not isinstance(world, dict) or world.get("__type__") != "WorldState":
        raise RolloutRejected("world_state is not a WorldState map")
    env = world.get("environment_states")
    question = env.get("question") if isinstance(env, dict) else None
    if not isinstance(question, str) or not 0 < len(question) <= MAX_QUESTION_CHARS:
        raise RolloutRejected("no question text in environment_states")
    actions = payload.get("actions")
    comps = [actions] if isinstance(actions, str) else actions
    if not isinstance(comps, list) or not 1 <= len(comps) <= MAX_COMPLETIONS:
        raise RolloutRejected("actions is not a list of completions")
    if not all(isinstance(c, str) and len(c) <= MAX_COMPLETION_CHARS for c in comps):
        raise RolloutRejected("completion not text or oversized")
    return GenrlItem(question, tuple(comps))


class GenrlExchange(BoardExchange):
    """`RolloutExchange` in genrl 0.3's format (the shared BoardExchange loop with this
    module's keys, codec and unsigned store): our rollouts are published as genrl
    Payloads; genrl peers' items become Rollouts on tasks our own source knows. genrl
    has one stage per gather key, so only stage 0 is exchanged."""

    def __init__(self, board: PlainBoard, peer_id: Callable[[], str], tasks: TaskIndex, *,
                 ttl: float = TTL, max_bytes: int = MAX_RECORD_BYTES,
                 expected_peers: Callable[[], int] = lambda: 0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic, seed: int = 0) -> None:
        super().__init__(board, peer_id, namespace=COMPAT, ttl=ttl, max_bytes=max_bytes,
                         expected_peers=expected_peers, sleep=sleep, monotonic=monotonic, seed=seed)
        self.plain = board
        self.tasks = tasks
        self.unknown_questions = 0

    def key(self, round: int, stage: int) -> str | None:
        return round_key(round) if stage == 0 else None

    def encode(self, me: str, round: int, stage: int, rollouts: Sequence[Rollout]) -> tuple[bytes, int]:
        items: list[Item] = [(t, r.completions) for r in rollouts if (t := self.tasks.resolve(r.task))]
        return encode_record(items, self.max_bytes)

    def decode(self, subkey: str, raw: bytes, round: int, stage: int) -> list[Rollout]:
        out = []
        for item in decode_record(subkey, raw, self.max_bytes):
            ref = self.tasks.find_question(item.question)
            if ref is None:
                self.unknown_questions += 1
                continue
            out.append(Rollout(subkey, round, stage, ref, item.completions))
        return out

    def store(self, key: str, me: str, raw: bytes) -> bool:
        return self.plain.put_plain(key, me, raw, self.ttl)

    def load(self, key: str, timeout: float) -> dict[str, bytes]:
        return self.plain.get_plain(key, timeout)


class GenrlRoundClock:
    """The round of a chain-less genrl swarm, read from the DHT (implements Coordinator).

    genrl nodes without a chain count rounds per process and store each under its bare
    number; there is no schedule to read. The swarm's round is the highest key holding
    another peer's records, found by stepping up from the last one known (a few missing
    keys are skipped). genrl nodes store first and then wait for HIVEMIND_WORLD_SIZE
    records, so the highest such key is the one they are waiting on: this node publishes
    there, and they read it in the same gather. Before any genrl record exists the round
    is 0, where genrl nodes start.
    Records expire after 600 s, so a node joining a swarm older than that needs the
    chain's round (rl-swarm sets genrl's counter from it) instead of this clock.
    """

    def __init__(self, board: PlainBoard, peer_id: Callable[[], str], *, lookahead: int = 4,
                 timeout: float = 5.0, poll: float = 0.5) -> None:
        self.board = board
        self.peer_id = peer_id
        self.lookahead = lookahead
        self.poll = poll
        self.timeout = timeout
        self._known = -1

    def _has_records(self, round: int) -> bool:
        """Another peer's record under the key (our own would make us race ahead alone)."""
        me = self.peer_id()
        return any(sub != me for sub in self.board.get_plain(round_key(round), self.timeout))

    def current_round(self) -> tuple[int, int]:
        probe = self._known + 1
        misses = 0
        while misses < self.lookahead:
            if self._has_records(probe):
                self._known, misses = probe, 0
            else:
                misses += 1
            probe += 1
        return max(0, self._known), 0

    def seconds_until_next(self) -> float | None:
        """No schedule, but genrl rounds follow each other within seconds: look again
        after `poll` s (the node's idle wait would otherwise start at 5 s, and genrl
        nodes that wait for this node's record would wait as long)."""
        return self.poll

    def poll_seconds(self) -> float | None:
        """How often to look for the next key: the same short poll."""
        return self.poll

    def submit_reward(self, round: int, stage: int, reward: float, peer_id: str) -> None:
        """genrl without a chain has nowhere to report rewards."""

    def submit_winners(self, round: int, winners: list[str], peer_id: str) -> None:
        """Nor winners."""

    def resume_from(self, round: int) -> None:
        """The swarm's keys say where it is; a checkpoint does not."""

    def queue_depth(self) -> int | None:
        """No chain, so no submissions waiting."""
        return None

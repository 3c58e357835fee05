"""The genrl-0.3 lane's record format, checked against genrl 0.3.0's own (de)serialiser:
what we publish decodes in an unmodified genrl node, what genrl publishes decodes here,
and everything else (oversized, malformed, signed, foreign types) is dropped whole."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from swarmd.clock import FakeClock
from swarmd.errors import ConfigError
from trainer import config
from trainer.data import TaskSource
from trainer.exchange import LocalBoard, owner_subkey
from trainer.genrl_compat import (
    GenrlExchange,
    GenrlRoundClock,
    decode_record,
    encode_record,
    is_bare_round_key,
    round_key,
)
from trainer.rollout import Rollout, RolloutRejected, Task, TaskRef

pytestmark = [pytest.mark.upstream]

ME = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
PEER = "QmSoLnSGccFuZQJzRadHn95W2CrSFmZuTdDWP8HXaHca9z"
SEED = 0


def _genrl_pack(question: str, answer: str, completions: list[str]) -> bytes:
    """A record exactly as genrl 0.3.0's HivemindBackend packs its gather object."""
    from genrl.communication.communication import Payload
    from genrl.serialization.msgpack_utils import _msgpack_encode
    from genrl.state.game_tree import WorldState

    world = WorldState(environment_states={"question": question, "answer": answer},
                       opponent_states=None, personal_states=None)
    obj = {"9f2c": [Payload(world_state=world, actions=completions, metadata=None)]}
    packed: bytes = msgpack.Packer(use_bin_type=True, default=_msgpack_encode).pack(obj)
    return packed


def _genrl_unpack(raw: bytes) -> object:
    """genrl 0.3.0's reader: Unpacker with its object hook, first object only."""
    from genrl.serialization.msgpack_utils import _msgpack_decode

    unpacker = msgpack.Unpacker(object_hook=_msgpack_decode, raw=False, max_buffer_size=100 * 1024 * 1024)
    unpacker.feed(raw)
    return next(unpacker)


def _task(question: str, answer: str) -> Task:
    return Task(TaskRef("local_arith", SEED, 0), question, answer)


def _question(tasks: TaskSource, index: int) -> tuple[TaskRef, str, str]:
    task = tasks.resolve(TaskRef("local_arith", SEED, index))
    assert task is not None
    return task.ref, task.question, task.answer


def test_our_record_decodes_in_genrl_as_payloads_with_question_and_completions() -> None:
    """genrl's own decoder turns our record into its Payload/WorldState objects."""
    from genrl.communication.communication import Payload
    from genrl.misc_utils.utils import generate_md5_hash_id

    decoded = _genrl_unpack(encode_record([(_task("2+3=?", "5"), ["<answer>5</answer>", "7"])])[0])
    assert isinstance(decoded, dict)
    assert list(decoded) == [generate_md5_hash_id("2+3=?")]  # genrl's transplant asserts it
    (payloads,) = decoded.values()
    assert isinstance(payloads[0], Payload)
    assert payloads[0].world_state.environment_states == {
        "question": "2+3=?", "answer": "5", "test": "", "metadata": {"dataset": "local_arith"}}
    assert payloads[0].actions == ["<answer>5</answer>", "7"]


def test_genrl_record_decodes_here_to_question_and_completions() -> None:
    """A record packed by genrl's own encoder is read: question text and completions."""
    items = decode_record(PEER, _genrl_pack("2+3=?", "5", ["a", "b"]))
    assert [(i.question, i.completions) for i in items] == [("2+3=?", ("a", "b"))]


@pytest.mark.parametrize(
    ("subkey", "raw", "reason"),
    [
        (PEER, b"\xc1" * 10, "not genrl msgpack"),
        (PEER, msgpack.packb({"x": [{"__type__": "Evil"}]}), "not a Payload map"),
        (PEER, msgpack.packb({"x": [{"__type__": "Payload", "world_state": {"__type__": "WorldState",
                                     "environment_states": {}}, "actions": ["a"]}]}), "no question"),
        (PEER, msgpack.packb({"x": [{"__type__": "Payload", "world_state": {"__type__": "WorldState",
                                     "environment_states": {"question": "q"}}, "actions": [1]}]}), "completion not text"),
        (PEER, msgpack.packb({"x": msgpack.ExtType(5, b"boom")}), "not genrl msgpack"),
        (PEER, msgpack.packb({}), "non-empty map"),
        (PEER, b"x" * 300_000, "exceeds"),
        ("not a peer id", msgpack.packb({"x": []}), "plain peer id"),
        ("[owner:ssh-rsa AAAA]", msgpack.packb({"x": []}), "plain peer id"),
    ],
)
def test_malformed_records_are_rejected_with_the_reason(subkey: str, raw: bytes, reason: str) -> None:
    """Size first, then msgpack with limits, then the exact Payload shape."""
    with pytest.raises(RolloutRejected, match=reason):
        decode_record(subkey, raw)


def test_signed_value_is_rejected_like_genrl_would_choke_on_it() -> None:
    """hivemind appends `[signature:…]` to a value it signs: trailing bytes after the
    msgpack object, which is what hangs genrl's reader; here it is dropped."""
    signed = encode_record([(_task("2+3=?", "5"), ["a"])])[0] + b"[signature:AAAA]"
    with pytest.raises(RolloutRejected, match="not genrl msgpack"):
        decode_record(PEER, signed)


def test_bare_round_keys_are_the_digits_only() -> None:
    assert round_key(12) == "12"
    assert is_bare_round_key("12")
    assert not is_bare_round_key("ns:rollouts:12:0")
    assert not is_bare_round_key("")
    assert not is_bare_round_key("١٢")


def test_exchange_publishes_under_the_bare_round_key_and_plain_peer_id() -> None:
    """Our rollouts go out as genrl Payloads with the question our task source gives."""
    tasks = TaskSource(seed=SEED)
    ref, question, answer = _question(tasks, 1)
    board = LocalBoard(FakeClock().wall)
    GenrlExchange(board, lambda: ME, tasks).publish(4, 0, [Rollout(ME, 4, 0, ref, ("x", "y"))])
    stored = board.get("4", 0.0)
    assert list(stored) == [ME]
    (payloads,) = _genrl_unpack(stored[ME]).values()  # type: ignore[attr-defined]
    assert payloads[0].world_state.environment_states == {
        "question": question, "answer": answer, "test": "", "metadata": {"dataset": "local_arith"}}


def test_gather_maps_genrl_questions_to_our_tasks_and_drops_unknown_ones() -> None:
    """A known question becomes a Rollout on OUR task (our answer scores it); the peer's
    claimed answer is never kept; a question we cannot regenerate is skipped."""
    tasks = TaskSource(seed=SEED)
    ref, question, _ = _question(tasks, 2)
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    board.put("7", PEER, _genrl_pack(question, "999 (a lie)", ["c1", "c2"]), 600)
    board.put("7", "QmZz" + PEER[4:], _genrl_pack("What is the capital of France?", "Paris", ["c"]), 600)
    ex = GenrlExchange(board, lambda: ME, tasks, sleep=clock.advance, monotonic=clock.monotonic)
    got = ex.gather(7, 0, limit=8, timeout=1.0)
    assert got == [Rollout(PEER, 7, 0, ref, ("c1", "c2"))]
    assert ex.unknown_questions == 1


def test_gather_drops_a_bad_record_and_keeps_the_good_one() -> None:
    tasks = TaskSource(seed=SEED)
    _, question, _ = _question(tasks, 3)
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    board.put("2", PEER, _genrl_pack(question, "x", ["ok"]), 600)
    board.put("2", "QmZz" + PEER[4:], b"\x00garbage", 600)
    ex = GenrlExchange(board, lambda: ME, tasks, sleep=clock.advance, monotonic=clock.monotonic)
    assert [r.peer_id for r in ex.gather(2, 0, limit=8, timeout=1.0)] == [PEER]
    assert ex.dropped == 1


def test_round_clock_follows_the_highest_key_other_peers_wrote() -> None:
    """Our own records never move the clock (we would run ahead alone); a missing key
    shorter than the lookahead is stepped over."""
    board = LocalBoard(FakeClock().wall)
    clock = GenrlRoundClock(board, lambda: ME, lookahead=3)
    assert clock.current_round() == (0, 0)
    for key in ("0", "1", "3"):
        board.put(key, PEER, b"r", 600)
    board.put("4", ME, b"ours", 600)
    board.put("5", ME, b"ours", 600)
    assert clock.current_round() == (3, 0)
    board.put("4", PEER, b"r", 600)
    assert clock.current_round() == (4, 0)


def test_owner_subkeys_never_look_like_genrl_peers() -> None:
    """A signed (owner-marked) subkey is ours-format, never read as a genrl record."""
    with pytest.raises(RolloutRejected):
        decode_record(owner_subkey(b"ssh-rsa AAAAB3NzaC1yc2E="), encode_record([(_task("q", "a"), ["c"])])[0])


def test_unknown_compat_lane_is_one_config_error_naming_the_key(tmp_path: Path) -> None:
    """A typo in `compat` stops the node with the key and the accepted value."""
    with pytest.raises(ConfigError, match=r"compat.*genrl-0\.3"):
        config.parse('compat = "genrl-3"\n', "trainer.toml", tmp_path)
    assert config.parse('compat = "genrl-0.3"\n', "trainer.toml", tmp_path).compat == "genrl-0.3"


def test_record_over_the_cap_drops_items_from_the_end() -> None:
    """Our record never exceeds max_bytes: items are dropped, and the count says so."""
    items = [(_task(f"{i}+1=?", str(i + 1)), ["x" * 200]) for i in range(10)]
    raw, kept = encode_record(items, max_bytes=1000)
    assert len(raw) <= 1000
    assert 0 < kept < 10
    assert len(decode_record(PEER, raw)) == kept


def test_round_clock_is_a_coordinator() -> None:
    """Everything the node's loop calls exists (no schedule, no reward sink, no queue)."""
    clock = GenrlRoundClock(LocalBoard(FakeClock().wall), lambda: ME, poll=0.5)
    assert clock.seconds_until_next() == 0.5
    assert clock.queue_depth() is None
    assert clock.poll_seconds() == 0.5
    clock.submit_reward(0, 0, 1.0, ME)
    clock.submit_winners(0, [ME], ME)
    clock.resume_from(3)
    assert clock.current_round() == (0, 0)

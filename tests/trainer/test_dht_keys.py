"""The rollout record schema on the DHT: namespaced round/stage keys, subkey = publisher,
size cap before parsing, and every malformed or mismatched record dropped, not raised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from swarmd.clock import FakeClock
from trainer.dht import DhtExchange, read_peers_file, write_peers_file
from trainer.exchange import (
    LocalBoard,
    LocalExchange,
    decode_batch,
    encode_batch,
    owner_subkey,
    rollout_key,
    signer_peer_id,
)
from trainer.identity import load_or_create, load_private_key
from trainer.rollout import Rollout, RolloutRejected, TaskRef, rollout_to_wire

A, B, C = "QmPeerA", "QmPeerB", "QmPeerC"


def _rollout(peer: str, rnd: int = 3, stage: int = 0, index: int = 0) -> Rollout:
    return Rollout(peer, rnd, stage, TaskRef("local_arith", 0, index), ("<answer>4</answer>", "5"))


def _exchange(board: LocalBoard, peer: str, clock: FakeClock, **kw: object) -> DhtExchange:
    return DhtExchange(board, lambda: peer, namespace="ns", sleep=clock.advance,
                       monotonic=clock.monotonic, **kw)  # type: ignore[arg-type]


def test_key_is_namespaced_by_round_and_stage() -> None:
    """Keys carry the swarm namespace and the current round (W21, W22)."""
    assert rollout_key("swarm-x", 12, 1) == "swarm-x:rollouts:12:1"


def test_published_record_is_found_by_peers_under_own_subkey() -> None:
    """A publishes under its own subkey; B gathers A's rollouts and never its own."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    a, b = _exchange(board, A, clock), _exchange(board, B, clock)
    a.publish(3, 0, [_rollout(A, index=i) for i in range(3)])
    b.publish(3, 0, [_rollout(B)])
    assert set(board.get("ns:rollouts:3:0", 1.0)) == {A, B}
    got = b.gather(3, 0, limit=8, timeout=0.0)
    assert [r.peer_id for r in got] == [A, A, A]


def test_record_under_someone_elses_subkey_is_dropped() -> None:
    """A record whose peer field differs from its subkey (a spoof) is rejected whole."""
    raw, _ = encode_batch(A, 3, 0, [_rollout(A)], 10_000)
    with pytest.raises(RolloutRejected, match="subkey"):
        decode_batch(C, raw, 3, 0, 10_000)


def test_rollout_claiming_other_peer_inside_record_is_dropped() -> None:
    """Each rollout must name the record's publisher, round and stage."""
    record = {"v": 1, "peer": A, "round": 3, "stage": 0, "rollouts": [rollout_to_wire(_rollout(C))]}
    with pytest.raises(RolloutRejected, match="differs"):
        decode_batch(A, json.dumps(record).encode(), 3, 0, 10_000)


def test_record_replayed_from_another_round_is_dropped() -> None:
    """A round-2 record copied under the round-3 key does not pass."""
    raw, _ = encode_batch(A, 2, 0, [_rollout(A, rnd=2)], 10_000)
    with pytest.raises(RolloutRejected, match="round"):
        decode_batch(A, raw, 3, 0, 10_000)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"[1,2]", b'{"v": 2}', b"{}", "text", 42,
                                 b'{"v":1,"peer":"QmPeerA","round":3,"stage":0,"rollouts":[{"v":1}]}'])
def test_garbage_record_is_rejected_not_raised_as_other_error(raw: object) -> None:
    """Undecodable or schema-violating values raise only RolloutRejected."""
    with pytest.raises(RolloutRejected):
        decode_batch(A, raw, 3, 0, 10_000)


def test_oversize_record_is_rejected_before_parsing() -> None:
    """A value over the cap is refused by its length alone (never json-parsed)."""
    with pytest.raises(RolloutRejected, match="exceeds"):
        decode_batch(A, b"{" + b" " * 5000, 3, 0, 4096)


def test_publish_truncates_to_the_cap() -> None:
    """The publisher drops rollouts from the end until the record fits the cap."""
    rollouts = [_rollout(A, index=i) for i in range(50)]
    raw, kept = encode_batch(A, 3, 0, rollouts, 1000)
    assert len(raw) <= 1000
    assert 0 < kept < 50
    assert len(decode_batch(A, raw, 3, 0, 1000)) == kept


def test_gather_drops_bad_peer_and_keeps_good_ones(capsys: pytest.CaptureFixture[str]) -> None:
    """One poisoned record costs only that peer, with a log line naming it."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    _exchange(board, A, clock).publish(3, 0, [_rollout(A)])
    board.put("ns:rollouts:3:0", C, b"not json", 60)
    b = _exchange(board, B, clock, expected_peers=lambda: 2)
    got = b.gather(3, 0, limit=8, timeout=5.0)
    assert [r.peer_id for r in got] == [A]
    assert b.dropped == 1
    assert "dropped rollouts from peer QmPeerC" in capsys.readouterr().out


def test_gather_caps_at_k_round_robin_over_peers() -> None:
    """With K=4 and two chatty peers, each contributes two rollouts."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    for peer in (A, C):
        _exchange(board, peer, clock).publish(3, 0, [_rollout(peer, index=i) for i in range(4)])
    got = _exchange(board, B, clock).gather(3, 0, limit=4, timeout=1.0)
    assert sorted(r.peer_id for r in got) == [A, A, C, C]


def test_gather_waits_boundedly_for_missing_peers() -> None:
    """Expecting 2 peers but hearing from 1, gather polls with sleeps and stops at the timeout."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    _exchange(board, A, clock).publish(3, 0, [_rollout(A)])
    start = clock.monotonic()
    got = _exchange(board, B, clock, expected_peers=lambda: 2).gather(3, 0, limit=8, timeout=3.0)
    assert len(got) == 1
    assert 3.0 <= clock.monotonic() - start < 3.6


def test_expired_records_are_not_gathered() -> None:
    """Records past their TTL are gone (stale rounds cannot be trained on)."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    _exchange(board, A, clock, ttl=10.0).publish(3, 0, [_rollout(A)])
    clock.advance(11)
    assert _exchange(board, B, clock).gather(3, 0, limit=8, timeout=0.0) == []


def test_local_exchange_matches_dht_schema() -> None:
    """LocalExchange stores the same record format, so a DhtExchange can read it."""
    clock = FakeClock()
    board = LocalBoard(clock.wall)
    LocalExchange(A, board, namespace="ns").publish(3, 0, [_rollout(A)])
    assert [r.peer_id for r in _exchange(board, B, clock).gather(3, 0, 8, 0.0)] == [A]
    assert [r.peer_id for r in LocalExchange(B, board, namespace="ns").gather(3, 0, 8, 0.0)] == [A]


def test_peers_file_skips_own_address_and_comments(tmp_path: Path) -> None:
    """A restarted first peer does not bootstrap from its own (dead) address."""
    path = tmp_path / "peers.txt"
    write_peers_file(path, ["/ip4/127.0.0.1/tcp/1/p2p/QmMe", "/ip4/127.0.0.1/tcp/2/p2p/QmYou"])
    path.write_text(path.read_text() + "# comment\n\nnot-a-maddr\n")
    assert read_peers_file(path, "QmMe") == ["/ip4/127.0.0.1/tcp/2/p2p/QmYou"]
    assert read_peers_file(tmp_path / "missing", "QmMe") == []


def test_owner_subkey_maps_back_to_the_keys_peer_id(tmp_path: Path) -> None:
    """The subkey a node signs under names exactly the peer id of its swarm.pem."""
    ident = load_or_create(tmp_path / "swarm.pem")
    ssh = load_private_key(ident.path).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    subkey = owner_subkey(ssh)
    assert subkey.startswith("[owner:ssh-rsa ")
    assert signer_peer_id(subkey) == ident.peer_id


@pytest.mark.parametrize("subkey", [A, "", "[owner:]", "[owner:ssh-rsa AAAA]", "[owner:ssh-rsa !!]",
                                    "x[owner:ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ]",
                                    "[owner:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBx]"])
def test_subkey_without_a_valid_owner_key_has_no_signer(subkey: str) -> None:
    """Plain, malformed, decorated or non-RSA owner subkeys name no signer (the record is dropped)."""
    assert signer_peer_id(subkey) is None

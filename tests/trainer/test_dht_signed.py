"""Signed DHT records on a real loopback swarm (W22): two honest `SwarmDht` nodes (A, B)
and an attacker M, a plain hivemind DHT with no validator that stores whatever it likes
under other peers' owner subkeys and serves it from its own storage. Forged,
unsigned and signer-mismatched records never reach a gather; honest ones do."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from trainer.dht import DhtExchange, SwarmDht
from trainer.exchange import encode_batch, owner_subkey, rollout_key
from trainer.identity import load_or_create, load_private_key
from trainer.rollout import Rollout, TaskRef

# hivemind's import runs torch.jit.script (deprecated in torch 2.13) and its DHT child
# finds p2pd with importlib.resources.path (deprecated): not our code. The forked child
# inherits pytest's warnings-as-errors filter, so these must be ignored here.
pytestmark = [
    pytest.mark.io,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:path is deprecated:DeprecationWarning"),
]

NS = "signed"
LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


@dataclass
class Swarm:
    a: SwarmDht
    b: SwarmDht
    attacker: Any  # hivemind.DHT without record validators
    c_id: str  # an offline peer whose public key the attacker knows
    c_ssh: bytes
    a_ssh: bytes


def _ssh(path: Path) -> bytes:
    return load_private_key(path).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:
    import hivemind

    tmp = tmp_path_factory.mktemp("signed")
    a = SwarmDht(tmp / "a.pem", host_maddrs=LOOPBACK)
    b = SwarmDht(tmp / "b.pem", host_maddrs=LOOPBACK)
    attacker = None
    try:
        a.start()
        b.initial_peers = a.visible_maddrs()
        b.start()
        attacker = hivemind.DHT(host_maddrs=LOOPBACK, initial_peers=a.visible_maddrs(), start=True)
        c = load_or_create(tmp / "c.pem")
        yield Swarm(a, b, attacker, c.peer_id, _ssh(tmp / "c.pem"), _ssh(tmp / "a.pem"))
    finally:
        if attacker is not None:
            attacker.shutdown()
            attacker.join(timeout=10)
        b.shutdown()
        a.shutdown()


def _rollouts(peer: str, rnd: int, answer: str = "4") -> list[Rollout]:
    return [Rollout(peer, rnd, 0, TaskRef("local_arith", 0, i), (f"<answer>{answer}</answer>",)) for i in range(2)]


def _exchange(node: SwarmDht, expected: int = 1) -> DhtExchange:
    return DhtExchange(node, lambda: node.peer_id, namespace=NS, expected_peers=lambda: expected)


def _forge(swarm: Swarm, rnd: int, subkey: str, value: bytes) -> None:
    """The attacker stores `value` as is: no validator signs or checks it on its side."""
    from hivemind.utils import get_dht_time

    key = rollout_key(NS, rnd, 0)
    # A later expiration than any honest record: without validation it would win. The
    # store's status is the last replica's answer (an honest peer's refusal), so the
    # proof the forgery is out there is the attacker's own view of the key.
    swarm.attacker.store(key, value, get_dht_time() + 900, subkey=subkey)
    found = swarm.attacker.get(key, latest=True)
    assert found is not None, "the attacker holds no record"
    assert subkey in found.value, "the attacker holds no forged record"


def test_forged_record_under_owners_subkey_never_replaces_the_owners(swarm: Swarm) -> None:
    """M stores a record under A's owner subkey with a bogus signature; B still gathers A's own rollouts."""
    _exchange(swarm.a).publish(1, 0, _rollouts(swarm.a.peer_id, 1))
    forged, _ = encode_batch(swarm.a.peer_id, 1, 0, _rollouts(swarm.a.peer_id, 1, answer="999"), 10_000)
    fake_signature = b"[signature:" + base64.b64encode(b"\x01" * 256) + b"]"
    _forge(swarm, 1, owner_subkey(swarm.a_ssh), forged + fake_signature)
    got = _exchange(swarm.b).gather(1, 0, limit=8, timeout=10.0)
    assert [r.completions for r in got] == [("<answer>4</answer>",)] * 2
    assert {r.peer_id for r in got} == {swarm.a.peer_id}


def test_forged_and_unsigned_records_of_offline_peer_are_not_gathered(
        swarm: Swarm, capsys: pytest.CaptureFixture[str]) -> None:
    """Records claiming peer C, one under C's owner subkey signed by another key and one under a plain subkey, are dropped."""
    claim, _ = encode_batch(swarm.c_id, 2, 0, _rollouts(swarm.c_id, 2), 10_000)
    wrong_key = load_private_key(swarm.a.identity_path)  # any key but C's
    from hivemind.utils.crypto import RSAPrivateKey

    signer = RSAPrivateKey.__new__(RSAPrivateKey)
    signer.__setstate__({"_private_key": wrong_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())})
    _forge(swarm, 2, owner_subkey(swarm.c_ssh), claim + b"[signature:" + signer.sign(claim) + b"]")
    _forge(swarm, 2, swarm.c_id, claim)
    # Expect two peers so gather polls the whole timeout: the forgeries get every chance.
    got = _exchange(swarm.a, expected=2).gather(2, 0, limit=8, timeout=3.0)
    assert got == []
    assert swarm.a.get(rollout_key(NS, 2, 0), 5.0) == {}
    out = capsys.readouterr().out
    assert f"dropped unsigned record under {NS}:rollouts:2:0 (subkey #" in out
    assert swarm.c_id not in out  # the sender's text never reaches our stdout


def test_signed_record_naming_another_peer_is_dropped(swarm: Swarm, capsys: pytest.CaptureFixture[str]) -> None:
    """B signs a record claiming C's rollouts; A drops it, naming B, and does not crash."""
    claim, _ = encode_batch(swarm.c_id, 3, 0, _rollouts(swarm.c_id, 3), 10_000)
    assert swarm.b.put(rollout_key(NS, 3, 0), swarm.b.peer_id, claim, 60.0)
    a = _exchange(swarm.a)
    assert a.gather(3, 0, limit=8, timeout=10.0) == []
    assert a.dropped == 1
    out = capsys.readouterr().out
    assert f"dropped rollouts from peer {swarm.b.peer_id[:16]}: record peer differs from its signer" in out


def test_put_under_another_peers_subkey_is_refused(swarm: Swarm) -> None:
    """A node signs only for itself: a put naming another peer stores nothing."""
    assert not swarm.b.put(rollout_key(NS, 4, 0), swarm.a.peer_id, b"{}", 60.0)
    assert swarm.a.get(rollout_key(NS, 4, 0), 5.0) == {}


def test_honest_signed_records_are_gathered_under_signer_peer_id(swarm: Swarm) -> None:
    """B publishes signed rollouts; A gathers them, keyed by B's peer id."""
    _exchange(swarm.b).publish(5, 0, _rollouts(swarm.b.peer_id, 5))
    assert set(swarm.a.get(rollout_key(NS, 5, 0), 5.0)) == {swarm.b.peer_id}
    got = _exchange(swarm.a).gather(5, 0, limit=8, timeout=10.0)
    assert [r.peer_id for r in got] == [swarm.b.peer_id] * 2

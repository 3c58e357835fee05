"""Regression (measured: a signed record under genrl's bare round key hangs an upstream
node's DHT.get forever): on a real hivemind DHT, nothing this node stores under a bare
numeric key is signed, and a genrl-style reader (a plain hivemind DHT without
validators, as genrl 0.3.0 runs it) reads our genrl-0.3 records and decodes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from trainer.data import TaskSource
from trainer.dht import SwarmDht
from trainer.genrl_compat import GenrlExchange
from trainer.rollout import Rollout, TaskRef

# hivemind's import runs torch.jit.script (deprecated in torch 2.13) and its DHT child
# finds p2pd with importlib.resources.path (deprecated): not our code; the forked child
# inherits pytest's warnings-as-errors filter (as in test_dht_signed.py).
pytestmark = [
    pytest.mark.upstream,
    pytest.mark.io,
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:path is deprecated:DeprecationWarning"),
]


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[SwarmDht]:
    dht = SwarmDht(tmp_path / "swarm.pem", host_maddrs=["/ip4/127.0.0.1/tcp/0"], attempts=2)
    dht.start()
    try:
        yield dht
    finally:
        dht.shutdown()


@pytest.mark.parametrize("key", ["0", "5", "007", "123456"])
def test_signing_store_refuses_every_bare_numeric_key(ours: SwarmDht, key: str) -> None:
    """The signed path (`put`) never writes where genrl reads."""
    assert ours.put(key, ours.peer_id, b"anything", 60) is False
    assert ours.get_plain(key, 5.0) == {}


def test_genrl_style_reader_gets_our_unsigned_record_and_never_a_signature(ours: SwarmDht) -> None:
    """Our genrl-0.3 record lands under the bare key with the plain peer id; a reader
    without validators gets it in time and it is one msgpack object (a signature suffix
    would be trailing data, the failure that hangs genrl)."""
    import hivemind
    from genrl.serialization.msgpack_utils import _msgpack_decode

    me = ours.peer_id
    rollout = Rollout(me, 5, 0, TaskRef("local_arith", 0, 1), ("<answer>3</answer>", "4"))
    GenrlExchange(ours, lambda: me, TaskSource(seed=0)).publish(5, 0, [rollout])
    assert ours.put("5", me, b"signed?", 60) is False
    assert ours.put("swarmd-demo:rollouts:5:0", me, b"{}", 60) is True  # signing elsewhere still works

    reader = hivemind.DHT(initial_peers=ours.visible_maddrs(), host_maddrs=["/ip4/127.0.0.1/tcp/0"], start=True)
    try:
        found = reader.get("5", latest=True, return_future=True).result(timeout=30)
    finally:
        reader.shutdown()
    assert found is not None
    records = found.value
    assert list(records) == [me]
    raw = records[me].value
    assert b"[signature:" not in raw
    decoded = msgpack.unpackb(raw, object_hook=_msgpack_decode, raw=False)  # strict: no trailing bytes
    (payloads,) = decoded.values()
    assert payloads[0].actions == ["<answer>3</answer>", "4"]

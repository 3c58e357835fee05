"""How peers swap rollouts, without knowing hivemind.

`RolloutExchange` is what the round loop calls; `BoardExchange` (here) is its one
implementation, over the hivemind DHT (`trainer.dht.DhtExchange`) or in memory
(`LocalExchange`); `trainer.genrl_compat.GenrlExchange` speaks genrl 0.3's format. `Board` is the smaller seam under the
DHT implementation and the DHT coordinator: a key -> {subkey: bytes} store with expiry,
which hivemind provides for real and `LocalBoard` provides in tests, so the key schema,
validation and round clock are tested in milliseconds without p2pd.

The record format on the wire (one record per peer per round/stage):
key `f"{namespace}:rollouts:{round}:{stage}"`, value = UTF-8 JSON
`{"v": 1, "peer": <id>, "round": R, "stage": S, "rollouts": [<rollout_to_wire>]}` of at
most `max_bytes`. Stored as bytes (not a msgpack object) so the receiver checks the size
BEFORE parsing (W22: 0.1.x had no cap).

Who published a record (W22). A `Board` maps subkey -> value where the subkey is the
publisher's peer id as far as the board can vouch for it. On the DHT the stored subkey
is `owner_subkey(<publisher's OpenSSH RSA key>)`: hivemind's `RSASignatureValidator`
makes every honest node refuse such a record unless the value is signed by that key,
and `SwarmDht.get` turns the key back into a peer id with `signer_peer_id`, so a board
subkey IS the signer. `decode_batch` then requires the payload's peer id to equal it.
`LocalBoard` (tests, one process) trusts its callers and does not sign; the same
payload-peer == subkey rule still applies there.
"""

from __future__ import annotations

import functools
import json
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trainer.identity import peer_id_from_public
from trainer.rollout import Rollout, RolloutRejected, rollout_from_wire, rollout_to_wire

DEFAULT_MAX_BYTES = 256 * 1024
REQUEST_TIMEOUT = 10.0  # longest single board read
GATHER_POLL = 0.5

log = structlog.get_logger(__name__)


def say(msg: str) -> None:
    """A plain stdout line for swarmd's classifier (the logging setup may differ)."""
    print(f"INFO:trainer.dht:{msg}", file=sys.stdout, flush=True)  # noqa: T201


class RolloutExchange(Protocol):
    def publish(self, round: int, stage: int, rollouts: Sequence[Rollout]) -> None: ...

    def gather(self, round: int, stage: int, limit: int, timeout: float) -> list[Rollout]:
        """Up to `limit` OTHER peers' rollouts for (round, stage), waiting at most `timeout` s."""
        ...


class PeerLink(Protocol):
    """The node's view of its network connection (for the heartbeat and reconnects)."""

    def visible_peers(self) -> int: ...

    def reconnect(self) -> None: ...


class Board(Protocol):
    def put(self, key: str, subkey: str, value: bytes, ttl: float) -> bool: ...

    def get(self, key: str, timeout: float) -> dict[str, bytes]: ...


def rollout_key(namespace: str, round: int, stage: int) -> str:
    return f"{namespace}:rollouts:{round}:{stage}"


# hivemind's RSASignatureValidator.PUBLIC_KEY_FORMAT around an OpenSSH RSA public key;
# only this exact form counts, so one signer cannot hold several subkeys of a key.
_OWNER_RE = re.compile(r"\[owner:(ssh-rsa [A-Za-z0-9+/]+={0,2})\]")


def owner_subkey(ssh_public_key: bytes) -> str:
    """The DHT subkey that only the holder of this key can write under."""
    return f"[owner:{ssh_public_key.decode('ascii')}]"


@functools.lru_cache(maxsize=4096)
def signer_peer_id(subkey: str) -> str | None:
    """The peer id of the key an owner-marked subkey names, else None (unsigned or
    malformed). Safe as the publisher only for records hivemind has validated."""
    match = _OWNER_RE.fullmatch(subkey)
    if match is None:
        return None
    try:
        key = serialization.load_ssh_public_key(match.group(1).encode("ascii"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None
    return peer_id_from_public(key) if isinstance(key, rsa.RSAPublicKey) else None


def encode_batch(
    peer_id: str, round: int, stage: int, rollouts: Sequence[Rollout], max_bytes: int
) -> tuple[bytes, int]:
    """JSON record of as many rollouts as fit in `max_bytes`; returns (bytes, kept)."""
    wire = [rollout_to_wire(r) for r in rollouts]
    while True:
        record = {"v": 1, "peer": peer_id, "round": round, "stage": stage, "rollouts": wire}
        raw = json.dumps(record, separators=(",", ":")).encode("utf-8")
        if len(raw) <= max_bytes or not wire:
            return raw, len(wire)
        wire = wire[:-1]


def decode_batch(subkey: str, raw: object, round: int, stage: int, max_bytes: int) -> list[Rollout]:
    """Validate one peer's record; raise `RolloutRejected` with the reason, never assert.

    `subkey` is the publisher as the board vouches for it (on the DHT: the record's
    signer), so the record and every rollout must name that same peer and the
    round/stage of the key it was found under (a replay from another round, or a record
    claiming someone else's work, is dropped whole).
    """
    if not isinstance(raw, bytes):
        raise RolloutRejected("record is not bytes")
    if len(raw) > max_bytes:
        raise RolloutRejected(f"record of {len(raw)} bytes exceeds the {max_bytes} cap")
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RolloutRejected("record is not JSON") from None
    if not isinstance(record, dict) or record.get("v") != 1:
        raise RolloutRejected("not a v1 record")
    if record.get("peer") != subkey:
        raise RolloutRejected("record peer differs from its signer (subkey)")
    if record.get("round") != round or record.get("stage") != stage:
        raise RolloutRejected("record round/stage differs from its key")
    items = record.get("rollouts")
    if not isinstance(items, list):
        raise RolloutRejected("rollouts is not a list")
    out = []
    for item in items:
        r = rollout_from_wire(item)
        if r.peer_id != subkey or r.round != round or r.stage != stage:
            raise RolloutRejected("rollout peer/round/stage differs from its record")
        out.append(r)
    return out


def pick_external(by_peer: dict[str, list[Rollout]], limit: int, rng: random.Random) -> list[Rollout]:
    """Round-robin over peers (shuffled) so one chatty peer cannot fill all K slots."""
    queues = [list(v) for _, v in sorted(by_peer.items()) if v]
    rng.shuffle(queues)
    out: list[Rollout] = []
    while queues and len(out) < limit:
        for q in list(queues):
            if len(out) >= limit:
                break
            out.append(q.pop(0))
            if not q:
                queues.remove(q)
    return out


class LocalBoard:
    """In-memory `Board` with expiry on an injected wall clock; shared by local peers."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._data: dict[str, dict[str, tuple[bytes, float]]] = {}

    def put(self, key: str, subkey: str, value: bytes, ttl: float) -> bool:
        self._data.setdefault(key, {})[subkey] = (value, self._wall() + ttl)
        return True

    def get(self, key: str, timeout: float) -> dict[str, bytes]:
        now = self._wall()
        return {k: v for k, (v, exp) in self._data.get(key, {}).items() if exp > now}

    # One store in tests: plain (genrl-0.3) records are kept like any other.
    put_plain = put
    get_plain = get


class BoardExchange:
    """`RolloutExchange` over a `Board`: one record per peer per round/stage. The one
    implementation: on the DHT (`trainer.dht.DhtExchange` is this class) and in memory
    (`LocalExchange`).

    A board subkey is the record's signer (see `SwarmDht.get`), so `decode_batch`'s
    rule "payload peer == subkey" is "payload peer == signer": a peer that signs a
    record claiming another peer's rollouts loses that record."""

    def __init__(self, board: Board, peer_id: Callable[[], str], *, namespace: str,
                 ttl: float = 600.0, max_bytes: int = DEFAULT_MAX_BYTES,
                 expected_peers: Callable[[], int] = lambda: 0,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic, seed: int = 0) -> None:
        self.board = board
        self.peer_id = peer_id  # a callable: on the DHT the id is known only once it runs
        self.namespace = namespace
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.expected_peers = expected_peers
        self.sleep = sleep
        self.monotonic = monotonic
        self._rng = random.Random(seed)
        self.dropped = 0

    # The record format: keys, encoding, validation and which board calls store and
    # load. Overridden by trainer.genrl_compat.GenrlExchange (genrl 0.3's format); the
    # polling, peer accounting and fair pick below are shared.

    def key(self, round: int, stage: int) -> str | None:
        """The board key of (round, stage); None when this format has no record for it."""
        return rollout_key(self.namespace, round, stage)

    def encode(self, me: str, round: int, stage: int, rollouts: Sequence[Rollout]) -> tuple[bytes, int]:
        """(record, rollouts kept within max_bytes)."""
        return encode_batch(me, round, stage, rollouts, self.max_bytes)

    def decode(self, subkey: str, raw: bytes, round: int, stage: int) -> list[Rollout]:
        """A peer's record as rollouts; raises RolloutRejected."""
        return decode_batch(subkey, raw, round, stage, self.max_bytes)

    def store(self, key: str, me: str, raw: bytes) -> bool:
        return self.board.put(key, me, raw, self.ttl)

    def load(self, key: str, timeout: float) -> dict[str, bytes]:
        return self.board.get(key, timeout)

    def publish(self, round: int, stage: int, rollouts: Sequence[Rollout]) -> None:
        key = self.key(round, stage)
        if key is None or not rollouts:
            return
        me = self.peer_id()
        raw, kept = self.encode(me, round, stage, rollouts)
        if kept < len(rollouts):
            log.warning("rollouts_truncated", kept=kept, total=len(rollouts), cap=self.max_bytes)
        if kept and not self.store(key, me, raw):
            log.warning("rollouts_publish_failed", round=round, stage=stage)

    def gather(self, round: int, stage: int, limit: int, timeout: float) -> list[Rollout]:
        """Poll (with sleeps, W14) until `limit` rollouts, every visible peer heard from,
        or `timeout`; "only my own record" is a valid, empty result."""
        key = self.key(round, stage)
        if key is None:
            return []
        me = self.peer_id()
        deadline = self.monotonic() + timeout
        good: dict[str, list[Rollout]] = {}
        bad: set[str] = set()
        while True:
            left = deadline - self.monotonic()
            for subkey, raw in self.load(key, max(0.1, min(REQUEST_TIMEOUT, left))).items():
                if subkey == me or subkey in good or subkey in bad:
                    continue
                try:
                    good[subkey] = self.decode(subkey, raw, round, stage)
                except RolloutRejected as exc:
                    bad.add(subkey)
                    self.dropped += 1
                    say(f"dropped rollouts from peer {subkey[:16]}: {exc}")
            have = sum(len(v) for v in good.values())
            if limit == 0 or have >= limit:
                break
            expected = self.expected_peers()
            if len(good) + len(bad) >= expected:
                break  # every connected peer heard from (or nobody to wait for)
            left = deadline - self.monotonic()
            if left <= 0:
                break
            self.sleep(min(GATHER_POLL, left))
        return pick_external(good, limit, self._rng)


class LocalExchange(BoardExchange):
    """In-process exchange: several nodes in one test (or one demo node) share `board`;
    a single read per gather (no peers to wait for)."""

    def __init__(self, peer_id: str, board: LocalBoard, *, namespace: str = "local",
                 ttl: float = 600.0, max_bytes: int = DEFAULT_MAX_BYTES, seed: int = 0) -> None:
        super().__init__(board, lambda: peer_id, namespace=namespace, ttl=ttl, max_bytes=max_bytes, seed=seed)


class LocalLink:
    """A `PeerLink` with a fixed peer count; counts reconnect requests (tests, demo)."""

    def __init__(self, peers: int = 0) -> None:
        self.peers = peers
        self.reconnects = 0

    def visible_peers(self) -> int:
        return self.peers

    def reconnect(self) -> None:
        self.reconnects += 1

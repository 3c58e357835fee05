"""The hivemind DHT: bootstrap with retries, reconnect in place, and the rollout exchange.

The only module that imports hivemind (lazily, inside `SwarmDht.start`, so the key
schema and validation below import in milliseconds for tests).

Upstream has no reconnect at all and the community patch loses the identity (§3.6,
W12/W13). Here the node owns the DHT's lifecycle: `reconnect()` shuts the DHT down,
makes sure no p2pd still holds our identity (else hivemind refuses with "identity
already taken"), and starts a new one from the SAME `identity_path`, so the peer id
never changes. Start attempts are bounded and jittered (tenacity); only the last
failure escapes, as the original hivemind exception, for swarmd to restart the node.

Signed records (W22): every record this node stores (rollouts, the round clock,
rewards) goes under the subkey `[owner:<our OpenSSH RSA public key>]`, signed by
hivemind's `RSASignatureValidator` with the node's libp2p identity key from swarm.pem
(the same key p2pd uses, so the signer's peer id IS the node's peer id). Every honest
node runs the validator, so a record under someone else's owner subkey without their
signature is refused when stored and when returned: forgeries never reach `get`.
`get` drops records without an owner subkey and reports the rest under the signer's
peer id; `DhtExchange` then checks the payload names that same peer.

Attempt lines avoid hivemind's exception words on purpose (`P2PDaemonError`,
`Daemon failed to start`): swarmd's classifier restarts the whole node on those, which
must happen only once our own retries are exhausted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import structlog
from cryptography.hazmat.primitives import serialization
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from swarmd.p2pd import end_processes, is_p2pd, listen_sockets, remove_stale_sockets
from trainer.exchange import BoardExchange, owner_subkey, say, signer_peer_id
from trainer.genrl_compat import is_bare_round_key
from trainer.identity import load_or_create, load_private_key

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT = 10.0  # every call into the DHT process waits at most this long


async def _count_peers(_dht: Any, node: Any) -> int:
    # Runs inside the DHT process: module level so the forked child can unpickle it.
    return len(await node.protocol.p2p.list_peers())


class SwarmDht:
    """One hivemind DHT with a fixed identity, restartable in place (implements Board)."""

    def __init__(self, identity_path: Path, *, host_maddrs: Sequence[str],
                 announce_maddrs: Sequence[str] = (), initial_peers: Sequence[str] = (),
                 startup_timeout: float = 30.0, attempts: int = 5, max_wait: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.identity_path = identity_path
        self.host_maddrs = list(host_maddrs)
        self.announce_maddrs = list(announce_maddrs)
        self.initial_peers = list(initial_peers)
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self.max_wait = max_wait
        self.sleep = sleep
        self._dht: Any = None
        self._sockets: list[Path] = []
        self._owner = ""  # our owner-marked subkey, set on start
        self._own_id = ""
        self._reported: set[str] = set()  # subkeys already logged as dropped
        self.starts = 0
        self.unsigned_dropped = 0

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=1, max=self.max_wait),
            retry=retry_if_exception(_retryable),
            before_sleep=self._before_retry,
            sleep=self.sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self._start_once(attempt.retry_state.attempt_number)

    def _start_once(self, number: int) -> None:
        import hivemind

        clean_stale_p2pd(self.identity_path)
        say(f"DHT start attempt {number}/{self.attempts} (initial peers: {len(self.initial_peers)})")
        validator = self._signer()
        kwargs: dict[str, Any] = {"host_maddrs": self.host_maddrs, "identity_path": str(self.identity_path),
                                  "startup_timeout": self.startup_timeout, "record_validators": [validator]}
        if self.initial_peers:
            kwargs["initial_peers"] = self.initial_peers
        if self.announce_maddrs:
            kwargs["announce_maddrs"] = self.announce_maddrs
        dht = hivemind.DHT(start=False, **kwargs)
        try:
            dht.run_in_background(await_ready=True, timeout=self.startup_timeout + 15)
        except BaseException:
            _shutdown_quietly(dht)
            raise
        self._dht = dht
        self._sockets = _own_p2pd_sockets(self.identity_path)
        self.starts += 1
        say(f"DHT started: peer {dht.peer_id}, listening on {' '.join(self.visible_maddrs())}")

    def _signer(self) -> Any:
        """hivemind's validator over the swarm.pem key (created first if absent, in the
        format p2pd reads). RSAPrivateKey has no constructor taking a key; its pickle
        state (the DER bytes) is the supported way in, as across hivemind's processes."""
        from hivemind.dht.crypto import RSASignatureValidator
        from hivemind.utils.crypto import RSAPrivateKey

        self._own_id = load_or_create(self.identity_path).peer_id
        der = load_private_key(self.identity_path).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        key = RSAPrivateKey.__new__(RSAPrivateKey)
        key.__setstate__({"_private_key": der})
        validator = RSASignatureValidator(key)
        self._owner = owner_subkey(key.get_public_key().to_bytes())
        return validator

    def _before_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        say(f"DHT start attempt {state.attempt_number}/{self.attempts} failed "
            f"({_describe(exc)}); retrying in {wait:.1f}s")

    def reconnect(self) -> None:
        """Shut down and re-create the DHT with the same identity; the model is untouched."""
        say("Reconnecting DHT in place (same identity)")
        self.shutdown()
        self.start()
        say("DHT reconnected")

    def shutdown(self) -> None:
        dht, self._dht = self._dht, None
        if dht is not None:
            _shutdown_quietly(dht)
        clean_stale_p2pd(self.identity_path)
        sockets, self._sockets = self._sockets, []
        _remove_dead_sockets(sockets)

    @property
    def alive(self) -> bool:
        return self._dht is not None and bool(self._dht.is_alive())

    @property
    def peer_id(self) -> str:
        return "" if self._dht is None else str(self._dht.peer_id)

    def visible_maddrs(self) -> list[str]:
        if self._dht is None:
            return []
        return [str(a) for a in self._dht.get_visible_maddrs()]

    def visible_peers(self) -> int:
        """Peers p2pd is connected to; 0 when the DHT is down or does not answer in time."""
        if not self.alive:
            return 0
        try:
            return int(self._dht.run_coroutine(_count_peers, return_future=True).result(timeout=REQUEST_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - a sick DHT reads as "no peers", never a crash
            log.warning("dht_peer_count_failed", error=type(exc).__name__)
            return 0

    # ---- Board -----------------------------------------------------------------------

    def put(self, key: str, subkey: str, value: bytes, ttl: float) -> bool:
        """Store under our signed owner subkey; `subkey` must be our own peer id (we can
        sign only for ourselves)."""
        if not self.alive:
            return False
        if is_bare_round_key(key):
            # genrl 0.3 reads these keys without a validator: a signed value there makes
            # its DHT.get hang forever (trainer.genrl_compat). Plain records go via put_plain.
            log.warning("dht_store_refused", key=key, reason="never sign under a bare numeric key")
            return False
        if subkey != self._own_id:
            log.warning("dht_store_refused", key=key, reason="subkey is not our peer id")
            return False
        from hivemind.utils import get_dht_time

        fut = self._dht.store(key, value, get_dht_time() + ttl, subkey=self._owner, return_future=True)
        try:
            return bool(fut.result(timeout=REQUEST_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - store failures are reported, not fatal
            log.warning("dht_store_failed", key=key, error=type(exc).__name__)
            return False

    def get(self, key: str, timeout: float) -> dict[str, bytes]:
        """{signer peer id: value}; hivemind has already refused badly signed records,
        records without an owner subkey are dropped here."""
        if not self.alive:
            return {}
        fut = self._dht.get(key, latest=True, return_future=True)
        try:
            found = fut.result(timeout=max(0.1, timeout))
        except Exception as exc:  # noqa: BLE001 - a failed read is an empty read (W14)
            log.warning("dht_get_failed", key=key, error=type(exc).__name__)
            return {}
        value = getattr(found, "value", None)
        if not isinstance(value, dict):
            return {}
        out: dict[str, bytes] = {}
        for sub, item in value.items():
            raw = getattr(item, "value", None)
            signer = signer_peer_id(sub) if isinstance(sub, str) else None
            if signer is None:
                self._report_unsigned(key, sub)
            elif isinstance(raw, bytes):
                out[signer] = raw
        return out

    # ---- PlainBoard (the genrl-0.3 lane: unsigned records, plain peer-id subkeys) ----

    def put_plain(self, key: str, subkey: str, value: bytes, ttl: float) -> bool:
        """Store unsigned under `subkey` (our plain peer id). The validator signs only a
        record whose key or subkey holds our owner marker, so this one stays unsigned."""
        if not self.alive or subkey != self._own_id or "[owner:" in key:
            return False
        from hivemind.utils import get_dht_time

        fut = self._dht.store(key, value, get_dht_time() + ttl, subkey=subkey, return_future=True)
        try:
            return bool(fut.result(timeout=REQUEST_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - store failures are reported, not fatal
            log.warning("dht_store_failed", key=key, error=type(exc).__name__)
            return False

    def get_plain(self, key: str, timeout: float) -> dict[str, bytes]:
        """{plain subkey: value}; owner-marked (signed) subkeys are not genrl's and are left out."""
        if not self.alive:
            return {}
        fut = self._dht.get(key, latest=True, return_future=True)
        try:
            found = fut.result(timeout=max(0.1, min(REQUEST_TIMEOUT, timeout)))
        except Exception as exc:  # noqa: BLE001 - a failed read is an empty read (W14)
            log.warning("dht_get_failed", key=key, error=type(exc).__name__)
            return {}
        value = getattr(found, "value", None)
        if not isinstance(value, dict):
            return {}
        return {sub: raw for sub, item in value.items()
                if isinstance(sub, str) and signer_peer_id(sub) is None and isinstance(raw := getattr(item, "value", None), bytes)}

    def _report_unsigned(self, key: str, subkey: object) -> None:
        """One line per bad subkey, not one per gather poll. The subkey is named by a
        digest: its text is the sender's, and words such as "P2PDaemonError" on our
        stdout would make swarmd's classifier restart this node."""
        self.unsigned_dropped += 1
        text = repr(subkey)
        label = f"#{hashlib.sha256(text.encode()).hexdigest()[:12]}, {len(text)} chars"
        if len(self._reported) > 1024:
            self._reported.clear()
        if label not in self._reported:
            self._reported.add(label)
            say(f"dropped unsigned record under {key} (subkey {label}): no owner key")


# The rollout exchange over this DHT is `trainer.exchange.BoardExchange` (one
# implementation, shared with the in-memory LocalExchange); the old name stays.
DhtExchange = BoardExchange


# ---- helpers ------------------------------------------------------------------------


def _retryable(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name in {"P2PDaemonError", "TimeoutError", "P2PHandlerError", "ControlFailure"} or isinstance(
        exc, TimeoutError | OSError | ConnectionError
    )


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown"
    text = str(exc)
    if "failed to start in" in text:
        return "p2pd start-up timed out"
    if "already taken" in text:
        return "identity still held by an old p2pd"
    if "bootstrap" in text:
        return "bootstrap peers unreachable"
    return f"{type(exc).__name__.replace('Daemon', '')}"


def _shutdown_quietly(dht: Any) -> None:
    with contextlib.suppress(Exception):
        dht.shutdown()
    with contextlib.suppress(Exception):
        dht.join(timeout=10)


def clean_stale_p2pd(identity_path: Path, timeout: float = 5.0) -> list[int]:
    """End p2pd daemons left over by a dead incarnation of THIS node, and their sockets.

    Identified by `-id=<our identity path>` (a key file is never shared, §2.1), and
    stale when not our own descendant and no live trainer above it (its DHT parent was
    orphaned by a kill -9). Another live trainer misconfigured with our key is left
    alone (hivemind then reports "identity taken", which is the right error).
    """
    flag = f"-id={identity_path}"
    me = os.getpid()
    victims: list[psutil.Process] = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if not is_p2pd(proc.info.get("name") or "", cmd) or flag not in cmd:
            continue
        try:
            ancestors = proc.parents()
        except psutil.Error:
            continue
        if any(p.pid == me for p in ancestors):
            continue  # ours and alive
        if _owned_by_live_trainer(ancestors):
            continue
        victims.append(proc)
        parent = ancestors[0] if ancestors else None
        if parent is not None and parent.pid != 1 and _is_orphaned_dht(parent):
            victims.append(parent)
    if not victims:
        return []
    sockets = [path for v in victims for path in listen_sockets(_cmdline(v))]
    end_processes(victims, timeout, timeout)
    remove_stale_sockets(sockets)
    pids = [v.pid for v in victims]
    say(f"cleaned stale p2pd holding our identity: pids {pids}")
    return pids


def _own_p2pd_sockets(identity_path: Path) -> list[Path]:
    """Sockets of the p2pd our DHT process just started (found among our descendants)."""
    flag = f"-id={identity_path}"
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    return [path for p in procs if flag in (cmd := _cmdline(p)) for path in listen_sockets(cmd)]


def _remove_dead_sockets(paths: Sequence[Path]) -> None:
    """Remove the sockets of our p2pd once it is gone. hivemind removes them on a clean
    shutdown only: a p2pd that was killed leaves its socket in /tmp for good."""
    removed = remove_stale_sockets(paths)
    if removed:
        say(f"removed sockets of our dead p2pd: {' '.join(map(str, removed))}")


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _is_orphaned_dht(proc: psutil.Process) -> bool:
    """The DHT child hivemind forked from a trainer that has since died."""
    try:
        parent = proc.parent()
    except psutil.Error:
        return False
    return parent is None or parent.pid == 1 or "trainer" not in " ".join(_cmdline(parent))


def _owned_by_live_trainer(ancestors: list[psutil.Process]) -> bool:
    # p2pd <- DHT child (a fork: same cmdline as the trainer) <- the trainer itself.
    if len(ancestors) < 2:
        return False
    dht_child, trainer = ancestors[0], ancestors[1]
    return trainer.pid != 1 and "trainer" in " ".join(_cmdline(trainer)) and not _is_orphaned_dht(dht_child)


def read_peers_file(path: Path, own_peer_id: str) -> list[str]:
    """Multiaddrs from `path` (one a line, # comments), minus our own (a restarted first
    peer must not bootstrap from its own dead address)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out = []
    for raw in lines:
        line = raw.strip()
        if line and not line.startswith("#") and line.startswith("/") and not line.endswith(f"/p2p/{own_peer_id}"):
            out.append(line)
    return out


def write_peers_file(path: Path, maddrs: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(f"{m}\n" for m in maddrs), encoding="utf-8")
    tmp.replace(path)

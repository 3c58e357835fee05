"""The chain beside the upstream lane: a real anvil running our SwarmCoordinator, read
by the second node's swarmd (`[chain]` in its monitor.toml).

genrl 0.3.0's hivemind launcher and `BaseGameManager` never call a chain (nothing in
genrl calls `genrl.blockchain.coordinator`), so the node trains on while the chain is
down. What is under test is swarmd: it reports the outage (`chain_rpc_down`, and
`swarmd status` says the RPC is down), it does not restart the node for it (a restart
cannot bring an RPC back), it sees the chain again (`chain_rpc_up`), and a chain that
comes back reset (round 0 again) is reported as `chain_round_backwards` with both
rounds as evidence.

Two ways back, as an operator would meet them: the RPC was down and the chain kept its
state (anvil stopped and started again on the same port with `--state`: a provider
outage, the usual case), or the chain itself was reset (anvil started fresh, the
contract redeployed at the same address: same deployer, same nonce).
"""

from __future__ import annotations

import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from eth_account import Account

from swarmd.control import request
from swarmd.errors import SwarmdError
from tests.upstream.supervised import Measured, SupervisedNode, event_epoch
from trainer.coordinator.deploy import deploy
from trainer.coordinator.localchain import ANVIL, DEFAULT_CHAIN_ID, DEV_KEY, Anvil
from trainer.coordinator.rpc import ChainClient

CHAIN_ROUND = 3  # the round the chain has reached before the fault


class LaneChain:
    """anvil on a fixed port with its state in `root`, the contract deployed, and the
    round advanced to `CHAIN_ROUND` by the owner (who holds the stage-manager role)."""

    def __init__(self, root: Path) -> None:
        if not ANVIL.exists():
            raise FileNotFoundError(f"{ANVIL} missing: run bash scripts/setup.sh (needs npm)")
        self.state = root / "anvil-state.json"
        self.anvil = Anvil(state_path=self.state, log_path=root / "anvil.log")
        self._owner = Account.from_key(DEV_KEY)
        self.anvil.start()
        self.address, _ = deploy(self.anvil.url, self._owner)
        self.advance_to(CHAIN_ROUND)

    @property
    def url(self) -> str:
        return self.anvil.url

    def toml(self) -> str:
        """The `[chain]` section for the watching swarmd: read every second."""
        return f'[chain]\nrpc_url = "{self.url}"\ncontract = "{self.address}"\ninterval = "1s"\ntimeout = "1s"\n'

    def advance_to(self, rnd: int) -> None:
        client = ChainClient(self.url, self.address, account=self._owner, chain_id=DEFAULT_CHAIN_ID)
        while client.call("currentRound") < rnd:
            client.transact("updateStageAndRound")

    def down(self) -> float:
        """Stop anvil (it writes its state as it exits); the wall time it went down."""
        t = time.time()
        self.anvil.stop()
        return t

    def up(self, keep_state: bool) -> float:
        """anvil back on the same port: with its state, or reset (fresh chain, the
        contract redeployed at the same address, round 0). Returns the wall time its
        restart began (the probe may see it answer before `start` returns)."""
        if not keep_state:
            self.state.unlink(missing_ok=True)
        t = time.time()
        self.anvil.start()
        if not keep_state:
            address, _ = deploy(self.url, self._owner)
            assert address == self.address, f"redeployed at {address}, not {self.address}"
        return t

    def close(self) -> None:
        self.anvil.stop()


def _chain_status(node: SupervisedNode) -> dict[str, Any]:
    with suppress(SwarmdError, OSError):
        reply = request(node.node.root / "state" / "swarmd.sock", "status")
        chain: dict[str, Any] = reply.get("status", {}).get("chain") or {}
        return chain
    return {}


def _first(node: SupervisedNode, name: str, after: float) -> dict[str, Any] | None:
    return next((e for e in node.events() if e.get("event") == name and event_epoch(e) >= after), None)


def measure_chain_outage(node: SupervisedNode, chain: LaneChain, down_s: float, keep_state: bool,
                         timeout: float = 60.0) -> Measured:
    """anvil down for `down_s`, then back (kept or reset). detect_s: down -> the
    `chain_rpc_down` event; recover_s: anvil's restart begun -> `chain_rpc_up` (the
    probe sees the chain again; anvil's own start included). Audited: `swarmd status` said the RPC was down during the outage, the node
    was not restarted for the outage, and a reset chain was reported going backwards."""
    name = f"chain_rpc_down_{down_s:g}s" + ("" if keep_state else "_reset")
    problems: list[str] = []
    t0 = chain.down()
    deadline = time.monotonic() + down_s
    status_down = False
    while time.monotonic() < deadline:
        status_down = status_down or _chain_status(node).get("rpc_ok") is False
        time.sleep(0.5)
    restarts_in_outage = [e for e in node.events() if e.get("event") == "child_started" and event_epoch(e) > t0]
    t_up = chain.up(keep_state)
    deadline = time.monotonic() + timeout
    down_ev = up_ev = back_ev = None
    while time.monotonic() < deadline:
        down_ev = _first(node, "chain_rpc_down", t0)
        up_ev = _first(node, "chain_rpc_up", t_up)
        back_ev = _first(node, "chain_round_backwards", t_up)
        if up_ev is not None and (keep_state or back_ev is not None):
            break
        time.sleep(0.25)
    if down_ev is None:
        problems.append("no chain_rpc_down event")
    if not status_down:
        problems.append("swarmd status never said the RPC was down")
    if restarts_in_outage:
        problems.append(f"node restarted {len(restarts_in_outage)}x for the outage")
    if up_ev is None:
        problems.append(f"no chain_rpc_up within {timeout:.0f}s of anvil's return")
    if not keep_state and back_ev is None:
        problems.append("reset chain not reported as chain_round_backwards")
    if keep_state and back_ev is not None:
        problems.append(f"chain kept its state but a round went backwards: {back_ev.get('evidence')}")
    detail = f"(down for {t_up - t0:.0f}s"
    if back_ev is not None:
        detail += f"; backwards reported +{event_epoch(back_ev) - t_up:.1f}s after anvil's return: "
        detail += str(back_ev.get("evidence", ""))[:70]
        acted = _first(node, "decision", t_up)
        if acted is not None:
            detail += f"; then {acted.get('action')} ({acted.get('reason')})"
    detail += ")"
    up_s = None if up_ev is None else event_epoch(up_ev) - t_up
    return Measured(name, "b", down_ev is not None, None if down_ev is None else event_epoch(down_ev) - t0,
                    up_s, problems=problems, detail=detail)

"""The local demo's chain: anvil, our contract, the demo peers linked, and a stage manager.

`python -m trainer.coordinator.demo_chain` (scripts/demo.sh runs it) starts anvil on a
fixed loopback port, deploys SwarmCoordinator from anvil's first development account
(fresh chain, nonces 0 and 1: the proxy always lands at the address trainer.toml names),
creates or reuses each demo peer's swarm.pem and chain key exactly where the trainer
will look for them, funds the keys, registers each peer id with its own key, lets the
first peer publish bootnodes, then advances the stage every `--stage-seconds` until
stopped. SIGTERM/SIGINT stop anvil with it: the chain lives exactly as long as the demo.

A stage manager for a real network is the same loop (`run_stage_manager`) with the
stage-manager key; only the interval differs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import structlog
from eth_account import Account

from trainer.coordinator.deploy import deploy
from trainer.coordinator.keyfile import load_or_create as load_key
from trainer.coordinator.localchain import DEFAULT_CHAIN_ID, DEV_KEY, Anvil
from trainer.coordinator.rpc import ChainClient, RevertError, TransportError

log = structlog.get_logger(__name__)
DEMO_PORT = 18545


def run_stage_manager(client: ChainClient, every: float, stop: threading.Event) -> None:
    """Advance (round, stage) every `every` seconds; a failed advance is logged and retried next tick."""
    while not stop.wait(every):
        try:
            receipt = client.transact("updateStageAndRound")
            rnd, stage = client.round_and_stage()
            log.info("stage_advanced", round=rnd, stage=stage, block=receipt["blockNumber"])
        except (TransportError, RevertError) as exc:
            log.warning("stage_advance_failed", error=str(exc))


def link_peer(anvil: Anvil, contract: str, state_dir: Path) -> str:
    """Create (or reuse) the peer's identity and chain key where the trainer reads them,
    fund the key, and register the peer id with it. Returns the peer id."""
    from trainer.identity import load_or_create as load_identity

    ident = load_identity(state_dir / "swarm.pem")
    account = load_key(state_dir / "chain.key")
    anvil.fund(account.address)
    peer = ChainClient(anvil.url, contract, account=account, chain_id=anvil.chain_id)
    try:
        peer.transact("registerPeer", ident.peer_id)
    except RevertError as exc:
        if exc.error != "PeerIdAlreadyRegistered":
            raise
    return ident.peer_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.coordinator.demo_chain", description=__doc__)
    parser.add_argument("--port", type=int, default=DEMO_PORT)
    parser.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID)
    parser.add_argument("--stage-seconds", type=float, default=10.0)
    parser.add_argument("--peer-dir", type=Path, action="append", default=[],
                        help="a demo peer's state_dir (swarm.pem, chain.key); repeatable; the first is the bootnode")
    parser.add_argument("--log", type=Path, default=None, help="anvil's own output (default: discarded)")
    parser.add_argument("--ready-file", type=Path, default=None, help="written with the contract address when up")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with Anvil(chain_id=args.chain_id, port=args.port, log_path=args.log) as anvil:
        owner = Account.from_key(DEV_KEY)
        contract, _ = deploy(anvil.url, owner, args.chain_id)
        manager = ChainClient(anvil.url, contract, account=owner, chain_id=args.chain_id)
        for i, state_dir in enumerate(args.peer_dir):
            peer_id = link_peer(anvil, contract, state_dir)
            if i == 0:
                address = load_key(state_dir / "chain.key").address
                manager.transact("grantRole", manager.call("BOOTNODE_MANAGER_ROLE"), address)
            log.info("demo_peer_registered", peer_id=peer_id, state_dir=str(state_dir))
        sys.stdout.write(f"demo chain: anvil at {anvil.url} (chain {args.chain_id}), SwarmCoordinator at {contract}\n")
        sys.stdout.flush()
        if args.ready_file is not None:
            args.ready_file.parent.mkdir(parents=True, exist_ok=True)
            args.ready_file.write_text(contract + "\n", encoding="utf-8")
        try:
            run_stage_manager(manager, args.stage_seconds, stop)
        finally:
            if args.ready_file is not None:
                args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

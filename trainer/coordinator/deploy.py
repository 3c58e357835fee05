"""Deploy SwarmCoordinator behind an ERC1967 proxy and hand out roles.

`python -m trainer.coordinator.deploy --rpc URL --key-file F [--chain-id N]` deploys the
committed bytecode (implementation, then the proxy whose constructor calls
`initialize(owner)`), and prints the proxy address: the one address nodes are given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from trainer.coordinator.abi import abi, bytecode
from trainer.coordinator.localchain import DEFAULT_CHAIN_ID


def _create(w3: Web3, account: LocalAccount, chain_id: int, stem: str, *args: object) -> str:
    factory = w3.eth.contract(abi=abi(stem), bytecode=bytecode(stem))
    tx = factory.constructor(*args).build_transaction({
        "from": account.address, "chainId": chain_id,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
    })
    tx_hash = w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise RuntimeError(f"deploying {stem} failed (status {receipt['status']})")
    return str(receipt["contractAddress"])


def deploy(url: str, owner: LocalAccount, chain_id: int = DEFAULT_CHAIN_ID) -> tuple[str, str]:
    """(proxy address, implementation address); the owner holds all three roles."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    impl = _create(w3, owner, chain_id, "SwarmCoordinator")
    init = w3.eth.contract(abi=abi()).encode_abi("initialize", [owner.address])
    proxy = _create(w3, owner, chain_id, "ERC1967Proxy", impl, init)
    return proxy, impl


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.coordinator.deploy", description=__doc__)
    parser.add_argument("--rpc", required=True)
    parser.add_argument("--key-file", type=Path, required=True, help="hex private key of the owner")
    parser.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID)
    args = parser.parse_args(argv)
    owner = Account.from_key(args.key_file.read_text(encoding="ascii").strip())
    proxy, _ = deploy(args.rpc, owner, args.chain_id)
    sys.stdout.write(proxy + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

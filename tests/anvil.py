"""A real local chain for swarmd's chain tests: anvil (scripts/chain-tools.sh installs it
into tools/node_modules) running our SwarmCoordinator behind its proxy, deployed and
advanced with the chain helpers of `trainer.coordinator`, as the demo chain does.

`stop()` + `start()` on the same port is a chain reset: a fresh chain, the contract
redeployed at the same address (same deployer, same nonce), round 0 again.
"""

from __future__ import annotations

import pytest
from eth_account import Account

from trainer.coordinator.deploy import deploy
from trainer.coordinator.localchain import ANVIL, DEFAULT_CHAIN_ID, DEV_KEY, Anvil
from trainer.coordinator.rpc import ChainClient

CHAIN_ID = DEFAULT_CHAIN_ID


class Chain:
    def __init__(self) -> None:
        if not ANVIL.exists():
            pytest.skip(f"{ANVIL} missing: run bash scripts/setup.sh (needs npm)")
        self._anvil = Anvil()
        self.url = self._anvil.url
        self.port = self._anvil.port
        self.address = ""
        self._owner = Account.from_key(DEV_KEY)
        self.start()

    def start(self) -> None:
        self._anvil.start()
        self.address, _ = deploy(self.url, self._owner)

    def stop(self) -> None:
        self._anvil.stop()

    def advance_to(self, rnd: int) -> None:
        """The stage manager's job: with one stage per round each call is a new round."""
        client = ChainClient(self.url, self.address, account=self._owner, chain_id=CHAIN_ID)
        while client.call("currentRound") < rnd:
            client.transact("updateStageAndRound")

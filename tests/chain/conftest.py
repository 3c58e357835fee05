"""A real local chain for the chain tests: one anvil per module on a free loopback port
(chain id 685685), a fresh SwarmCoordinator proxy per test, funded accounts on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from trainer.coordinator.deploy import deploy
from trainer.coordinator.localchain import ANVIL, DEFAULT_CHAIN_ID, DEV_KEY, Anvil
from trainer.coordinator.rpc import ChainClient

needs_anvil = pytest.mark.skipif(not ANVIL.exists(), reason=f"{ANVIL} missing: run bash scripts/setup.sh (needs npm)")

@dataclass
class Deployed:
    anvil: Anvil
    address: str
    owner: ChainClient

    def client(self, account: LocalAccount | None = None, **kw: object) -> ChainClient:
        return ChainClient(self.anvil.url, self.address, account=account, chain_id=DEFAULT_CHAIN_ID, **kw)  # type: ignore[arg-type]

    def funded(self) -> tuple[LocalAccount, ChainClient]:
        account = Account.create()
        self.anvil.fund(account.address)
        return account, self.client(account)

@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    if not ANVIL.exists():
        pytest.skip(f"{ANVIL} missing: run bash scripts/setup.sh (needs npm)")
    with Anvil() as chain:
        yield chain

@pytest.fixture
def deployed(anvil: Anvil) -> Deployed:
    owner = Account.from_key(DEV_KEY)
    proxy, _ = deploy(anvil.url, owner)
    return Deployed(anvil, proxy, ChainClient(anvil.url, proxy, account=owner, chain_id=DEFAULT_CHAIN_ID))

@pytest.fixture
def new_party(deployed: Deployed) -> Callable[[], tuple[LocalAccount, ChainClient]]:
    return deployed.funded

"""trainer.toml's chain keys: off-chain by default, the key file under state_dir, and one
line naming the key for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.errors import ConfigError
from trainer.config import parse

BASE = Path("/srv/node")
GOOD = 'chain_rpc_url = "http://127.0.0.1:8545"\nchain_contract = "0x' + "ab" * 20 + '"\n'


def test_no_chain_settings_means_the_offchain_clock() -> None:
    cfg = parse("", "trainer.toml", BASE)
    assert cfg.chain_rpc_url == ""
    assert cfg.chain_id == 685685
    assert cfg.chain_key_path == BASE / "state" / "chain.key"


def test_key_path_follows_state_dir_and_can_be_set() -> None:
    assert parse('state_dir = "s"', "t", BASE).chain_key_path == BASE / "s" / "chain.key"
    assert parse('chain_key_path = "/keys/k"', "t", BASE).chain_key_path == Path("/keys/k")


@pytest.mark.parametrize(("text", "key"), [
    ('chain_rpc_url = "127.0.0.1:8545"\nchain_contract = "0x' + "ab" * 20 + '"', "chain_rpc_url"),
    ('chain_rpc_url = "http://127.0.0.1:8545"', "chain_contract"),
    ('chain_rpc_url = "http://127.0.0.1:8545"\nchain_contract = "0x123"', "chain_contract"),
    (GOOD + "chain_id = 0", "chain_id"),
    (GOOD + "chain_poll_seconds = 0", "chain_poll_seconds"),
    (GOOD + "chain_queue_max = 0", "chain_queue_max"),
])
def test_bad_chain_setting_is_one_line_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(text, "trainer.toml", BASE)
    message = str(info.value)
    assert f"[{key}]" in message
    assert "fix:" in message
    assert "\n" not in message

"""The real daemon and a node that loops waiting for its API key: state operator_needed
with an alert saying what to do, and no restart however long it waits."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon, write_config

pytestmark = pytest.mark.e2e

WAITER = """
import time
print("Please login to create an Ethereum Server Wallet", flush=True)
while True:
    print("Waiting for API key to be activated...", flush=True)
    time.sleep(0.2)
"""


def test_api_key_loop_reaches_operator_needed_without_a_restart(tmp_path: Path) -> None:
    script = tmp_path / "waiter.py"
    script.write_text(WAITER)
    d = Daemon(tmp_path, write_config(tmp_path, [sys.executable, str(script)], health="stall_after = 2\nstartup_grace = 0"))
    try:
        d.state("operator_needed")
        alert = d.wait_event(lambda e: e.get("event") == "alert" and e.get("reason") == "operator_needed")
        assert "log in" in alert["evidence"]
        time.sleep(4.0)  # twice stall_after: a stalled node would have been restarted by now
        events = d.events()
        assert sum(e.get("event") == "child_started" for e in events) == 1
        assert not any(e.get("event") == "decision" and e.get("action", "").startswith("restart") for e in events)
    finally:
        d.close()

"""The real daemon and a node that asks a question with no newline and waits for an
answer that never comes: it is seen live, the state becomes operator_needed with an
alert naming the fix, and the node is not restarted."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.e2e.daemon import Daemon, write_config

pytestmark = pytest.mark.e2e

# Stands in for bash `read -p` on a terminal: the question without a newline, then a
# block on an answer that never comes (swarmd's own stdin would give EOF at once).
ASKER = """
import sys, time
print("Starting the node", flush=True)
sys.stdout.write(">> Would you like to push models you train in the RL swarm to the Hugging Face Hub? [y/N] ")
sys.stdout.flush()
time.sleep(600)
"""


def test_unanswered_prompt_without_newline_reaches_operator_needed_without_a_restart(tmp_path: Path) -> None:
    script = tmp_path / "asker.py"
    script.write_text(ASKER)
    d = Daemon(tmp_path, write_config(tmp_path, [sys.executable, str(script)], health="stall_after = 2\nstartup_grace = 0"))
    try:
        d.state("operator_needed")
        alert = d.wait_event(lambda e: e.get("event") == "alert" and e.get("reason") == "operator_needed")
        assert "[y/N]" in alert["evidence"]
        assert "stdin_lines" in alert["evidence"]
        time.sleep(4.0)  # twice stall_after: a stalled node would have been restarted by now
        events = d.events()
        assert sum(e.get("event") == "child_started" for e in events) == 1
        assert not any(e.get("event") == "decision" and e.get("action", "").startswith("restart") for e in events)
    finally:
        d.close()

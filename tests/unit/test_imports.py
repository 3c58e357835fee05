"""`import swarmd` must stay cheap: the supervisor never drags in the trainer's stack."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_cli_loads_no_ml_or_chain_library() -> None:
    """torch, transformers, trl, hivemind, web3 and the trainer stay out of swarmd."""
    code = (
        "import sys, swarmd.cli, swarmd.supervisor, swarmd.web;"
        "bad = [m for m in ('torch', 'transformers', 'trl', 'hivemind', 'web3', 'trainer') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""

"""The environment-level shim that lets unmodified genrl 0.3.0 import PyPI's hivemind
1.1.12 (scripts/genrl_hivemind_shim.py, installed into the venv by scripts/setup.sh)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = [pytest.mark.upstream]


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_interpreter_start_loads_neither_hivemind_nor_torch() -> None:
    """The .pth only installs a finder: a plain `python` pays nothing for the shim."""
    seen = _python(
        "import sys; from genrl_hivemind_shim import HivemindFinder;"
        "print(any(isinstance(f, HivemindFinder) for f in sys.meta_path),"
        " 'hivemind' in sys.modules, 'torch' in sys.modules)"
    )
    assert seen == "True False False"


def test_genrl_backend_imports_get_dht_time_from_top_level_hivemind() -> None:
    """genrl's `from hivemind import DHT, get_dht_time` works, and the name is
    hivemind.utils' own function (added, not re-implemented)."""
    seen = _python(
        "import hivemind, hivemind.utils;"
        "from genrl.communication.hivemind.hivemind_backend import HivemindBackend;"
        "print(hivemind.get_dht_time is hivemind.utils.get_dht_time, hivemind.PeerID is hivemind.p2p.PeerID)"
    )
    assert seen == "True True"


def test_names_hivemind_defines_itself_are_never_replaced() -> None:
    """hivemind's own top-level `DHT` stays the DHT class, not a same-named utility."""
    seen = _python(
        "import hivemind, hivemind.dht, genrl_hivemind_shim;"
        "added = genrl_hivemind_shim.add_missing_names(hivemind);"
        "print(hivemind.DHT is hivemind.dht.DHT, added)"
    )
    assert seen == "True []"

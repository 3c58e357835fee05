"""The status page in a real headless Chromium: it renders, polls and follows a restart.

The snapshot is scripted per call (the page render is call 0, each poll the next), so
the test needs no sleeps: Chromium's virtual time runs the page's poll timer.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmd.metrics import Metrics
from swarmd.web import WebServer
from tests.e2e import chromium

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not chromium.available(), reason=chromium.ABSENT_REASON),
]

EVIDENCE = "hivemind.p2p.P2PDaemonError: <script>document.title='pwned'</script>"
T0 = 1_700_000_000.0
WINDOW = "1200,900"


def snapshot(state: str, restarts: int, **over: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "state": state,
        "pid": 4242 + restarts,
        "uptime_s": 5400.0,
        "restarts": restarts,
        "restarts_by_reason": {"p2pd_error": restarts} if restarts else {},
        "last_decision": {
            "action": "restart" if restarts else "none",
            "reason": "p2pd_error" if restarts else "",
            "evidence": EVIDENCE if restarts else "",
            "at": T0 + 3000,
        },
        "round": 41,
        "stage": 2,
        "peers": 6,
        "last_progress_age_s": 8.0,
        "progressing": state == "running",
        "reward_history": [
            [r, 0.2 + 0.015 * r + 0.05 * (r % 3)] for r in range(12, 42)
        ],
        "restart_history": [[T0 + 3000, "p2pd_error"]] * restarts,
        "peer_id": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        "animal": "quick agile otter",
        "config_path": "/etc/swarmd/monitor.toml",
        "version": "0.1.0",
    }
    snap.update(over)
    return snap


class Script:
    """Returns the next scripted snapshot on each call, then repeats the last."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self._steps = steps
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            snap = self._steps[min(self.calls, len(self._steps) - 1)]
            self.calls += 1
            return snap


@contextlib.contextmanager
def serve(snap_fn: Script) -> Iterator[str]:
    server = WebServer("127.0.0.1", 0, snap_fn, Metrics())
    server.start()
    host, port = server.address
    try:
        yield f"http://{host}:{port}/"
    finally:
        server.stop()


@pytest.fixture(name="restart_url")
def _restart_url() -> Iterator[str]:
    # call 0: the page itself; 1: first poll (running); 2: backoff after a restart
    # decision; 3+: running again with one restart counted.
    with serve(
        Script(
            [
                snapshot("running", 0),
                snapshot("running", 0),
                snapshot("backoff", 1, pid=None),
                snapshot("running", 1),
            ]
        )
    ) as url:
        yield url


def test_page_follows_running_backoff_running(restart_url: str) -> None:
    """The page shows running, then the backoff after a restart, then running with one
    restart counted, and renders the evidence line as text, not markup."""
    dom = chromium.run(restart_url, "--dump-dom", budget_ms=8000, window_size=WINDOW)
    assert '<span id="state" class="badge state-running">running</span>' in dom, dom
    assert '<div class="value" id="restarts">1</div>' in dom, dom
    assert "running → backoff" in dom, dom
    assert "backoff → running" in dom, dom
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom
    assert "<title>swarmd: running</title>" in dom
    assert "<path" in dom  # the reward chart was drawn


def test_screenshot_reads_well(tmp_path: Path) -> None:
    """A screenshot of a busy node's page is written for a human to look at."""
    busy = snapshot(
        "running",
        37,
        restarts_by_reason={"p2pd_error": 21, "oom": 9, "dht_bootstrap": 5, "stall": 2},
        restart_history=[
            [T0 + i * 900 + (i % 4) * 200, "p2pd_error"] for i in range(37)
        ],
    )
    shot = tmp_path / "status_page.png"
    with serve(Script([busy])) as url:
        chromium.run(url, f"--screenshot={shot}", window_size=WINDOW)
    assert shot.stat().st_size > 10_000
    out = REPO / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, out / "status_page.png")

"""The status server over real HTTP on 127.0.0.1:0."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from swarmd.domain import State
from swarmd.metrics import MAX_REASONS, OTHER_REASON, Metrics
from swarmd.web import MAX_HISTORY, WebServer

pytestmark = pytest.mark.io

EVIL = '<script>alert("x")</script> P2PDaemonError & <img src=x onerror=alert(1)>'


def make_snapshot(**over: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {
        "state": "running",
        "pid": 4242,
        "uptime_s": 3725.0,
        "restarts": 2,
        "restarts_by_reason": {"p2pd_error": 1, "oom": 1},
        "last_decision": {
            "action": "restart",
            "reason": "p2pd_error",
            "evidence": "hivemind.p2p.P2PDaemonError: Daemon failed to start",
            "at": 1_700_000_000.0,
        },
        "round": 12,
        "stage": 1,
        "peers": 5,
        "last_progress_age_s": 12.5,
        "progressing": True,
        "reward_history": [[r, r / 10] for r in range(1, 13)],
        "restart_history": [[1_700_000_000.0, "p2pd_error"], [1_700_000_600.0, "oom"]],
        "peer_id": "QmTestPeer",
        "animal": "quick agile otter",
        "config_path": "/etc/swarmd/monitor.toml",
        "version": "0.1.0",
    }
    snap.update(over)
    return snap


class Holder:
    """A mutable snapshot the test changes between requests, as the supervisor would."""

    def __init__(self, snap: dict[str, Any]) -> None:
        self.snap = snap
        self.fail = False

    def __call__(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("supervisor lock broken")
        return self.snap


@pytest.fixture(name="holder")
def _holder() -> Holder:
    return Holder(make_snapshot())


@pytest.fixture(name="metrics")
def _metrics() -> Metrics:
    return Metrics()


@pytest.fixture(name="base")
def _base(holder: Holder, metrics: Metrics) -> Iterator[str]:
    server = WebServer("127.0.0.1", 0, holder, metrics)
    server.start()
    host, port = server.address
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def get(url: str) -> requests.Response:
    with requests.Session() as s:
        return s.get(url, timeout=5)


def test_index_page_loads_self_contained(base: str) -> None:
    """`/` is an HTML page whose script and stylesheet come from this server, no CDN."""
    r = get(base + "/")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "quick agile otter" in r.text
    assert 'src="/static/app.js"' in r.text
    assert "http://" not in r.text
    assert "https://" not in r.text
    for asset in ("/static/app.js", "/static/style.css"):
        a = get(base + asset)
        assert a.status_code == 200, asset
        assert len(a.content) > 500


def test_api_status_returns_snapshot_json(base: str, holder: Holder) -> None:
    """`/api/status` is the snapshot as JSON, with enums as their values."""
    holder.snap = make_snapshot(state=State.DEGRADED)
    r = get(base + "/api/status")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["state"] == "degraded"
    assert body["restarts_by_reason"] == {"p2pd_error": 1, "oom": 1}
    assert body["last_decision"]["reason"] == "p2pd_error"


def test_nan_reward_becomes_null(base: str, holder: Holder) -> None:
    """A NaN reward is sent as null, because browsers reject NaN in JSON."""
    holder.snap = make_snapshot(reward_history=[[1, 0.5], [2, math.nan]])
    assert get(base + "/api/status").json()["reward_history"] == [[1, 0.5], [2, None]]


def test_health_running_and_progressing_is_200(base: str) -> None:
    """`/health` is 200 when the trainer runs and progresses."""
    r = get(base + "/health")
    assert r.status_code == 200
    assert r.json() == {"healthy": True, "state": "running", "progressing": True}


@pytest.mark.parametrize(
    ("state", "progressing"),
    [
        ("running", False),
        ("backoff", True),
        (State.FATAL, False),
        (State.DEGRADED, True),
    ],
)
def test_health_not_running_or_stalled_is_503(
    base: str, holder: Holder, state: object, progressing: bool
) -> None:
    """`/health` is 503 with a JSON reason unless running AND progressing."""
    holder.snap = make_snapshot(state=state, progressing=progressing)
    r = get(base + "/health")
    assert r.status_code == 503
    assert r.json()["healthy"] is False


def test_metrics_parse_as_prometheus_text(base: str, metrics: Metrics) -> None:
    """`/metrics` is Prometheus text with the swarmd series and their values."""
    metrics.restart("p2pd_error")
    metrics.restart("p2pd_error")
    metrics.restart("oom")
    metrics.set_state(State.BACKOFF)
    metrics.detection_latency(0.2)
    metrics.lines(1000)
    metrics.set_round(7)
    metrics.set_peers(None)
    metrics.set_reward(0.75)
    metrics.set_chain_queue(3)
    r = get(base + "/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.text)
        for s in fam.samples
    }
    assert samples[("swarmd_restarts_total", (("reason", "p2pd_error"),))] == 2
    assert samples[("swarmd_restarts_total", (("reason", "oom"),))] == 1
    assert samples[("swarmd_state", (("state", "backoff"),))] == 1
    assert samples[("swarmd_state", (("state", "running"),))] == 0
    assert samples[("swarmd_detection_latency_seconds_count", ())] == 1
    assert samples[("swarmd_trainer_lines_total", ())] == 1000
    assert samples[("swarmd_round", ())] == 7
    assert math.isnan(samples[("swarmd_peers", ())])
    assert samples[("swarmd_reward", ())] == 0.75
    assert samples[("swarmd_chain_queue_depth", ())] == 3


def test_restart_reasons_are_bounded() -> None:
    """Past MAX_REASONS distinct reasons, new ones are counted as "other"."""
    m = Metrics()
    for i in range(MAX_REASONS + 5):
        m.restart(f"reason-{i}")
    reasons = {
        s.labels["reason"]
        for fam in text_string_to_metric_families(m.render().decode())
        for s in fam.samples
        if s.name == "swarmd_restarts_total"
    }
    assert len(reasons) == MAX_REASONS + 1
    assert OTHER_REASON in reasons


def test_script_in_evidence_is_escaped(base: str, holder: Holder) -> None:
    """A log line carrying markup appears escaped in the page and inert in the JSON."""
    holder.snap = make_snapshot(
        last_decision={
            "action": "restart",
            "reason": EVIL,
            "evidence": EVIL,
            "at": 1.0,
        },
        animal=EVIL,
    )
    page = get(base + "/")
    assert "<script>alert" not in page.text
    assert "<img src=x" not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    api = get(base + "/api/status")
    assert "<" not in api.text
    assert ">" not in api.text
    assert api.json()["last_decision"]["evidence"] == EVIL


def test_ten_thousand_restarts_stay_fast_and_bounded(base: str, holder: Holder) -> None:
    """With 10k restarts in history the JSON carries only the last MAX_HISTORY and
    the page and API still answer quickly."""
    n = 10_000
    holder.snap = make_snapshot(
        restarts=n,
        restart_history=[[1_700_000_000.0 + i, f"r{i % 7}"] for i in range(n)],
        reward_history=[[i, i / n] for i in range(n)],
    )
    t0 = time.monotonic()
    body = get(base + "/api/status").json()
    get(base + "/")
    elapsed = time.monotonic() - t0
    assert len(body["restart_history"]) == MAX_HISTORY
    assert body["restart_history"][-1] == [1_700_000_000.0 + n - 1, "r3"]
    assert len(body["reward_history"]) == MAX_HISTORY
    assert elapsed < 2.0, f"took {elapsed:.2f}s"


def test_unknown_path_is_404(base: str) -> None:
    """Unknown paths answer 404 rather than the page."""
    assert get(base + "/nope").status_code == 404
    assert get(base + "/static/../web.py").status_code == 404


def test_broken_snapshot_is_500_and_server_survives(base: str, holder: Holder) -> None:
    """A snapshot that raises gives a 500 and the next request is served normally."""
    holder.fail = True
    r = get(base + "/api/status")
    assert r.status_code == 500
    assert r.json() == {"error": "snapshot failed"}
    holder.fail = False
    assert get(base + "/api/status").status_code == 200


def test_stop_releases_port(holder: Holder, metrics: Metrics) -> None:
    """After stop() the port is closed and a second stop() is harmless."""
    server = WebServer("127.0.0.1", 0, holder, metrics)
    server.start()
    host, port = server.address
    server.stop()
    server.stop()
    with pytest.raises(requests.ConnectionError):
        get(f"http://{host}:{port}/health")

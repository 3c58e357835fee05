"""End-to-end: the status page, /api/status, /health and /metrics of the real `swarmd run`.

The daemon binds port 0 and logs the URL it got (`web_started url=...` in monitor.log),
so tests never race for a port. Every figure checked here comes from the real
supervisor's snapshot and metrics, not from a scripted one (that is
test_status_page_chromium.py's job).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import chromium
from tests.e2e.daemon import REPO, Daemon, fake, write_config

pytestmark = [pytest.mark.e2e]

BUDGET_MS = 2500  # Chromium virtual time per page load
WEB = "[web]\nenabled = true\nport = 0\n"
P2PD_ERROR = "hivemind.p2p.p2p_daemon_bindings.utils.P2PDaemonError: Daemon failed to start in 15.0 seconds"

# Healthy round lines for `seconds`, then the p2pd startup error, then silence.
PROGRESS_THEN_P2PD_ERROR = (
    "import sys, time\n"
    "end = time.monotonic() + float(sys.argv[1])\n"
    "r = 1\n"
    "while time.monotonic() < end:\n"
    "    print(f'INFO:hivemind_exp.trainer.hivemind_grpo_trainer:tiny elusive porpoise:"
    "\\U0001f41d Joining round: {r} starting at stage: 0', flush=True)\n"
    "    r += 1\n"
    "    time.sleep(0.2)\n"
    f"print({P2PD_ERROR!r}, flush=True)\n"
    "time.sleep(600)\n"
)


def progress() -> list[str]:
    return fake("progress", "--rounds", "100000", "--interval", "0.2")


@pytest.fixture(name="start")
def _start(tmp_path: Path) -> Iterator[Callable[..., tuple[Daemon, str]]]:
    started: list[Daemon] = []

    def start(
        argv: list[str], restart: str = "", edits: Mapping[str, str] | None = None
    ) -> tuple[Daemon, str]:
        cfg = write_config(tmp_path, argv, extra=WEB, restart=restart)
        text = cfg.read_text()
        for old, new in (edits or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        cfg.write_text(text)
        d = Daemon(tmp_path, cfg)
        started.append(d)
        url = d.wait_event(lambda e: e.get("event") == "web_started" and "url" in e)[
            "url"
        ]
        assert url.startswith("http://127.0.0.1:"), url
        assert not url.endswith(":0/"), url
        return d, url

    yield start
    for d in started:
        d.close()


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def poll_json(
    url: str, pred: Callable[[dict[str, object]], bool], timeout: float = 20.0
) -> dict[str, object]:
    """GET `url` until its JSON satisfies `pred`; the failure names the last body."""
    deadline = time.monotonic() + timeout
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        body = get(url).json()
        if pred(body):
            return body
        time.sleep(0.05)
    raise AssertionError(
        f"{url} never matched within {timeout}s; last: {str(body)[:600]}"
    )


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus_client's own parser: {(sample, labels): value}."""
    resp = get(base + "metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def force_restart(d: Daemon) -> None:
    subprocess.run(
        [sys.executable, "-m", "swarmd", "restart", "--config", str(d.config)],
        check=True,
        timeout=30,
        capture_output=True,
    )


def test_page_and_status_api_show_running_with_the_trainer_pid(
    start: Callable[..., tuple[Daemon, str]],
) -> None:
    """`/` renders the state server-side and `/api/status` says running with the real trainer pid."""
    d, url = start(progress())
    pid = d.wait_event(lambda e: e.get("event") == "child_started")["pid"]
    d.state("running")
    status = poll_json(url + "api/status", lambda s: s.get("state") == "running")
    assert status["pid"] == pid
    assert status["supervisor_pid"] == d.proc.pid
    assert status["restarts"] == 0
    page = get(url)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<span id="state" class="badge state-running">running</span>' in page.text
    assert f'<div class="value" id="pid">{pid}</div>' in page.text
    assert get(url + "static/app.js").status_code == 200


def test_health_is_200_while_progressing_and_503_during_backoff(
    start: Callable[..., tuple[Daemon, str]],
) -> None:
    """/health: 200 while running and progressing, 503 in restarting/backoff, 200 again once the new trainer progresses."""
    argv = [sys.executable, "-c", PROGRESS_THEN_P2PD_ERROR, "2.0"]
    d, url = start(
        argv,
        edits={
            "initial_delay = 0.2": "initial_delay = 3",
            "max_delay = 2": "max_delay = 10",
        },
    )
    d.state("running")
    healthy = get(url + "health")
    assert healthy.status_code == 200, healthy.text
    assert healthy.json() == {"healthy": True, "state": "running", "progressing": True}
    d.state("backoff")
    sick = get(url + "health")
    assert sick.status_code == 503, sick.text
    assert sick.json()["state"] in ("restarting", "backoff")
    assert (
        poll_json(url + "api/status", lambda s: s.get("state") == "backoff")["pid"]
        is None
    )
    d.state("running", count=2)
    deadline = time.monotonic() + 5
    while (
        again := get(url + "health")
    ).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert again.status_code == 200, again.text


def test_fatal_state_is_503_and_exported_with_the_restarts_by_reason(
    start: Callable[..., tuple[Daemon, str]],
) -> None:
    """Crash loop with on_fatal = "wait": /health 503 fatal, swarmd_state{fatal} 1, restarts counted by reason."""
    d, url = start(
        fake("exit_code", "1"),
        restart='crash_loop_max = 2\ncrash_loop_window = 60\non_fatal = "wait"',
    )
    d.state("fatal", timeout=30)
    sick = get(url + "health")
    assert sick.status_code == 503
    assert sick.json()["state"] == "fatal"
    status = poll_json(url + "api/status", lambda s: s.get("state") == "fatal")
    m = scrape(url)
    assert m[("swarmd_state", (("state", "fatal"),))] == 1.0
    assert m[("swarmd_state", (("state", "running"),))] == 0.0
    assert status["restarts"] == 2
    assert m[("swarmd_restarts_total", (("reason", "exit_nonzero"),))] == 2.0
    assert d.proc.poll() is None, "on_fatal = wait must keep serving"


def test_metrics_count_restarts_by_reason_and_lines(
    start: Callable[..., tuple[Daemon, str]],
) -> None:
    """/metrics parses; a P2PDaemonError restart and a forced one are counted under their reasons; lines_total grows."""
    argv = [sys.executable, "-c", PROGRESS_THEN_P2PD_ERROR, "1.5"]
    d, url = start(argv)
    d.state("running")
    before = scrape(url)
    assert not [k for k in before if k[0] == "swarmd_restarts_total"]
    assert before[("swarmd_state", (("state", "running"),))] == 1.0
    d.state("running", count=2)  # the error line restarted the trainer
    deadline = time.monotonic() + 5
    while (mid := scrape(url))[("swarmd_trainer_lines_total", ())] <= before[
        ("swarmd_trainer_lines_total", ())
    ]:
        assert time.monotonic() < deadline, "swarmd_trainer_lines_total did not grow"
        time.sleep(0.2)
    assert mid[("swarmd_restarts_total", (("reason", "p2pd_startup_timeout"),))] == 1.0
    assert mid[("swarmd_detection_latency_seconds_count", ())] >= 1.0
    force_restart(d)
    d.state("running", count=3)
    after = scrape(url)
    assert after[("swarmd_restarts_total", (("reason", "control:restart"),))] == 1.0
    assert (
        after[("swarmd_restarts_total", (("reason", "p2pd_startup_timeout"),))] == 1.0
    )
    assert (
        after[("swarmd_trainer_lines_total", ())]
        >= mid[("swarmd_trainer_lines_total", ())]
    )
    assert after[("swarmd_state", (("state", "running"),))] == 1.0


@pytest.mark.skipif(not chromium.available(), reason=chromium.ABSENT_REASON)
def test_page_in_chromium_shows_the_state_and_the_new_restart_count(
    tmp_path: Path, start: Callable[..., tuple[Daemon, str]]
) -> None:
    """In a real browser the page polls the real daemon: running, 0 restarts; after a forced restart, 1 by control:restart."""
    hb = tmp_path / "state" / "trainer.json"
    d, url = start(
        fake(
            "progress",
            "--rounds",
            "100000",
            "--interval",
            "0.2",
            "--heartbeat",
            str(hb),
        )
    )
    d.state("running")
    before = chromium.run(url, "--dump-dom", budget_ms=BUDGET_MS)
    assert '<span id="state" class="badge state-running">running</span>' in before, (
        before[-3000:]
    )
    assert '<div class="value" id="restarts">0</div>' in before
    assert 'id="updated">server-rendered<' not in before, (
        "the page script never polled /api/status"
    )
    force_restart(d)
    d.state("running", count=2)
    poll_json(
        url + "api/status",
        lambda s: s.get("state") == "running" and s.get("restarts") == 1,
    )
    after = chromium.run(url, "--dump-dom", budget_ms=BUDGET_MS)
    assert '<span id="state" class="badge state-running">running</span>' in after, (
        after[-3000:]
    )
    assert '<div class="value" id="restarts">1</div>' in after
    assert "<td>control:restart</td>" in after
    shot = tmp_path / "status_page_daemon.png"
    chromium.run(url, f"--screenshot={shot}", budget_ms=BUDGET_MS)
    assert shot.stat().st_size > 10_000
    out = REPO / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, out / "status_page_daemon.png")


def test_forced_restart_becomes_the_last_decision(
    start: Callable[..., tuple[Daemon, str]],
) -> None:
    """After `swarmd restart`, /api/status's last_decision is that restart with its reason and evidence."""
    d, url = start(progress())
    d.state("running")
    force_restart(d)
    d.state("running", count=2)
    status = poll_json(url + "api/status", lambda s: s.get("restarts") == 1)
    decision = status["last_decision"]
    assert isinstance(decision, dict)
    assert decision.get("action") == "restart"
    assert decision.get("reason") == "control:restart"
    assert decision.get("evidence") == "restart requested over the control socket"

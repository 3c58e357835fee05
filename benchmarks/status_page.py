"""Status page first paint and /metrics scrape time with 10,000 restarts in history.

Issue 6's closing numbers. Driving a real daemon through 10k restarts would take far
longer than this benchmark's minute (each restart is a spawn, a stop and a back-off),
so the history is built in process: the real `WebServer` serving a real `Metrics`
that recorded 10,000 restarts over 30 reasons (each with a detection-latency
observation, as the supervisor records them) and a snapshot shaped like
`Supervisor._publish`'s, holding 10,000 restart_history entries and 500 rounds of
rewards. Everything the request path does (snapshot copy, history cut, JSON, HTML
template, Prometheus exposition) is the production code.

First paint is measured in headless Chromium over the DevTools pipe
(`--remote-debugging-pipe`, stdlib only): the browser's own `first-contentful-paint`
entry, in real time (no virtual time), plus `first_render_ms`, when the page script
has drawn the first /api/status poll (charts included). Median of 10 loads after one
warm-up.

Run: .venv/bin/python benchmarks/status_page.py   (last line: key=value figures)
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from swarmd.domain import State  # noqa: E402
from swarmd.metrics import Metrics  # noqa: E402
from swarmd.web import WebServer  # noqa: E402
from tests.e2e import chromium  # noqa: E402

RESTARTS = 10_000
REASONS = 30
REQUESTS = 50
LOADS = 10

# Set before each navigation; records when the page script replaces the server-rendered
# footer text, i.e. when the first poll has been drawn.
_RENDER_PROBE = """
window.__rendered = new Promise((resolve) => {
  const done = () => {
    const el = document.getElementById("updated");
    if (el && el.textContent !== "server-rendered") { resolve(performance.now()); return true; }
    return false;
  };
  const start = () => {
    if (done()) return;
    new MutationObserver((_, obs) => { if (done()) obs.disconnect(); })
      .observe(document.body, { subtree: true, childList: true, characterData: true });
  };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
});
"""
_FCP = """
new Promise((resolve) => {
  const hit = (list) => {
    for (const e of list) if (e.name === "first-contentful-paint") return e.startTime;
    return null;
  };
  const now = hit(performance.getEntriesByType("paint"));
  if (now !== null) { resolve(now); return; }
  new PerformanceObserver((l, obs) => {
    const t = hit(l.getEntries()); if (t !== null) { obs.disconnect(); resolve(t); }
  }).observe({ type: "paint", buffered: true });
})
"""


def build_history() -> tuple[Metrics, dict[str, Any]]:
    rng = random.Random(6)
    reasons = [f"reason_{i:02d}" for i in range(REASONS)]
    weights = [
        1 / (i + 1) for i in range(REASONS)
    ]  # a few reasons dominate, as in life
    metrics = Metrics()
    t0 = time.time() - 90 * 86400
    history: list[list[Any]] = []
    by_reason: dict[str, int] = {}
    for i in range(RESTARTS):
        reason = rng.choices(reasons, weights)[0]
        metrics.restart(reason)
        metrics.detection_latency(rng.expovariate(1 / 0.002))
        by_reason[reason] = by_reason.get(reason, 0) + 1
        history.append([t0 + i * 777.0, reason])
    metrics.lines(50_000_000)
    metrics.set_state(State.RUNNING)
    metrics.set_round(5000)
    metrics.set_peers(12)
    metrics.set_reward(0.61)
    rewards = [
        [r, round(0.2 + 0.4 * r / 5000 + rng.uniform(-0.05, 0.05), 4)]
        for r in range(4501, 5001)
    ]
    snap: dict[str, Any] = {
        "state": "running",
        "pid": 424242,
        "supervisor_pid": os.getpid(),
        "uptime_s": 5400.0,
        "swarmd_uptime_s": 90 * 86400.0,
        "restarts": RESTARTS,
        "restarts_by_reason": by_reason,
        "last_decision": {
            "action": "restart",
            "reason": history[-1][1],
            "evidence": "hivemind.p2p.p2p_daemon_bindings.utils.P2PDaemonError: Daemon failed to start in 15.0 seconds",
            "at": history[-1][0],
        },
        "last_signal": {
            "kind": "round_join",
            "verdict": "healthy_progress",
            "line": "Joining round: 5000",
        },
        "round": 5000,
        "stage": 1,
        "peers": 12,
        "peer_id": "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
        "animal": "quick agile otter",
        "last_progress_age_s": 3.2,
        "progressing": True,
        "reward_history": rewards,
        "restart_history": history,
        "next_start_in_s": None,
        "config_path": "/etc/swarmd/monitor.toml",
        "version": "0.1.0",
    }
    return metrics, snap


def time_get(url: str, n: int) -> tuple[float, float, int]:
    """Median and p95 milliseconds of n GETs (new connection each, as the server speaks
    HTTP/1.0), and the body size."""
    samples, size = [], 0
    for _ in range(n):
        began = time.perf_counter()
        resp = requests.get(url, timeout=10)
        size = len(resp.content)
        samples.append((time.perf_counter() - began) * 1000)
        if resp.status_code != 200:
            raise SystemExit(f"{url}: HTTP {resp.status_code}")
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (n - 1))], size


class DevTools:
    """Chromium's DevTools protocol over `--remote-debugging-pipe`: NUL-separated JSON
    on fds 3 (to the browser) and 4 (from it). No websocket client needed."""

    def __init__(self, profile: Path) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        # High copies first, so the dup2 onto 3 and 4 in the child never clobbers a source.
        hi_r = fcntl.fcntl(to_r, fcntl.F_DUPFD, 20)
        hi_w = fcntl.fcntl(from_w, fcntl.F_DUPFD, 20)
        os.close(to_r)
        os.close(from_w)

        def fds() -> None:
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            chromium.argv(profile, "--remote-debugging-pipe", "about:blank"),
            pass_fds=(3, 4),
            preexec_fn=fds,  # noqa: PLW1509 - two dup2 calls, no locks taken
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(hi_r)
        os.close(hi_w)
        self._out, self._in = to_w, from_r
        self._buf = b""
        self._id = 0
        self.session = ""

    def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        want = self._id
        reply = self.wait(lambda m: m.get("id") == want, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    def wait(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg: dict[str, Any] = json.loads(raw)
                if pred(msg):
                    return msg
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise TimeoutError(
                    f"no DevTools reply within {timeout}s (chromium rc={self.proc.poll()})"
                )
            self._buf += os.read(self._in, 1 << 16)

    def open_page(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Page.addScriptToEvaluateOnNewDocument", {"source": _RENDER_PROBE})

    def evaluate(self, expression: str) -> Any:
        res = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        return res["result"].get("value")

    def load(self, url: str) -> tuple[float, float, str]:
        """(first contentful paint ms, first data render ms, state shown) for one load."""
        self.call("Page.navigate", {"url": url})
        self.wait(lambda m: m.get("method") == "Page.loadEventFired")
        fcp = float(self.evaluate(_FCP))
        rendered = float(self.evaluate("window.__rendered"))
        state = str(self.evaluate("document.getElementById('state').textContent"))
        return fcp, rendered, state

    def close(self) -> None:
        try:
            self.session = ""
            self.call("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            self.proc.kill()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._out)
        os.close(self._in)


def first_paint(url: str) -> tuple[float, float, float]:
    """(median FCP, median first render, cold FCP) in ms over LOADS loads after a warm-up."""
    with chromium.profile_dir() as profile:
        tools = DevTools(profile)
        try:
            tools.open_page()
            cold, _, state = tools.load(url)
            if state != "running":
                raise SystemExit(
                    f"the page shows state {state!r}, not the served 'running'"
                )
            runs = [tools.load(url) for _ in range(LOADS)]
        finally:
            tools.close()
    return (
        statistics.median(r[0] for r in runs),
        statistics.median(r[1] for r in runs),
        cold,
    )


def main() -> None:
    began = time.monotonic()
    metrics, snap = build_history()
    server = WebServer("127.0.0.1", 0, lambda: dict(snap), metrics)
    server.start()
    host, port = server.address
    base = f"http://{host}:{port}/"
    try:
        scrape_ms, scrape_p95, scrape_bytes = time_get(base + "metrics", REQUESTS)
        status_ms, status_p95, status_bytes = time_get(base + "api/status", REQUESTS)
        page_ms, _, _ = time_get(base, REQUESTS)
        print(
            f"history: in-process WebServer + Metrics, {RESTARTS} restarts over {REASONS} reasons, "
            f"{len(snap['restart_history'])} restart_history entries in the snapshot"
        )
        print(
            f"/metrics: median {scrape_ms:.2f} ms, p95 {scrape_p95:.2f} ms, {scrape_bytes} bytes"
        )
        print(
            f"/api/status: median {status_ms:.2f} ms, p95 {status_p95:.2f} ms, {status_bytes} bytes"
        )
        print(f"/: median {page_ms:.2f} ms")
        if chromium.available():
            fcp, render, cold = first_paint(base)
            print(
                f"chromium: first contentful paint median {fcp:.0f} ms (cold {cold:.0f} ms), "
                f"first poll drawn {render:.0f} ms"
            )
            paint = f"first_paint_ms={fcp:.0f} first_render_ms={render:.0f} cold_first_paint_ms={cold:.0f}"
        else:
            print(
                f"chromium: {chromium.ABSENT_REASON}, first paint not measured"
            )
            paint = "first_paint_ms=nan first_render_ms=nan cold_first_paint_ms=nan"
    finally:
        server.stop()
    print(f"elapsed {time.monotonic() - began:.1f} s")
    print(
        f"restarts={RESTARTS} {paint} metrics_scrape_ms={scrape_ms:.2f} status_api_ms={status_ms:.2f} "
        f"page_html_ms={page_ms:.2f} metrics_bytes={scrape_bytes} status_bytes={status_bytes}"
    )


if __name__ == "__main__":
    main()

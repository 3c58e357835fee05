"""Shared by the DHT benchmarks: N real peer processes on one loopback hivemind DHT.

Each peer is its own Python process with its own `SwarmDht` (its own p2pd and DHT
child, its own swarm.pem), joined through a bootstrap DHT node that the parent process
runs and that publishes nothing. The parent starts the peers, waits until every one
reports its DHT up (a `ready-<i>` file), then writes a `go` file holding a start time
on `time.monotonic()`: Linux's CLOCK_MONOTONIC is one clock for every process on the
host, so peers can keep a common schedule and their timestamps can be compared.
Each peer writes its results as `result-<i>.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trainer.dht import REQUEST_TIMEOUT, DhtExchange, SwarmDht  # noqa: E402
from trainer.exchange import rollout_key  # noqa: E402
from trainer.rollout import Rollout  # noqa: E402

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]


def bootstrap(work: Path) -> SwarmDht:
    """The parent's DHT node, which only introduces the peers to each other."""
    node = SwarmDht(work / "bootstrap.pem", host_maddrs=LOOPBACK)
    node.start()
    return node


def run_peers(script: Path, n: int, work: Path, initial: Sequence[str], extra: Sequence[str],
              *, lead: float, timeout: float) -> list[dict[str, Any]]:
    """Start `n` workers (`script --worker i ...`), release them together `lead` seconds
    after the last is ready, wait for all, return their results (peer order)."""
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = []
    logs = []
    for i in range(n):
        log = (work / f"peer-{i}.log").open("wb")
        logs.append(log)
        argv = [sys.executable, str(script), "--worker", str(i), "--work", str(work),
                "--initial", ",".join(initial), *extra]
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO))
    try:
        deadline = time.monotonic() + timeout
        while not all((work / f"ready-{i}").exists() for i in range(n)):
            _check_alive(procs, work)
            if time.monotonic() > deadline:
                raise SystemExit(f"{script.name}: peers not ready in {timeout:.0f}s; see {work}/peer-*.log")
            time.sleep(0.2)
        _write_atomic(work / "go", str(time.monotonic() + lead))
        for i, proc in enumerate(procs):
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            if rc != 0:
                raise SystemExit(f"{script.name}: peer {i} exited {rc}; see {work}/peer-{i}.log:\n{_tail(work, i)}")
        return [json.loads((work / f"result-{i}.json").read_text()) for i in range(n)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=15)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def _check_alive(procs: Sequence[subprocess.Popen[bytes]], work: Path) -> None:
    for i, proc in enumerate(procs):
        if proc.poll() is not None:
            raise SystemExit(f"peer {i} exited {proc.returncode} before it was ready:\n{_tail(work, i)}")


def _tail(work: Path, i: int) -> str:
    return (work / f"peer-{i}.log").read_text(errors="replace")[-2000:]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---- worker side ----------------------------------------------------------------------


def join(work: Path, index: int, initial: str) -> SwarmDht:
    """This worker's DHT, joined to the bootstrap node; then wait for the common start."""
    node = SwarmDht(work / f"peer-{index}.pem", host_maddrs=LOOPBACK, initial_peers=initial.split(","))
    node.start()
    return node


def ready_then_start_time(work: Path, index: int, timeout: float = 600.0) -> float:
    """Report ready, then block until the parent's `go` file names the start time."""
    (work / f"ready-{index}").touch()
    deadline = time.monotonic() + timeout
    while not (work / "go").exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go file from the parent")
        time.sleep(0.05)
    return float((work / "go").read_text())


def exchange(node: SwarmDht, namespace: str, expected_peers: int, poll: float) -> DhtExchange:
    """The trainer's own DhtExchange, polling every `poll` s instead of 0.5 s."""
    return DhtExchange(node, lambda: node.peer_id, namespace=namespace,
                       expected_peers=lambda: expected_peers,
                       sleep=lambda s: time.sleep(min(s, poll)))


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks end the peers and their p2pd."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def publish_checked(ex: DhtExchange, node: SwarmDht, rnd: int, rollouts: Sequence[Rollout],
                    attempts: int = 3) -> int:
    """Publish, then read our own record back; republish while it is absent. A store
    can fail on a loaded machine (hivemind reports False), and the other peers would
    then wait out their gather timeout. Returns the attempts used."""
    for attempt in range(1, attempts + 1):
        ex.publish(rnd, 0, rollouts)
        if node.peer_id in node.get(rollout_key(ex.namespace, rnd, 0), timeout=REQUEST_TIMEOUT):
            return attempt
    return attempts


def sleep_until(t: float) -> None:
    left = t - time.monotonic()
    if left > 0:
        time.sleep(left)


def write_result(work: Path, index: int, result: dict[str, Any]) -> None:
    _write_atomic(work / f"result-{index}.json", json.dumps(result))


def worker_args(argv: Sequence[str], add: Callable[[Any], None]) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--initial", required=True)
    add(parser)
    return parser.parse_args(argv)

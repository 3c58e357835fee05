"""One swarm round, end to end: 3 real `python -m trainer` peers on loopback (tiny model,
CPU, real p2pd). round_s = for one round, from the first peer joining it to the last
peer finishing it (generate, publish, gather, GRPO step, checkpoint): the shortest
`round_seconds` this machine can sustain for a 3-peer swarm. Target: <= 60 s.

    .venv/bin/python benchmarks/swarm_round.py      # last line: round_s= ... peers=3
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEERS = 3
ROUNDS = 3  # measured rounds (after the first, which includes warm-up)
ROUND_SECONDS = 8.0
JOIN = re.compile(r"🐝 Joining round: (\d+) ")
DONE = re.compile(r"📉 Finished training round: (\d+) stage: \d+ reward=\S+ external=(\d+)")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="swarm-round-"))
    cfg = root / "trainer.toml"
    cfg.write_text(f"""
host_maddrs = ["/ip4/127.0.0.1/tcp/0"]
initial_peers_file = "{root / 'peers.txt'}"
namespace = "bench-{os.getpid()}"
round_seconds = {ROUND_SECONDS}
gather_timeout = 4.0
""", encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    logs = [root / f"p{i}.log" for i in range(PEERS)]
    seen: dict[tuple[int, str, int], float] = {}  # (peer, event, round) -> first time seen
    externals: list[int] = []
    t_start = time.monotonic()
    try:
        for i in range(PEERS):
            if i == 1:
                _until((root / "peers.txt").exists, 60)
            with logs[i].open("wb") as out:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "trainer", "--config", str(cfg), "--override", f'state_dir="{root / f"p{i}"}"',
                     "--override", f"seed={i}"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env=env, start_new_session=True))
        first_round: int | None = None
        deadline = time.monotonic() + 55
        while time.monotonic() < deadline:
            now = time.monotonic()
            for i, log in enumerate(logs):
                text = log.read_text(encoding="utf-8", errors="replace")
                for r in JOIN.findall(text):
                    seen.setdefault((i, "join", int(r)), now)
                for r, ext in DONE.findall(text):
                    if (i, "done", int(r)) not in seen:
                        seen[(i, "done", int(r))] = now
                        externals.append(int(ext))
            common = [r for r in {k[2] for k in seen if k[1] == "done"}
                      if all((i, "done", r) in seen and (i, "join", r) in seen for i in range(PEERS))]
            if common and first_round is None:
                first_round = min(common)
            if first_round is not None and len([r for r in common if r > first_round]) >= ROUNDS:
                break
            time.sleep(0.1)
        measured = sorted(r for r in {k[2] for k in seen}
                          if first_round is not None and r > first_round
                          and all((i, e, r) in seen for i in range(PEERS) for e in ("join", "done")))[:ROUNDS]
        spans = [max(seen[(i, "done", r)] for i in range(PEERS)) - min(seen[(i, "join", r)] for i in range(PEERS))
                 for r in measured]
        if not spans:
            print(f"no complete round within the time limit; logs under {root}")
            sys.exit(1)
        print(f"rounds={measured} spans_s={[round(s, 2) for s in spans]} "
              f"external_per_step_min={min(externals)} total_s={time.monotonic() - t_start:.1f}")
        print(f"round_s={max(spans):.2f} mean_round_s={sum(spans) / len(spans):.2f} "
              f"round_seconds={ROUND_SECONDS:g} peers={PEERS}")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        shutil.rmtree(root, ignore_errors=True)


def _until(pred: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise SystemExit("first peer did not write its address in time")
        time.sleep(0.1)


if __name__ == "__main__":
    main()

"""Supervisor overhead and lossless capture.

1. The child writes 10,000 lines/s for --seconds; swarmd's own CPU (children
   excluded) and RSS are sampled with psutil.
2. The child writes as fast as it can (--burst lines); the rate it achieved through
   swarmd's pipe is the sustained rate, and every numbered line is looked for in the
   rotated trainer logs.

Run: .venv/bin/python benchmarks/overhead.py
Prints `cpu_pct= rss_mb= lost= max_lines_per_s=` on the last line.
Targets: cpu_pct <= 5 (of one core), rss_mb <= 60, lost = 0.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import psutil
from _harness import REPO, Swarmd

SPEW = str(REPO / "tests" / "fakes" / "spew.py")


def count_lines(log_dir: Path, n: int) -> int:
    seen = bytearray(n)
    for f in log_dir.glob("trainer.log*"):
        data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        for line in data.splitlines():
            if line.startswith(b"line "):
                i = int(line.split()[1].rstrip(b"."))
                if 0 <= i < n:
                    seen[i] = 1
    return sum(seen)


def steady(seconds: float, rate: int) -> tuple[float, float]:
    n = int(seconds * rate)
    sd = Swarmd([sys.executable, SPEW, "--lines", str(n), "--rate", str(rate), "--width", "60"], logs="max_bytes = 10485760\nkeep = 20")
    try:
        sd.wait(lambda e: any(x.get("event") == "child_started" for x in e), 20)
        proc = psutil.Process(sd.proc.pid)
        time.sleep(1.0)  # start-up imports are not steady state
        c0, t0 = proc.cpu_times(), time.monotonic()
        rss = []
        while time.monotonic() - t0 < seconds - 2:
            rss.append(proc.memory_info().rss)
            time.sleep(0.5)
        c1, t1 = proc.cpu_times(), time.monotonic()
        cpu = ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0) * 100
        return cpu, max(rss) / 2**20
    finally:
        sd.close()


def burst(n: int) -> tuple[float, int]:
    sd = Swarmd([sys.executable, SPEW, "--lines", str(n), "--width", "60"], logs="max_bytes = 4194304\nkeep = 200")
    try:
        evs = sd.wait(lambda e: any(x.get("event") == "child_exited" for x in e), 60)
        started = next(x for x in evs if x.get("event") == "child_started")["ts"]
        exited = next(x for x in evs if x.get("event") == "child_exited")["ts"]
        from _harness import iso_to_epoch

        elapsed = iso_to_epoch(exited) - iso_to_epoch(started)
        time.sleep(0.5)
        sd.proc.send_signal(15)
        sd.proc.wait(20)
        got = count_lines(sd.dir / "logs", n)
        return n / elapsed, n - got
    finally:
        sd.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--burst", type=int, default=1_000_000)
    args = ap.parse_args()
    cpu, rss = steady(args.seconds, args.rate)
    print(f"steady: rate={args.rate}/s cpu_pct={cpu:.2f} rss_mb={rss:.1f}")
    rate, lost = burst(args.burst)
    print(f"burst: lines={args.burst} lines_per_s={rate:.0f} lost={lost}")
    print(f"cpu_pct={cpu:.2f} rss_mb={rss:.1f} lost={lost} max_lines_per_s={rate:.0f}")


if __name__ == "__main__":
    main()

"""Supervisor overhead and lossless capture.

1. The child writes 10,000 lines/s for --seconds; swarmd's own CPU (children
   excluded) and RSS are sampled with psutil.
2. The child writes as fast as it can (--burst lines); the rate it achieved through
   swarmd's pipe is the sustained rate, and every numbered line is looked for in the
   rotated trainer logs.

Both run for two mixes (--mix): `plain` numbered lines, and `tracebacks`, where 10% of
the lines are inside caught, WARN-logged tracebacks (the assembler's worst steady case:
every block is opened, followed and judged).

Run: .venv/bin/python benchmarks/overhead.py [--mix both|plain|tracebacks]
Prints `cpu_pct= rss_mb= lost= max_lines_per_s=` per mix; the last line has both
(`cpu_pct_tb=` etc. for the traceback mix).
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


def _spew(n: int, tracebacks: bool, *extra: str) -> list[str]:
    return [sys.executable, SPEW, "--lines", str(n), "--width", "60", *extra, *(["--tracebacks"] if tracebacks else [])]


def _numbered(n: int, tracebacks: bool) -> int:
    """How many `line <i>` lines the child writes (the rest are traceback lines)."""
    return sum(1 for i in range(n) if not (tracebacks and i % 100 >= 90))


def steady(seconds: float, rate: int, tracebacks: bool = False) -> tuple[float, float]:
    n = int(seconds * rate)
    sd = Swarmd(_spew(n, tracebacks, "--rate", str(rate)), logs="max_bytes = 10485760\nkeep = 20")
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


def burst(n: int, tracebacks: bool = False) -> tuple[float, int]:
    sd = Swarmd(_spew(n, tracebacks), logs="max_bytes = 4194304\nkeep = 200")
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
        return n / elapsed, _numbered(n, tracebacks) - got
    finally:
        sd.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--burst", type=int, default=1_000_000)
    ap.add_argument("--mix", choices=("both", "plain", "tracebacks"), default="both")
    args = ap.parse_args()
    mixes = ("plain", "tracebacks") if args.mix == "both" else (args.mix,)
    results: dict[str, tuple[float, float, int, float]] = {}
    for mix in mixes:
        tb = mix == "tracebacks"
        cpu, rss = steady(args.seconds, args.rate, tb)
        print(f"steady[{mix}]: rate={args.rate}/s cpu_pct={cpu:.2f} rss_mb={rss:.1f}")
        rate, lost = burst(args.burst, tb)
        print(f"burst[{mix}]: lines={args.burst} lines_per_s={rate:.0f} lost={lost}")
        results[mix] = (cpu, rss, lost, rate)
    parts = []
    for mix, (cpu, rss, lost, rate) in results.items():
        tag = "" if mix == "plain" else "_tb"
        parts.append(f"cpu_pct{tag}={cpu:.2f} rss_mb{tag}={rss:.1f} lost{tag}={lost} max_lines_per_s{tag}={rate:.0f}")
    print(" ".join(parts))


if __name__ == "__main__":
    main()

"""Restart latency: kill -9 of the trainer -> its replacement running, minus the
configured back-off. Measured from the moment of the kill to swarmd's
`child_started` event for the new pid.

Run: .venv/bin/python benchmarks/restart_latency.py [--trials 10] [--backoff 0.5]
Prints `restart_ms=` (median, back-off excluded) on the last line. Target: <= 1000 ms.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from _harness import Swarmd, iso_to_epoch, percentile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--backoff", type=float, default=0.5)
    args = ap.parse_args()
    child = [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(600)"]
    sd = Swarmd(
        child,
        restart=f"initial_delay = {args.backoff}\nmax_delay = {args.backoff}\nmin_interval = 0\ncrash_loop_max = 1000",
    )
    samples = []
    try:
        for i in range(args.trials):
            evs = sd.wait(lambda e, n=i: sum(1 for x in e if x.get("event") == "child_started") > n, timeout=20)
            pid = [x for x in evs if x.get("event") == "child_started"][i]["pid"]
            time.sleep(0.3)
            killed_at = time.time()
            os.kill(pid, signal.SIGKILL)
            evs = sd.wait(lambda e, n=i: sum(1 for x in e if x.get("event") == "child_started") > n + 1, timeout=20)
            started = [x for x in evs if x.get("event") == "child_started"][i + 1]
            samples.append((iso_to_epoch(started["ts"]) - killed_at - args.backoff) * 1000)
    finally:
        sd.close()
    print(f"backoff_s={args.backoff} trials={len(samples)} max_ms={max(samples):.1f}")
    print(f"restart_ms={percentile(samples, 50):.1f} p99_ms={percentile(samples, 99):.1f}")


if __name__ == "__main__":
    main()

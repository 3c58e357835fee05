"""Detection latency: a P2PDaemonError line written by the trainer -> the restart
decision in monitor.log. The child stamps the line with its write time (wall clock);
swarmd's decision event carries its own timestamp; the difference is the latency.

Run: .venv/bin/python benchmarks/detection_latency.py [--trials 100]
Prints `p50_ms= p99_ms=` on the last line. Target: p50 <= 20 ms, p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import platform
import sys

from _harness import Swarmd, iso_to_epoch, percentile

CHILD = r"""
import random, sys, time
time.sleep(random.uniform(0.05, 0.15))
print("INFO:trainer:🐝 Joining round: 1 starting at stage: 0", flush=True)
time.sleep(random.uniform(0.05, 0.15))
t = time.time()
sys.stdout.write(f"hivemind.p2p.p2p_daemon_bindings.utils.P2PDaemonError: Daemon failed to start in 15.0 seconds [t={t:.6f}]\n")
sys.stdout.flush()
time.sleep(30)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    args = ap.parse_args()
    sd = Swarmd(
        [sys.executable, "-c", CHILD],
        restart=f"initial_delay = 0.01\nmax_delay = 0.01\nmin_interval = 0\ncrash_loop_max = {args.trials * 2}",
    )
    try:
        evs = sd.wait(lambda e: sum(1 for x in e if x.get("event") == "decision") >= args.trials, timeout=55)
    finally:
        sd.close()
    latencies = []
    for ev in evs:
        if ev.get("event") != "decision":
            continue
        ev_text = ev.get("evidence", "")
        if "[t=" not in ev_text:
            continue
        written = float(ev_text.rsplit("[t=", 1)[1].rstrip("]"))
        latencies.append((iso_to_epoch(ev["ts"]) - written) * 1000)
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}")
    print(f"trials={len(latencies)} min_ms={min(latencies):.2f} max_ms={max(latencies):.2f}")
    print(f"p50_ms={percentile(latencies, 50):.2f} p99_ms={percentile(latencies, 99):.2f}")


if __name__ == "__main__":
    main()

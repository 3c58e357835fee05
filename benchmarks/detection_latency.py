"""Detection latency: a P2PDaemonError line written by the trainer -> the restart
decision in monitor.log. The child stamps the line with its write time (wall clock);
swarmd's decision event carries its own timestamp; the difference is the latency.

Two mixes (--mix): `plain` (the error line after a join line), and `tracebacks`: 200
lines of noise of which 10% are inside caught WARN-level tracebacks, then the error as
the final exception of an uncaught traceback (so the assembler is mid-block on every
line that matters).

Run: .venv/bin/python benchmarks/detection_latency.py [--trials 100] [--mix both]
Prints `p50_ms= p99_ms=` per mix; the last line has both (`p99_ms_tb=` for the
traceback mix). Target: p50 <= 20 ms, p99 <= 100 ms.
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


CHILD_TB = r"""
import random, sys, time
CAUGHT = (
    "Jul 19 09:22:42.251 [WARN] [petals.server.reachability.check:148] Reachability check failed",
    "Traceback (most recent call last):",
    '  File "/venv/lib/python3.11/site-packages/hivemind/p2p/p2p_daemon.py", line 612, in _ping',
    "    reader, writer = await asyncio.open_connection(host, port)",
    "                     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    '  File "/usr/lib/python3.11/asyncio/streams.py", line 48, in open_connection',
    "    transport, _ = await loop.create_connection(",
    '  File "/usr/lib/python3.11/asyncio/base_events.py", line 1085, in create_connection',
    "    raise exceptions[0]",
    "ConnectionRefusedError: [Errno 111] Connect call failed ('10.0.0.7', 31337)",
)
time.sleep(random.uniform(0.05, 0.15))
out = []
for i in range(180):
    out.append(f"[2025-07-27 16:27:55,431][genrl.logging_utils.global_defs][INFO] - noise {i}")
    if i % 90 == 89:
        out.extend(CAUGHT)
sys.stdout.write("\n".join(out) + "\n")
sys.stdout.flush()
time.sleep(random.uniform(0.05, 0.15))
for line in ("Traceback (most recent call last):",
             '  File "/x/hivemind/p2p/p2p_daemon.py", line 263, in _ping_daemon',
             "    await self._ping_daemon_with_retries(ping_n_attempts)"):
    sys.stdout.write(line + "\n")
t = time.time()
sys.stdout.write(f"hivemind.p2p.p2p_daemon_bindings.utils.P2PDaemonError: Daemon failed to start in 15.0 seconds [t={t:.6f}]\n")
sys.stdout.flush()
time.sleep(30)
"""


def run(child: str, trials: int) -> list[float]:
    sd = Swarmd(
        [sys.executable, "-c", child],
        restart=f"initial_delay = 0.01\nmax_delay = 0.01\nmin_interval = 0\ncrash_loop_max = {trials * 2}",
    )
    try:
        evs = sd.wait(lambda e: sum(1 for x in e if x.get("event") == "decision") >= trials, timeout=55)
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
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--mix", choices=("both", "plain", "tracebacks"), default="both")
    args = ap.parse_args()
    print(f"machine: {platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}")
    summary = []
    for mix in ("plain", "tracebacks") if args.mix == "both" else (args.mix,):
        latencies = run(CHILD if mix == "plain" else CHILD_TB, args.trials)
        tag = "" if mix == "plain" else "_tb"
        print(f"[{mix}] trials={len(latencies)} min_ms={min(latencies):.2f} max_ms={max(latencies):.2f}")
        summary.append(f"p50_ms{tag}={percentile(latencies, 50):.2f} p99_ms{tag}={percentile(latencies, 99):.2f}")
    print(" ".join(summary))


if __name__ == "__main__":
    main()

"""Print hivemind-style startup lines, then the p2pd startup-timeout error, exit 1.

Usage: p2pd_error.py [--timeout 15.0] [--delay S]
"""

import argparse
import time

parser = argparse.ArgumentParser()
parser.add_argument("--timeout", type=float, default=15.0)
parser.add_argument("--delay", type=float, default=0.0)
args = parser.parse_args()
lines = [
    "[2025-10-26 23:30:20,101][genrl.logging_utils.global_defs][INFO] - Starting swarm node",
    "INFO:hivemind.dht.dht:Checking that identity from `swarm.pem` is not used by other peers",
    "INFO:hivemind.p2p.p2p_daemon:Launching p2pd",
]
for line in lines:
    print(line, flush=True)
    time.sleep(args.delay)
print("Traceback (most recent call last):", flush=True)
print('  File "hivemind/p2p/p2p_daemon.py", line 254, in create', flush=True)
print(
    "hivemind.p2p.p2p_daemon_bindings.utils.P2PDaemonError: "
    f"Daemon failed to start in {args.timeout:.1f} seconds",
    flush=True,
)
raise SystemExit(1)

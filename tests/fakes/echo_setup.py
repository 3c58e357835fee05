"""A trainer that reports what it was started with, then trains until stopped.

Prints `--bulk` filler lines (to make a log rotate), then `cwd=…`,
`mark=$SWARMD_MARK` and `stdin=<first stdin line>`, then a `Joining round` line every --interval seconds,
writing a heartbeat to --heartbeat with --peers and --name.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from swarmd.heartbeat import Heartbeat, write_heartbeat

parser = argparse.ArgumentParser()
parser.add_argument("--heartbeat", type=Path, required=True)
parser.add_argument("--name", default="tiny elusive porpoise")
parser.add_argument("--peers", type=int, default=3)
parser.add_argument("--bulk", type=int, default=0)
parser.add_argument("--interval", type=float, default=0.2)
args = parser.parse_args()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
first = sys.stdin.readline().strip() if not sys.stdin.isatty() else ""
for i in range(args.bulk):
    print(f"filler {i:06d} " + "x" * 80, flush=True)
print(f"cwd={Path.cwd()}", flush=True)
print(f"mark={os.environ.get('SWARMD_MARK', '')}", flush=True)
print(f"stdin={first}", flush=True)
round_ = 1
while True:
    print(f"INFO:hivemind_exp.trainer:{args.name}:\U0001f41d Joining round: {round_} starting at stage: 0", flush=True)
    now = time.time()
    write_heartbeat(
        args.heartbeat,
        Heartbeat(pid=os.getpid(), peer_id="QmEcho", animal=args.name, round=round_, stage=0, peers=args.peers,
                  last_progress=now, step_seconds=(args.interval,), status="training", written_at=now),
    )
    round_ += 1
    time.sleep(args.interval)

"""A healthy-looking trainer: round/stage join lines and tqdm bars, optionally a
heartbeat file, every --interval seconds.

Usage: progress.py [--rounds N] [--steps K] [--interval S] [--heartbeat PATH]
                   [--start-round R] [--peers P] [--stall-after N] [--exit-code C]
After N rounds it exits with --exit-code (default 0). --stall-after N: after N rounds,
stop printing and writing the heartbeat but keep running (a stalled trainer).
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--interval", type=float, default=0.05)
parser.add_argument("--heartbeat", type=Path)
parser.add_argument("--start-round", type=int, default=1)
parser.add_argument("--peers", type=int, default=3)
parser.add_argument("--stall-after", type=int)
parser.add_argument("--exit-code", type=int, default=0)
parser.add_argument("--name", default="tiny elusive porpoise")
args = parser.parse_args()


def beat(round_: int, stage: int, step_seconds: float) -> None:
    if args.heartbeat is None:
        return
    # Imported lazily: swarmd is only needed when a heartbeat is asked for.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from swarmd.heartbeat import Heartbeat, write_heartbeat

    now = time.time()
    write_heartbeat(
        args.heartbeat,
        Heartbeat(
            pid=os.getpid(),
            peer_id="QmFakePeer",
            animal=args.name,
            round=round_,
            stage=stage,
            peers=args.peers,
            last_progress=now,
            step_seconds=(step_seconds,),
            status="training",
            written_at=now,
        ),
    )


out = sys.stdout
logger = "INFO:hivemind_exp.trainer.hivemind_grpo_trainer"
for n in range(args.rounds):
    if args.stall_after is not None and n >= args.stall_after:
        while True:
            signal.pause()
    round_ = args.start_round + n
    out.write(f"{logger}:{args.name}:\U0001f41d Joining round: {round_} starting at stage: 0\n")
    out.flush()
    for step in range(1, args.steps + 1):
        pct = step * 100 // args.steps
        bar = "\u2588" * (pct // 10)
        out.write(f"\r{pct:3d}%|{bar:<10}| {step}/{args.steps} [00:0{step}<00:00, {args.interval:.2f}s/it]")
        out.flush()
        beat(round_, 0, args.interval)
        time.sleep(args.interval)
    out.write("\n")
    out.flush()
print(f"progress done after {args.rounds} rounds", flush=True)
sys.exit(args.exit_code)

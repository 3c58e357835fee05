"""Ignore SIGTERM, print "ready", sleep forever: only SIGKILL ends it.

Usage: ignore_term.py [--children K]   (K forked children that also ignore SIGTERM
and stay in the process group; each prints "child <pid> ready")
"""

import argparse
import os
import signal

parser = argparse.ArgumentParser()
parser.add_argument("--children", type=int, default=0)
args = parser.parse_args()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
for _ in range(args.children):
    if os.fork() == 0:
        print(f"child {os.getpid()} ready", flush=True)
        while True:
            signal.pause()
print("ready", flush=True)
while True:
    signal.pause()

"""SIGKILL itself, as the kernel OOM killer would (a shell reports status 137).

Usage: die137.py [--delay S]
"""

import argparse
import os
import signal
import time

parser = argparse.ArgumentParser()
parser.add_argument("--delay", type=float, default=0.0)
args = parser.parse_args()
print("die137: about to be killed", flush=True)
time.sleep(args.delay)
os.kill(os.getpid(), signal.SIGKILL)

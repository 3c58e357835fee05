"""The parent exits at once; a forked grandchild keeps stdout open for N seconds.

Usage: grandchild_holds_pipe.py [--hold S] [--pidfile PATH]
The reader sees the parent exit long before EOF on the pipe. The grandchild stays in
the process group, so a group kill ends it. Its pid goes to --pidfile if given.
"""

import argparse
import os
import time
from pathlib import Path

from _common import write_atomic

parser = argparse.ArgumentParser()
parser.add_argument("--hold", type=float, default=5.0)
parser.add_argument("--pidfile", type=Path)
args = parser.parse_args()
if os.fork() == 0:
    if args.pidfile:
        write_atomic(args.pidfile, str(os.getpid()))
    print(f"grandchild {os.getpid()} holding the pipe", flush=True)
    time.sleep(args.hold)
    print("grandchild done", flush=True)
    os._exit(0)
print("parent exiting", flush=True)

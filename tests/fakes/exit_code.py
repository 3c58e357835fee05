"""Exit with the code given as argv[1], after an optional --delay in seconds.

Usage: exit_code.py N [--delay S]
"""

import argparse
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("code", type=int)
parser.add_argument("--delay", type=float, default=0.0)
args = parser.parse_args()
print(f"exit_code: will exit {args.code} after {args.delay}s", flush=True)
time.sleep(args.delay)
sys.exit(args.code)

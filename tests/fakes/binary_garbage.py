"""Write random bytes (invalid UTF-8, NULs, lone \\r, long runs without a newline)
between readable marker lines, then `garbage done`.

Usage: binary_garbage.py [--bytes N] [--seed S]
Output is deterministic for a seed, so a test can compare what was captured.
"""

import argparse
import random
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--bytes", type=int, default=64 * 1024)
parser.add_argument("--seed", type=int, default=1)
args = parser.parse_args()

rng = random.Random(args.seed)
out = sys.stdout.buffer
out.write(b"garbage start\n")
out.write(b"\xff\xfe\x00invalid utf-8 \xc3\x28 and a NUL\x00 here\n")
written = 0
while written < args.bytes:
    chunk = rng.randbytes(min(4096, args.bytes - written))
    out.write(chunk)
    written += len(chunk)
    out.flush()
out.write(b"\ngarbage done\n")
out.flush()

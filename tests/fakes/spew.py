"""Write numbered lines fast, so a reader can count what it lost.

Usage: spew.py [--lines N] [--rate R] [--cr] [--stderr] [--width W]
Each line is `line <i>` (i from 0), padded with dots to --width characters.
--rate R: about R lines per second (0 = as fast as possible).
--cr: tqdm-style: each item is a `\\r`-terminated frame `line <i> |###  | i/N`,
      and one `\\n` ends the bar (so N frames, one newline).
--stderr: odd lines go to stderr (same pipe under the supervisor: order must hold).
Ends with `spew done <N>` on stdout.
"""

import argparse
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lines", type=int, default=1000)
parser.add_argument("--rate", type=float, default=0.0)
parser.add_argument("--cr", action="store_true")
parser.add_argument("--stderr", action="store_true")
parser.add_argument("--width", type=int, default=0)
args = parser.parse_args()

out, err = sys.stdout.buffer, sys.stderr.buffer
start = time.monotonic()
for i in range(args.lines):
    text = f"line {i}".ljust(args.width, ".")
    if args.cr:
        done = (i + 1) * 20 // args.lines
        frame = f"{text} |{'#' * done}{' ' * (20 - done)}| {i + 1}/{args.lines}\r"
        out.write(frame.encode())
        out.flush()
    else:
        stream = err if args.stderr and i % 2 else out
        stream.write(text.encode() + b"\n")
        stream.flush()
    if args.rate > 0:
        delay = start + (i + 1) / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
if args.cr:
    out.write(b"\n")
out.write(f"spew done {args.lines}\n".encode())
out.flush()

"""Write numbered lines fast, so a reader can count what it lost.

Usage: spew.py [--lines N] [--rate R] [--cr] [--stderr] [--width W]
Each line is `line <i>` (i from 0), padded with dots to --width characters.
--rate R: about R lines per second (0 = as fast as possible).
--cr: tqdm-style: each item is a `\\r`-terminated frame `line <i> |###  | i/N`,
      and one `\\n` ends the bar (so N frames, one newline).
--stderr: odd lines go to stderr (same pipe under the supervisor: order must hold).
--tracebacks: lines 90-99 of every hundred are a caught, WARN-logged traceback (10%
      of the lines, as a noisy real node prints them) instead of `line <i>`.
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
parser.add_argument("--tracebacks", action="store_true")
args = parser.parse_args()

TRACEBACK = (
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

out, err = sys.stdout.buffer, sys.stderr.buffer
start = time.monotonic()
for i in range(args.lines):
    text = f"line {i}".ljust(args.width, ".")
    if args.tracebacks and i % 100 >= 90:
        text = TRACEBACK[i % 100 - 90]
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

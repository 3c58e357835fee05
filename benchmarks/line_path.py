"""In-process cost of swarmd's per-line path, in microseconds per line.

What the capture thread does with each read of a trainer's output, without the pipe,
the log file or the event loop: redact the log's copy, split the read into lines,
decode them at once, and hand them to the `LineGate` in one call (traceback assembler,
classifier, operator watch; runs of quiet lines are passed in bulk). `overhead.py` measures
the whole daemon's CPU, which swings with the machine's load; this isolates the part
our code controls, so an A/B of two checkouts on one machine in one run compares like
with like (run it with PYTHONPATH pointing at each checkout, alternately).

Lines are `tests/fakes/spew.py`'s: `line <i>` padded to 60 characters, and for the
`tracebacks` mix 10% caught, WARN-logged traceback lines.

Run: .venv/bin/python benchmarks/line_path.py [--lines N] [--repeats R]
Prints `us_per_line_plain= us_per_line_tb=` (best of R).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from swarmd.capture import LineSplitter
from swarmd.classify import Classifier
from swarmd.inputs import LineGate
from swarmd.redact import redact_bytes

_SPEW = Path(__file__).resolve().parent.parent / "tests" / "fakes" / "spew.py"
_CHUNK_LINES = 200  # a coalesced read at 10k lines/s holds about this many lines


def _traceback_lines() -> tuple[str, ...]:
    source = _SPEW.read_text()
    # TRACEBACK is a literal tuple in spew.py; take it without running the script.
    start = source.index("TRACEBACK = (")
    end = source.index("\n)\n", start) + 3
    ns: dict[str, Any] = {}
    exec(compile(source[start:end], str(_SPEW), "exec"), ns)  # noqa: S102 - our own test fake
    return tuple(ns["TRACEBACK"])


def chunks(n: int, tracebacks: bool) -> list[bytes]:
    tb = _traceback_lines()
    lines = [
        tb[i % 100 - 90] if tracebacks and i % 100 >= 90 else f"line {i}".ljust(60, ".")
        for i in range(n)
    ]
    return [("\n".join(lines[i : i + _CHUNK_LINES]) + "\n").encode() for i in range(0, n, _CHUNK_LINES)]


def run_once(data: list[bytes]) -> tuple[float, int]:
    clf = Classifier()
    posted: list[object] = []
    gate = LineGate(lambda: clf, posted.append, lambda: 1, "trainer")
    splitter = LineSplitter()
    n = 0
    t0 = time.perf_counter()
    for chunk in data:
        now = time.monotonic()
        redact_bytes(chunk)
        joined, count = splitter.feed_joined(chunk)
        if count:
            gate.lines(joined.decode("utf-8", "replace"), now)
        n += count
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    out = []
    for mix, tb in (("plain", False), ("tb", True)):
        data = chunks(args.lines, tb)
        best = min(run_once(data)[0] for _ in range(args.repeats))
        out.append(f"us_per_line_{mix}={best / args.lines * 1e6:.2f}")
    print(" ".join(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Record every signal it receives into a file, one name per line (circus-style).

Usage: sigusr1_reporter.py REPORT_FILE [--exit-on-term]
Prints "ready" once the handlers are installed. SIGTERM is recorded too; with
--exit-on-term it then exits 0, otherwise it keeps running.
"""

import argparse
import signal
import sys
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("report", type=Path)
parser.add_argument("--exit-on-term", action="store_true")
args = parser.parse_args()


def record(signum: int, _frame: object) -> None:
    with args.report.open("a", encoding="utf-8") as fh:
        fh.write(signal.Signals(signum).name + "\n")
    print(f"got {signal.Signals(signum).name}", flush=True)
    if signum == signal.SIGTERM and args.exit_on_term:
        sys.exit(0)


for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM):
    signal.signal(sig, record)
args.report.touch()
print("ready", flush=True)
while True:
    signal.pause()

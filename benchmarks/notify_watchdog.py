"""sd_notify watchdog period under load: is WATCHDOG=1 sent every WATCHDOG_USEC/2?

Plays systemd for the real `swarmd run`: binds an AF_UNIX datagram socket, starts the
daemon with NOTIFY_SOCKET and WATCHDOG_USEC=2000000 (WatchdogSec=2s, so a ping is due
every 1 s), supervising tests/fakes/spew.py at 10,000 lines/s, and records the arrival
time of every WATCHDOG=1 for DURATION seconds. The issue's target: the period is
honoured within 10 % (the worst single gap, not just the mean).

Run: .venv/bin/python benchmarks/notify_watchdog.py   (last line: key=value figures)
"""

from __future__ import annotations

import itertools
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import REPO, start, stop, write_config

WATCHDOG_USEC = 2_000_000
DURATION = 20.0
RATE = 10_000


def config(tmp: Path) -> Path:
    argv = [
        sys.executable,
        str(REPO / "tests" / "fakes" / "spew.py"),
        "--lines",
        str(int(RATE * (DURATION + 30))),
        "--rate",
        str(RATE),
        "--width",
        "60",
    ]
    return write_config(tmp, argv, '[health]\nready_on = "start"\n')


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="swarmd-wd-") as name:
        tmp = Path(name)
        addr = str(tmp / "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(addr)
        sock.settimeout(0.5)
        proc = start(
            config(tmp),
            {"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
        )
        pings: list[float] = []
        ready_at: float | None = None
        try:
            deadline = time.monotonic() + 30
            while ready_at is None:  # measure from READY: the trainer is up and spewing
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(
                        f"no READY=1 within 30 s (swarmd rc={proc.poll()})"
                    )
                try:
                    if b"READY=1" in sock.recv(4096).split(b"\n"):
                        ready_at = time.monotonic()
                except TimeoutError:
                    pass
            end = ready_at + DURATION
            while (now := time.monotonic()) < end:
                sock.settimeout(max(0.01, end - now))
                try:
                    raw = sock.recv(4096)
                except TimeoutError:
                    continue
                if b"WATCHDOG=1" in raw.split(b"\n"):
                    pings.append(time.monotonic())
            still_running = proc.poll() is None
        finally:
            stop(proc)
            sock.close()
        lines = sum(1 for _ in (tmp / "logs" / "trainer.log").open("rb"))
    if not still_running or len(pings) < 3:
        raise SystemExit(f"swarmd ended early or sent too few pings ({len(pings)})")
    expected = WATCHDOG_USEC / 2 / 1e6
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    mean = statistics.mean(gaps)
    max_dev = max(abs(g - expected) for g in gaps) / expected * 100
    print(
        f"{len(pings)} WATCHDOG=1 in {DURATION:.0f} s under {RATE} lines/s ({lines} trainer lines logged)"
    )
    print(
        f"gaps: min {min(gaps):.4f} s, max {max(gaps):.4f} s, stdev {statistics.pstdev(gaps) * 1000:.2f} ms"
    )
    print(
        f"target: every gap within 10% of {expected:.1f} s -> {'met' if max_dev <= 10 else 'NOT met'}"
    )
    print(
        f"expected_s={expected:.3f} mean_period_s={mean:.4f} max_dev_pct={max_dev:.2f} "
        f"pings={len(pings)} max_gap_s={max(gaps):.4f} lines_per_s={RATE}"
    )


if __name__ == "__main__":
    main()

"""The fault table of issue 5: each real-process fault case of tests/faults, run on the
real `swarmd run` with the fake node, and its figures.

fault | detection (fault -> swarmd's first reaction in monitor.log) | recovery (fault ->
trainer running again) | lines lost (numbered lines missing from trainer.log*) |
orphans (processes of the case alive after swarmd exits) | duplicate trainers (live
trainers of the identity beyond one, sampled every 0.1 s) | result (the case's own
assertions: reason logged, no restart storm, ...).

The default set runs in under a minute on a 2-core box; --all adds the slower variants.
Timings are scaled (stall_after 1.5 s, 3 s outage); see tests/faults/scenarios.py.

    .venv/bin/python benchmarks/fault_table.py [--all]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults import scenarios
from tests.faults.harness import Fault, Report

DEFAULT = [
    "kill -9 trainer",
    "kill -9 p2pd (reconnect works)",
    "SIGSTOP trainer (stall)",
    "network down 3s",
    "P2PDaemonError burst x100",
    "trainer.log deleted",
    "corrupt swarm.pem (real trainer)",
    "SIGTERM x10 during restart",
]


def run_case(name: str) -> tuple[Report, str]:
    with tempfile.TemporaryDirectory(prefix="fault-") as tmp:
        f = Fault(Path(tmp), name)
        try:
            return scenarios.SCENARIOS[name](f), "ok"
        except AssertionError as err:
            return f.report, "FAIL: " + " ".join(str(err).split())[:90]
        finally:
            f.close()


def run_disk_full() -> tuple[Report, str]:
    name = "disk full (1 MiB tmpfs)"
    with tempfile.TemporaryDirectory(prefix="fault-") as tmp:
        where = Path(tmp) / "tinyfs"
        why = scenarios.mount_small_tmpfs(where)
        if why is not None:
            return Report(name), f"skipped: {why}"
        f = Fault(Path(tmp), name)
        try:
            return scenarios.disk_full(f, where), "ok"
        except AssertionError as err:
            return f.report, "FAIL: " + " ".join(str(err).split())[:90]
        finally:
            f.close()
            scenarios.unmount(where)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--all", action="store_true", help="also the slower variants")
    args = ap.parse_args()
    names = list(scenarios.SCENARIOS) if args.all else DEFAULT
    began = time.monotonic()
    rows: list[tuple[str, Report, str]] = []
    for name in names:
        report, result = run_case(name)
        rows.append((name, report, result))
    report, result = run_disk_full()
    rows.insert(len(rows) - 1, (report.fault, report, result))
    print(f"| {'fault':32} | detection s | recovery s | lines lost | orphans | duplicate trainers | result")
    print(f"|{'-' * 34}|-------------|------------|------------|---------|--------------------|-------")
    for name, r, res in rows:
        dup = max(0, r.max_trainers - 1)
        lost = f"{r.lines_lost}/{r.lines_checked}"
        print(f"| {name:32} | {fmt(r.detection_s):>11} | {fmt(r.recovery_s):>10} | {lost:>10} | {r.orphans:7d} | {dup:18d} | {res}")
    ran = [r for _, r, res in rows if not res.startswith("skipped")]
    ok = sum(1 for _, _, res in rows if res == "ok")
    det = [r.detection_s for r in ran if r.detection_s is not None]
    rec = [r.recovery_s for r in ran if r.recovery_s is not None]
    print(
        f"faults={len(ran)} passed={ok} lines_lost={sum(r.lines_lost for r in ran)} "
        f"orphans={sum(r.orphans for r in ran)} duplicate_trainers={sum(max(0, r.max_trainers - 1) for r in ran)} "
        f"max_detection_s={max(det, default=0.0):.2f} max_recovery_s={max(rec, default=0.0):.2f} "
        f"wall_s={time.monotonic() - began:.1f}"
    )
    return 0 if ok == len(ran) else 1


if __name__ == "__main__":
    raise SystemExit(main())

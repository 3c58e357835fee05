"""Faults on an unmodified gensyn-genrl 0.3.0 node under swarmd: detection and recovery.

Two genrl launchers on loopback (tests/upstream/genrl_swarm.py), each under a real
`swarmd run`; every fault hits the second node (tests/upstream/supervised.py says why).
Per fault: detection s (fault -> the first monitor event acting on it) and recovery s
(fault -> the node back in a round with its peer). A fault swarmd does not heal within
`--give-up` s (not noticed, or noticed without the node coming back) is ended by hand
(kill -9 of the launcher), so the next fault starts from a working pair; its recovery is
then not counted.

Run: .venv/bin/python benchmarks/upstream_faults.py [--only kill9_node,...]
Last line: detected=N/M p2pd_detect_s= p2pd_recover_s= worst_detect_s=
Goal: every fault detected; p2pd death detected <= 10 s; recovery <= start + 5 s.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.upstream.genrl_swarm import build_dataset_dir, build_model_dir, make_pair  # noqa: E402
from tests.upstream.supervised import (  # noqa: E402
    FAULTS,
    Fault,
    IdentitySampler,
    Measured,
    SupervisedNode,
    measure,
    supervised_pair,
    wait_in_round,
)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f}"


def _start_time(b: SupervisedNode) -> float | None:
    """Seconds from the latest child_started to that incarnation's first round."""
    from tests.upstream.supervised import event_epoch

    starts = [event_epoch(e) for e in b.events() if e.get("event") == "child_started"]
    if not starts:
        return None
    first = next((t for t, _ in b.rounds() if t >= starts[-1]), None)
    return None if first is None else first - starts[-1]


def run(faults: list[Fault], give_up: float) -> list[Measured]:
    out = []
    with tempfile.TemporaryDirectory(prefix="upstream-faults-") as tmp:
        root = Path(tmp)
        model, data = build_model_dir(root / "model"), build_dataset_dir(root / "data")
        a_node, b_node = make_pair(root, model, data)
        with supervised_pair(root, a_node, b_node) as (a, b), IdentitySampler(b_node.identity) as sampler:
            wait_in_round(a, b, timeout=180)
            print(f"start_to_first_round_s={_fmt(_start_time(b))}", flush=True)
            for fault in faults:
                result = measure(a, b, fault, timeout=give_up)
                if result.recover_s is None:
                    # Not healed by swarmd: end the node by hand so the next fault
                    # starts from a working pair (this recovery is not counted).
                    launcher = b.launcher()
                    if launcher is not None:
                        launcher.send_signal(signal.SIGKILL)
                    wait_in_round(a, b, timeout=150)
                result.detail += f" start_s={_fmt(_start_time(b))}"
                print(result.line(), flush=True)
                out.append(result)
            if sampler.max_seen > 1:
                print(f"AUDIT: {sampler.max_seen} p2pd daemons of one identity at once")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated fault names")
    ap.add_argument("--give-up", type=float, default=240.0, help="s to wait for detection and recovery")
    args = ap.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    faults = [f for f in FAULTS if not wanted or f.name in wanted]
    t0 = time.monotonic()
    results = run(faults, args.give_up)
    p2pd = next((r for r in results if r.fault == "kill9_p2pd"), None)
    detects = [r.detect_s for r in results if r.detect_s is not None]
    print(f"wall_s={time.monotonic() - t0:.0f}")
    print(f"detected={sum(r.detected for r in results)}/{len(results)} "
          f"p2pd_detect_s={_fmt(p2pd.detect_s if p2pd else None)} "
          f"p2pd_recover_s={_fmt(p2pd.recover_s if p2pd else None)} "
          f"worst_detect_s={_fmt(max(detects) if detects else None)}")


if __name__ == "__main__":
    main()

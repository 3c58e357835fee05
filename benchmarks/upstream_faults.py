"""Faults on an unmodified gensyn-genrl 0.3.0 node under swarmd: detection and recovery.

Two genrl launchers on loopback (tests/upstream/genrl_swarm.py), each under a real
`swarmd run`; the second node's swarmd also watches a real anvil chain
(tests/upstream/lane_chain.py). In order:

1. cold start: the second node's first start into a fresh pair (nothing to replay);
2. the seven faults on the second node ("b");
3. a restart of "b" by hand, without swarmd: its own start into the running swarm,
   genrl's replay included, the figure swarmd's start_s compares with;
4. the liveness faults on the master ("a");
5. the chain RPC down `--chain-down` s with the chain's state kept, then the chain
   reset (round back to 0).

Per fault (tests/upstream/supervised.py defines them): detect_s, swarmd_s (fault -> the
new incarnation started: swarmd's share), start_s (that start -> back in a round with
its peer: the node's own share), recover_s = swarmd_s + start_s, and whether
recover_s <= start_s + 5 s. A fault swarmd does not heal within `--give-up` s is ended
by hand (kill -9 of the launcher), so the next fault starts from a working pair; its
recovery is then not counted.

Run: .venv/bin/python benchmarks/upstream_faults.py [--only kill9_node,...] [--chain-down 60]
Last line: detected=N/M p2pd_detect_s= p2pd_recover_s= worst_detect_s= worst_swarmd_s=
goal_met=K/L (faults that restart the node) load_avg=
Goal: every fault detected; p2pd death detected <= 10 s; recovery <= start + 5 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.upstream.genrl_swarm import build_dataset_dir, build_model_dir, make_pair  # noqa: E402
from tests.upstream.lane_chain import LaneChain, measure_chain_outage  # noqa: E402
from tests.upstream.supervised import (  # noqa: E402
    FAULTS,
    MASTER_FAULTS,
    Fault,
    IdentitySampler,
    Measured,
    SupervisedNode,
    cold_start,
    measure,
    restart_by_hand,
    supervised_pair,
    wait_in_round,
)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f}"


def _heal(victim: SupervisedNode, a: SupervisedNode, b: SupervisedNode, result: Measured) -> None:
    """Not healed by swarmd: end the node by hand so the next fault starts from a
    working pair (this recovery is not counted)."""
    launcher = victim.launcher() if result.recover_s is None else None
    if launcher is not None:
        launcher.send_signal(signal.SIGKILL)
    wait_in_round(a, b, timeout=240)


def run(faults: list[Fault], give_up: float, chain_down: float, by_hand: bool) -> list[Measured]:
    out: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="upstream-faults-") as tmp:
        root = Path(tmp)
        model, data = build_model_dir(root / "model"), build_dataset_dir(root / "data")
        a_node, b_node = make_pair(root, model, data)
        chain = LaneChain(root) if chain_down > 0 else None
        try:
            with supervised_pair(root, a_node, b_node, chain.toml() if chain else "") as (a, b), \
                    IdentitySampler(a_node.identity) as a_ids, IdentitySampler(b_node.identity) as b_ids:
                wait_in_round(a, b, timeout=240)
                print(f"cold_start  node=b start_s={_fmt(cold_start(b, a))} (first start into a fresh pair, "
                      "child_started -> in a round with its peer)", flush=True)
                out.extend(_one(a, b, f, give_up) for f in faults if f.node == "b")
                if by_hand:
                    rounds = len(a.rounds())
                    took = restart_by_hand(b, a, timeout=give_up)
                    print(f"by_hand     node=b start_s={_fmt(took)} (swarmd stopped; the launcher started by hand "
                          f"into the running swarm at its round {rounds} -> in a round with its peer, replay "
                          "included)", flush=True)
                    wait_in_round(a, b, timeout=240)
                # A master fault restarts both nodes: every round key starts again at 0.
                out.extend(_one(a, b, f, give_up) for f in faults if f.node == "a")
                if chain is not None:
                    # Last: the pair keeps playing while the chain is down, and every
                    # round played is one more for a restarted node to replay.
                    for keep in (True, False):
                        result = measure_chain_outage(b, chain, chain_down, keep_state=keep)
                        print(result.line(), flush=True)
                        out.append(result)
                        wait_in_round(a, b, timeout=240)
                for name, sampler in (("a", a_ids), ("b", b_ids)):
                    if sampler.max_seen > 1:
                        print(f"AUDIT: {sampler.max_seen} p2pd daemons of {name}'s identity at once")
        finally:
            if chain is not None:
                chain.close()
    return out


def _one(a: SupervisedNode, b: SupervisedNode, fault: Fault, give_up: float) -> Measured:
    victim, peer = (a, b) if fault.node == "a" else (b, a)
    result = measure(victim, peer, fault, timeout=give_up)
    print(result.line(), flush=True)
    _heal(victim, a, b, result)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated fault names (chain and by-hand runs stay)")
    ap.add_argument("--give-up", type=float, default=240.0, help="s to wait for detection and recovery")
    ap.add_argument("--chain-down", type=float, default=60.0, help="s the chain RPC is down (0: no chain)")
    ap.add_argument("--no-by-hand", action="store_true", help="skip the restart by hand without swarmd")
    args = ap.parse_args()
    wanted = set(filter(None, args.only.split(",")))
    faults = [f for f in FAULTS + MASTER_FAULTS if not wanted or f.name in wanted]
    t0 = time.monotonic()
    load_before = os.getloadavg()[0]
    results = run(faults, args.give_up, args.chain_down, not args.no_by_hand)
    p2pd = next((r for r in results if r.fault == "kill9_p2pd"), None)
    detects = [r.detect_s for r in results if r.detect_s is not None]
    shares = [r.swarmd_s for r in results if r.swarmd_s is not None]
    goals = [r.goal_met for r in results if r.goal_met is not None]
    print(f"wall_s={time.monotonic() - t0:.0f} load_avg_1m start={load_before:.1f} end={os.getloadavg()[0]:.1f}")
    print(f"detected={sum(r.detected for r in results)}/{len(results)} "
          f"p2pd_detect_s={_fmt(p2pd.detect_s if p2pd else None)} "
          f"p2pd_recover_s={_fmt(p2pd.recover_s if p2pd else None)} "
          f"worst_detect_s={_fmt(max(detects) if detects else None)} "
          f"worst_swarmd_s={_fmt(max(shares) if shares else None)} "
          f"goal_met={sum(goals)}/{len(goals)} load_avg={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

"""DHT propagation: how long a published rollout record takes to reach the other peers.

For N = 3, 8, 16 loopback peers, each its own process with its own hivemind DHT and
p2pd (benchmarks/_peers.py), signed records, the trainer's own `DhtExchange`:

- propagation, per ordered pair (A, B): A alone publishes a record (one round's
  rollouts: 4 rollouts x 4 completions) at a slot start while every other peer is
  already gathering that key; the figure is the time from A's `publish` returning to
  B's `gather` first returning it. Slots rotate the publisher, so every pair is
  measured. Gathers poll every 10 ms, and the time is taken when the `get` that saw
  the record returns, so each sample is an upper bound by up to one poll + one get.
- gather_all: every peer publishes at the same round start (a round boundary), then
  gathers until it holds all N peers' records (its own included); the figure is the
  time from the round start to that gather returning, per peer per round.

Times are on CLOCK_MONOTONIC, shared by all processes on the host. A record that does
not arrive within its slot counts as missing, reported, and enters the percentiles as
slower than any arrival (infinite), so a p99 past the slot prints `inf`.

    .venv/bin/python benchmarks/dht_latency.py [--peers 3,8,16]
    # one line per N; the last line (largest N): prop_p50_ms= prop_p99_ms= gather_all_ms= peers=
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _peers import (
    bootstrap,
    exchange,
    exit_on_sigterm,
    join,
    ready_then_start_time,
    run_peers,
    sleep_until,
    worker_args,
    write_result,
)

from trainer.rollout import Rollout, TaskRef

PER_PEER = 4  # rollouts per record (prompts_per_round)
LEAD = 0.15  # s into a propagation slot before the publisher publishes
POLL = 0.01
GATHER_ROUNDS = 10


def _plan(n: int) -> dict[str, float]:
    """Slots sized to the swarm: enough ordered pairs for a p99, and room to arrive."""
    cycles = max(1, round(120 / (n * (n - 1))))
    slot = 1.0 if n <= 8 else 1.5
    return {"prop_slots": cycles * n, "slot": slot, "gather_slot": 2.0 if n <= 8 else 3.0}


def _record(me: str, tag: int) -> list[Rollout]:
    return [Rollout(me, tag, 0, TaskRef("local_arith", 0, i), ("<answer>42</answer>",) * 4)
            for i in range(PER_PEER)]


def worker(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    exit_on_sigterm()
    args = worker_args(argv, lambda p: p.add_argument("--n", type=int, required=True))
    n, me_index = args.n, args.worker
    node = join(args.work, me_index, args.initial)
    try:
        plan = _plan(n)
        prop = exchange(node, "prop", expected_peers=1, poll=POLL)
        gath = exchange(node, "gather", expected_peers=n - 1, poll=POLL)
        t0 = ready_then_start_time(args.work, me_index)
        published: dict[int, float] = {}
        seen: dict[int, float] = {}
        for slot in range(int(plan["prop_slots"])):
            start = t0 + slot * plan["slot"]
            sleep_until(start)
            if slot % n == me_index:
                sleep_until(start + LEAD)
                prop.publish(slot, 0, _record(node.peer_id, slot))
                published[slot] = time.monotonic()
            else:
                budget = start + plan["slot"] - 0.05 - time.monotonic()
                got = prop.gather(slot, 0, limit=PER_PEER, timeout=budget)
                if len(got) == PER_PEER:
                    seen[slot] = time.monotonic()
        g0 = t0 + plan["prop_slots"] * plan["slot"]
        gather_ms: list[float | None] = []
        for rnd in range(GATHER_ROUNDS):
            start = g0 + rnd * plan["gather_slot"]
            sleep_until(start)
            gath.publish(rnd, 0, _record(node.peer_id, rnd))
            got = gath.gather(rnd, 0, limit=(n - 1) * PER_PEER, timeout=start + plan["gather_slot"] - 0.05 - time.monotonic())
            done = time.monotonic()
            gather_ms.append((done - start) * 1000 if len(got) == (n - 1) * PER_PEER else None)
        write_result(args.work, me_index, {"published": published, "seen": seen, "gather_ms": gather_ms})
    finally:
        node.shutdown()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(n: int, root: Path) -> dict[str, Any]:
    work = root / f"n{n}"
    work.mkdir()
    boot = bootstrap(work)
    try:
        started = time.monotonic()
        results = run_peers(Path(__file__), n, work, boot.visible_maddrs(), ["--n", str(n)],
                            lead=3.0, timeout=900.0)
        wall = time.monotonic() - started
    finally:
        boot.shutdown()
    prop: list[float] = []
    missing = 0
    for a, res_a in enumerate(results):
        for slot, t_pub in res_a["published"].items():
            for b, res_b in enumerate(results):
                if b == a:
                    continue
                t_seen = res_b["seen"].get(slot)
                if t_seen is None:
                    missing += 1
                else:
                    prop.append((t_seen - t_pub) * 1000)
    # A record or gather that missed its slot took longer than the slot: it counts as
    # infinitely slow in the percentiles (so p99 may print inf), never as absent.
    prop += [math.inf] * missing
    gathers = [math.inf if g is None else g for r in results for g in r["gather_ms"]]
    if not any(math.isfinite(x) for x in prop) or not any(math.isfinite(x) for x in gathers):
        raise SystemExit(f"dht_latency.py: N={n}: no complete samples (missing {missing}); see {work}")
    finite = [x for x in prop if math.isfinite(x)]
    return {"n": n, "pairs": len(prop), "missing": missing, "p50": _pct(prop, 0.5),
            "p99": _pct(prop, 0.99), "max": max(finite), "gather_p50": _pct(gathers, 0.5),
            "gather_p99": _pct(gathers, 0.99), "gathers": len(gathers),
            "gathers_complete": sum(math.isfinite(g) for g in gathers), "wall_s": wall}


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", default="3,8,16", help="comma-separated swarm sizes")
    args = parser.parse_args()
    exit_on_sigterm()
    sizes = [int(x) for x in args.peers.split(",")]
    root = Path(tempfile.mkdtemp(prefix="dht-latency-"))
    try:
        rows = [measure(n, root) for n in sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    for r in rows:
        print(f"peers={r['n']} pair_samples={r['pairs']} missing={r['missing']} prop_p50_ms={r['p50']:.1f} "
              f"prop_p99_ms={r['p99']:.1f} prop_max_ms={r['max']:.1f} gather_all_p50_ms={r['gather_p50']:.1f} "
              f"gather_all_p99_ms={r['gather_p99']:.1f} gathers_complete={r['gathers_complete']}/{r['gathers']} "
              f"wall_s={r['wall_s']:.0f}")
    last = rows[-1]
    print(f"prop_p50_ms={last['p50']:.1f} prop_p99_ms={last['p99']:.1f} "
          f"gather_all_ms={last['gather_p50']:.1f} peers={last['n']}")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker(sys.argv[1:])
    else:
        main()

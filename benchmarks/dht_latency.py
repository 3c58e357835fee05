"""DHT exchange latency: 8 loopback peers (real hivemind DHT + p2pd each), every peer
publishes one round's rollouts and gathers all the others'. One sample = one peer's
publish + gather of a round. Target: p50 <= 200 ms.

    .venv/bin/python benchmarks/dht_latency.py      # last line: p50_ms= p99_ms= peers=
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from trainer.dht import DhtExchange, SwarmDht
from trainer.rollout import Rollout, TaskRef

PEERS = 8
ROUNDS = 12
PER_PEER = 4  # rollouts per peer per round (prompts_per_round)


def main() -> None:
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="dht-latency-"))
    nodes: list[SwarmDht] = []
    try:
        t0 = time.perf_counter()
        first = SwarmDht(tmp / "p0.pem", host_maddrs=["/ip4/127.0.0.1/tcp/0"])
        first.start()
        nodes.append(first)
        for i in range(1, PEERS):
            node = SwarmDht(tmp / f"p{i}.pem", host_maddrs=["/ip4/127.0.0.1/tcp/0"],
                            initial_peers=first.visible_maddrs())
            node.start()
            nodes.append(node)
        startup = time.perf_counter() - t0
        exchanges = [DhtExchange(n, _id_of(n), namespace="bench", expected_peers=lambda: PEERS - 1)
                     for n in nodes]
        samples: list[float] = []
        complete = 0
        for rnd in range(ROUNDS):
            publish_ms = []
            for ex in exchanges:
                me = ex.peer_id()
                rollouts = [Rollout(me, rnd, 0, TaskRef("local_arith", 0, i), ("<answer>42</answer>",) * 4)
                            for i in range(PER_PEER)]
                s = time.perf_counter()
                ex.publish(rnd, 0, rollouts)
                publish_ms.append((time.perf_counter() - s) * 1000)
            for ex, pub in zip(exchanges, publish_ms, strict=True):
                s = time.perf_counter()
                got = ex.gather(rnd, 0, limit=(PEERS - 1) * PER_PEER, timeout=5.0)
                samples.append(pub + (time.perf_counter() - s) * 1000)
                complete += len(got) == (PEERS - 1) * PER_PEER
        samples.sort()
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
        print(f"startup_s={startup:.1f} samples={len(samples)} complete_gathers={complete}/{len(samples)}")
        print(f"p50_ms={p50:.1f} p99_ms={p99:.1f} peers={PEERS}")
    finally:
        for n in reversed(nodes):
            n.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _id_of(node: SwarmDht) -> Callable[[], str]:
    return lambda: node.peer_id


if __name__ == "__main__":
    main()

"""Chain coordinator figures on a real anvil (our contract, our client, real processes).

1. Round advance: 3 peer processes each run the node's chain clock (`ChainCoordinator`,
   batched currentRound/currentStage, re-read every chain_poll_seconds = 1 s as in
   trainer.toml); the stage manager advances the round N times. Latency = when a peer
   first sees the new round - when the advancing transaction's receipt came back.
   Target: every peer <= 2 s.
2. Submission latency: rewards queued through the durable queue at a steady cadence;
   p50/p99 from `submit_reward` (queue write) to the transaction receipt.
3. Outage: a reporter process (ChainLink + queue, as the node) queues a reward every
   0.5 s; the RPC is cut for 60 s (TCP gate in front of anvil); in the middle the reporter
   is killed with SIGKILL and restarted (it retries its start until the RPC is back, as
   swarmd would restart it). Lost = queued (fsynced) - on chain at the end. Target: 0.

    .venv/bin/python benchmarks/chain.py            # last line: key=value figures
    .venv/bin/python benchmarks/chain.py --outage 10 --quick   # shorter run
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from eth_account import Account  # noqa: E402

from trainer.coordinator.chain import ChainCoordinator  # noqa: E402
from trainer.coordinator.connect import ChainLink  # noqa: E402
from trainer.coordinator.deploy import deploy  # noqa: E402
from trainer.coordinator.keyfile import load_or_create  # noqa: E402
from trainer.coordinator.localchain import DEFAULT_CHAIN_ID, DEV_KEY, Anvil, RpcGate  # noqa: E402
from trainer.coordinator.queue import SubmissionQueue  # noqa: E402
from trainer.coordinator.rpc import ChainClient, RetryPolicy  # noqa: E402
from trainer.coordinator.settings import ChainSettingError, ChainSettings  # noqa: E402

PEERS = 3


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- child roles ----------------------------------------------------------------------

def watch(url: str, contract: str, poll: float, out: Path, seconds: float) -> None:
    """A peer's chain clock: print (wall time, round) at every round change it sees."""
    coord = ChainCoordinator(ChainClient(url, contract, chain_id=DEFAULT_CHAIN_ID), SubmissionQueue(out.parent / "q"),
                             poll_seconds=poll)
    last = None
    deadline = time.monotonic() + seconds
    with out.open("a", encoding="utf-8") as fh:
        while time.monotonic() < deadline:
            rnd, _ = coord.current_round()
            if rnd != last:
                fh.write(f"{time.time()} {rnd}\n")
                fh.flush()
                last = rnd
            time.sleep(coord.poll_seconds() or 1.0)


def report(url: str, contract: str, state: Path, start: int, every: float) -> None:
    """The node's reporting path: start (retrying while the RPC is down, like swarmd's
    restarts), then queue one reward per tick and log each index after it is durable."""
    settings = ChainSettings(rpc_url=url, contract=contract, chain_id=DEFAULT_CHAIN_ID, key_path=state / "chain.key",
                             queue_dir=state / "queue", rpc_timeout=2.0)
    while True:
        try:
            link = ChainLink.open(settings, "QmBench", start_retry=RetryPolicy(attempts=2, first_wait=0.2, max_wait=0.5))
            break
        except ChainSettingError:
            time.sleep(1.0)
    coord = link.start()
    coord.sender.max_backoff = 2.0
    index = start
    with (state / "queued.log").open("a", encoding="utf-8") as log:
        while True:
            coord.submit_reward(index // 3, index % 3, 1.0, "QmBench")
            log.write(f"{index}\n")
            log.flush()
            os.fsync(log.fileno())
            index += 1
            time.sleep(every)


# ---- parts ----------------------------------------------------------------------------

def round_advance(anvil: Anvil, contract: str, owner: ChainClient, tmp: Path, advances: int) -> list[float]:
    outs = [tmp / f"watch{i}" / "seen.txt" for i in range(PEERS)]
    procs = []
    for out in outs:
        out.parent.mkdir(parents=True)
        procs.append(subprocess.Popen([sys.executable, __file__, "watch", anvil.url, contract, str(out), "3600"]))
    try:
        deadline = time.monotonic() + 120
        while not all(o.exists() for o in outs) and time.monotonic() < deadline:  # all up, at the current round
            time.sleep(0.2)
        mined: dict[int, float] = {}
        for _ in range(advances):
            for _ in range(2):
                owner.transact("updateStageAndRound")
            owner.transact("updateStageAndRound")  # this one starts the round
            at = time.time()
            mined[owner.round_and_stage()[0]] = at
            time.sleep(3.0)
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
    latencies = []
    for out in outs:
        seen = {int(r): float(t) for t, r in (line.split() for line in out.read_text().splitlines())}
        for rnd, at in mined.items():
            latencies.append(seen[rnd] - at if rnd in seen else float("inf"))
    return latencies


def submissions(anvil: Anvil, contract: str, owner: ChainClient, tmp: Path, count: int) -> list[float]:
    state = tmp / "submit"
    anvil.fund(load_or_create(state / "chain.key").address)
    link = ChainLink.open(ChainSettings(rpc_url=anvil.url, contract=contract, chain_id=DEFAULT_CHAIN_ID,
                                        key_path=state / "chain.key", queue_dir=state / "queue"), "QmLatency")
    coord = link.start()
    try:
        for i in range(count):
            coord.submit_reward(i // 3, i % 3, 0.5, "QmLatency")
            time.sleep(0.2)
        deadline = time.monotonic() + 60
        while coord.queue_depth() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        link.stop()
    return list(coord.sender.stats.latencies)


def outage(anvil: Anvil, contract: str, tmp: Path, seconds: float) -> tuple[int, int, int]:
    state = tmp / "outage"
    anvil.fund(load_or_create(state / "chain.key").address)
    gate = RpcGate(anvil.port)
    gate.open()

    def reporter(start: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, __file__, "report", gate.url, contract, str(state), str(start)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def queued() -> list[int]:
        path = state / "queued.log"
        return [int(x) for x in path.read_text().split()] if path.exists() else []

    proc = reporter(0)
    try:
        while len(queued()) < 6:
            time.sleep(0.2)
        gate.shut()
        time.sleep(seconds / 2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        during = len(queued())
        proc = reporter(max(queued()) + 1)  # restarted while the RPC is still down
        time.sleep(seconds / 2)
        gate.open()
        time.sleep(5.0)
        queue_dir = state / "queue"
        deadline = time.monotonic() + 120
        while any(queue_dir.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.terminate()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        gate.shut()
    reader = ChainClient(anvil.url, contract, chain_id=DEFAULT_CHAIN_ID)
    sent = sorted(set(queued()))
    lost = [i for i in sent if not reader.has_submitted_reward(i // 3, i % 3, "QmBench")]
    return len(sent), len(lost), during


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "watch":
        watch(sys.argv[2], sys.argv[3], 1.0, Path(sys.argv[4]), float(sys.argv[5]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]), 0.5)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the RPC is down")
    parser.add_argument("--quick", action="store_true", help="fewer advances and submissions")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="chain-bench-"))
    with Anvil(log_path=tmp / "anvil.log") as anvil:
        owner_account = Account.from_key(DEV_KEY)
        contract, _ = deploy(anvil.url, owner_account)
        owner = ChainClient(anvil.url, contract, account=owner_account, chain_id=DEFAULT_CHAIN_ID)
        seen = round_advance(anvil, contract, owner, tmp, 4 if args.quick else 10)
        print(f"round advance seen by {PEERS} peers: max {max(seen):.2f} s, p50 {statistics.median(seen):.2f} s "
              f"over {len(seen)} (peer, round) pairs")
        for _ in range(400):  # rounds for the submissions below: (index // 3, index % 3)
            owner.transact("updateStageAndRound")
        lat = submissions(anvil, contract, owner, tmp, 30 if args.quick else 100)
        print(f"reward submission queue->receipt: p50 {_pct(lat, 0.5) * 1000:.0f} ms, "
              f"p99 {_pct(lat, 0.99) * 1000:.0f} ms over {len(lat)}")
        sent, lost, during = outage(anvil, contract, tmp, args.outage)
        print(f"outage {args.outage:g} s with kill -9 mid-outage: {sent} queued, {lost} lost "
              f"({during} queued before the kill)")
    print(f"round_seen_max_s={max(seen):.2f} round_seen_p50_s={statistics.median(seen):.2f} "
          f"submit_p50_ms={_pct(lat, 0.5) * 1000:.0f} submit_p99_ms={_pct(lat, 0.99) * 1000:.0f} "
          f"outage_s={args.outage:g} queued={sent} lost={lost} peers={PEERS}")


if __name__ == "__main__":
    main()

"""A node that runs a real hivemind DHT (a forked DHT process and the p2pd binary
shipped with hivemind) and writes no heartbeat: how an upstream node looks to swarmd.

Usage: dht_node.py [--identity PEM] [--initial-peer MADDR] [--on-usr1 REPORT_FILE]
Prints "dht ready <peer id> <multiaddr>" once the DHT runs, then waits. With an
existing --identity and an --initial-peer, hivemind first checks that the identity is
free with an anonymous p2pd of its own (as upstream nodes do at every start). With --on-usr1 it handles
SIGUSR1 like a node that can re-bootstrap: it records the signal in REPORT_FILE and
restarts its DHT (a new DHT process and p2pd), printing "dht restarted <peer id>".
Without it SIGUSR1 keeps its default action (the process dies), as upstream's does.
"""

import argparse
import signal
import threading
from pathlib import Path

import hivemind

parser = argparse.ArgumentParser()
parser.add_argument("--identity", type=Path)
parser.add_argument("--initial-peer", action="append", default=[])
parser.add_argument("--on-usr1", type=Path)
args = parser.parse_args()


def start() -> hivemind.DHT:
    kwargs = {"identity_path": str(args.identity)} if args.identity else {}
    return hivemind.DHT(start=True, host_maddrs=["/ip4/127.0.0.1/tcp/0"], initial_peers=args.initial_peer, **kwargs)


dht = start()
print(f"dht ready {dht.peer_id} {dht.get_visible_maddrs()[0]}", flush=True)
wake = threading.Event()

if args.on_usr1 is not None:
    args.on_usr1.touch()

    def record(signum: int, _frame: object) -> None:
        with args.on_usr1.open("a", encoding="utf-8") as fh:
            fh.write(signal.Signals(signum).name + "\n")
        wake.set()

    signal.signal(signal.SIGUSR1, record)

while True:
    if wake.wait(0.2):
        wake.clear()
        dht.shutdown()
        dht = start()
        print(f"dht restarted {dht.peer_id}", flush=True)

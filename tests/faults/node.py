"""A fake swarm node that misbehaves on cue, for the fault-injection suite.

Usage: node.py --seqdir DIR [--heartbeat PATH] [--rate R] [--p2pd SOCKET] [--reconnect]
               [--burst N] [--burst-marker PATH] [--identity TAG]
       node.py --as-p2pd --socket PATH --pidfile PATH   (the daemon; started by the node)

Every line it prints is numbered, `node <pid> seq <n>`, and after each line it records
`n` in `DIR/<pid>.seq`, so a test can prove that no line of any run (killed ones
included) is missing from the trainer logs. With --heartbeat it writes swarmd's
heartbeat file after every line (pid, peers, step time), which is what makes swarmd
check the p2pd. With --p2pd it forks a `fake-p2pd` child (argv[0] and kernel name
`fake-p2pd`, `-listen=/unix<socket>` like hivemind gives it) that listens on the
socket, answers IDENTIFY there and writes its pid to `<socket>.pid`. With --reconnect a SIGUSR1 re-starts a
dead p2pd in place (hivemind's re-bootstrap); without it SIGUSR1 is only printed.
--burst N prints N `P2PDaemonError` lines within one second after the first line,
once per --burst-marker file (so only the first run bursts). --term-delay S: on
SIGTERM print a goodbye, take S seconds "saving", then exit 0. --pad N adds N dots to
each line (fills a disk faster). --identity is not used:
it tags the command line so a test can find every trainer of one identity.
"""

import argparse
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from swarmd.heartbeat import Heartbeat, write_heartbeat

parser = argparse.ArgumentParser()
parser.add_argument("--seqdir", type=Path)
parser.add_argument("--heartbeat", type=Path)
parser.add_argument("--rate", type=float, default=20.0)
parser.add_argument("--p2pd", type=Path)
parser.add_argument("--reconnect", action="store_true")
parser.add_argument("--burst", type=int, default=0)
parser.add_argument("--burst-marker", type=Path)
parser.add_argument("--identity", default="")
parser.add_argument("--term-delay", type=float, default=0.0)
parser.add_argument("--pad", type=int, default=0)
parser.add_argument("--as-p2pd", action="store_true")
parser.add_argument("--socket", type=Path)
parser.add_argument("--pidfile", type=Path)
args, _hivemind_flags = parser.parse_known_args()


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def run_p2pd() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(15, b"fake-p2pd", 0, 0, 0)  # PR_SET_NAME: what psutil.name() shows
    assert args.socket is not None
    assert args.pidfile is not None
    with contextlib.suppress(FileNotFoundError):
        args.socket.unlink()  # the previous daemon was killed -9 and left it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(args.socket))
    sock.listen()
    write_atomic(args.pidfile, str(os.getpid()))
    while True:  # answer control requests as p2pd answers IDENTIFY (swarmd asks it)
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(2.0)
            try:
                conn.recv(64)
                conn.sendall(IDENTIFY_ANSWER)
            except OSError:
                continue


# Response{type: OK, identify: {id: b"fake"}}, length-prefixed (p2pd's control protocol).
IDENTIFY_ANSWER = bytes([10, 0x08, 0x00, 0x22, 6, 0x0A, 4]) + b"fake"

if args.as_p2pd:
    run_p2pd()

class Node:
    """Mutable state shared with the signal handler."""

    p2pd_pid: int | None = None
    reconnects = 0


def start_p2pd() -> None:
    sockpath: Path = args.p2pd
    pid = os.fork()
    if pid == 0:
        flags = ["--as-p2pd", f"--socket={sockpath}", f"--pidfile={sockpath}.pid",
                 f"-listen=/unix{sockpath}", "-id=/tmp/fake-swarm.pem", "-dhtServer=1"]
        os.execv(sys.executable, ["fake-p2pd", str(Path(__file__).resolve()), *flags])  # noqa: S606
    Node.p2pd_pid = pid


def p2pd_running() -> bool:
    if Node.p2pd_pid is None:
        return False
    try:
        done, _ = os.waitpid(Node.p2pd_pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def on_usr1(_signum: int, _frame: object) -> None:
    Node.reconnects += 1


def on_term(_signum: int, _frame: object) -> None:
    print(f"node {os.getpid()} stopping: saving for {args.term_delay}s", flush=True)
    time.sleep(args.term_delay)
    raise SystemExit(0)


signal.signal(signal.SIGUSR1, on_usr1)
if args.term_delay:
    signal.signal(signal.SIGTERM, on_term)
if args.p2pd is not None:
    start_p2pd()

pid = os.getpid()
seqfile = args.seqdir / f"{pid}.seq" if args.seqdir else None
burst = args.burst
if burst and args.burst_marker is not None:
    if args.burst_marker.exists():
        burst = 0
    else:
        args.burst_marker.write_text("burst done\n")
handled = 0
n = 0
period = 1.0 / args.rate
next_at = time.monotonic()
while True:
    if handled < Node.reconnects:
        handled = Node.reconnects
        alive = p2pd_running()
        if args.reconnect and args.p2pd is not None and not alive:
            start_p2pd()
        print(f"reconnect requested (SIGUSR1): p2pd {'kept' if alive else 'restarted' if args.reconnect else 'still gone'}", flush=True)
    print(f"node {pid} seq {n} " + "." * args.pad, flush=True)
    if seqfile is not None:
        write_atomic(seqfile, str(n))
    if n == 0 and burst:
        for i in range(burst):
            print(f"hivemind.p2p.p2p_daemon_bindings.utils.P2PDaemonError: Daemon failed to start in 15.0 seconds ({i})", flush=True)
            time.sleep(1.0 / burst)
    if args.heartbeat is not None:
        now = time.time()
        write_heartbeat(args.heartbeat, Heartbeat(pid=pid, round=n // 10, stage=0, peers=3, last_progress=now,
                                                  step_seconds=(period,), status="training", written_at=now))
    n += 1
    next_at += period
    time.sleep(max(0.0, next_at - time.monotonic()))

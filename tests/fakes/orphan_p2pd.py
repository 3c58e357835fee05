"""A trainer that starts a p2pd-like daemon, as hivemind's DHT process does.

Usage: orphan_p2pd.py --pidfile PATH --socket PATH [--setsid] [--ignore-term]
       orphan_p2pd.py --as-daemon --pidfile PATH --socket PATH [...]   (the daemon)

The trainer forks a child that re-executes itself with argv[0] `fake-p2pd` and the
flags hivemind gives p2pd (`-listen=/unix<socket>`, `-id=...`), sets its kernel name
to `fake-p2pd`, binds and listens on the unix socket, writes its pid to --pidfile and
answers IDENTIFY there as p2pd does (swarmd asks it), holding the inherited stdout pipe. With --setsid the daemon leaves the trainer's
session and process group, so a group kill misses it and it becomes an orphan when the
trainer dies. The trainer prints "ready" once the daemon is listening, then sleeps.
"""

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path

from _common import set_process_name, write_atomic

parser = argparse.ArgumentParser()
parser.add_argument("--pidfile", type=Path, required=True)
parser.add_argument("--socket", type=Path, required=True)
parser.add_argument("--setsid", action="store_true")
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--as-daemon", action="store_true")
args, _p2pd_flags = parser.parse_known_args()


# Response{type: OK, identify: {id: b"fake"}}, length-prefixed (p2pd's control protocol).
IDENTIFY_ANSWER = bytes([10, 0x08, 0x00, 0x22, 6, 0x0A, 4]) + b"fake"


def daemon() -> None:
    set_process_name("fake-p2pd")
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(args.socket))
    sock.listen()
    write_atomic(args.pidfile, str(os.getpid()))
    print(f"fake-p2pd {os.getpid()} listening on {args.socket}", flush=True)
    while True:  # answer every control request as p2pd answers IDENTIFY (swarmd asks it)
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(2.0)
            try:
                conn.recv(64)
                conn.sendall(IDENTIFY_ANSWER)
            except OSError:
                continue


if args.as_daemon:
    daemon()

flags = [
    "--as-daemon",
    f"--pidfile={args.pidfile}",
    f"--socket={args.socket}",
    *(["--ignore-term"] if args.ignore_term else []),
    f"-listen=/unix{args.socket}",
    "-id=/tmp/fake-swarm.pem",
    "-dhtServer=1",
]
if os.fork() == 0:
    if args.setsid:
        os.setsid()
    # argv[0] is what ps and psutil cmdline() show: make it look like p2pd.
    os.execv(sys.executable, ["fake-p2pd", str(Path(__file__).resolve()), *flags])  # noqa: S606
deadline = time.monotonic() + 10
while not args.pidfile.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
print("ready" if args.pidfile.exists() else "daemon did not start", flush=True)
while True:
    signal.pause()

"""`swarmd run`: the one long-lived command. Takes the state_dir and host-wide identity
locks, wires the real collaborators (spawner, clock, logs, metrics, notifier,
endpoints) into a `Supervisor`, runs it, and closes the logs last.

Why apart from `cli`: the other commands are short requests and reports; this one
owns locks, signal handlers and the daemon's whole lifetime.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from swarmd.errors import SwarmdError

if TYPE_CHECKING:
    from swarmd.config import Config
    from swarmd.identity import Holder, HostLocks

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """`swarmd run`: supervise the configured trainer until SIGTERM; the exit code."""
    from swarmd.clock import SystemClock
    from swarmd.config import load
    from swarmd.endpoints import ControlEndpoint, WebEndpoint
    from swarmd.log_files import MonitorLog
    from swarmd.logs import get_logger
    from swarmd.metrics import Metrics
    from swarmd.notify import Notifier
    from swarmd.signal_bridge import install
    from swarmd.spawn import PosixSpawner
    from swarmd.supervisor import Supervisor

    path = Path(args.config).resolve()
    config = load(path)
    config.state_dir.mkdir(parents=True, exist_ok=True)
    config.logs.dir.mkdir(parents=True, exist_ok=True)
    with _single_instance(config.state_dir / "swarmd.lock"), _host_locks(config) as (locks, shared_logs):
        metrics = Metrics()
        monitor = MonitorLog(config.logs, console_allowed=not args.no_console, watch=metrics.watch_log)
        log = get_logger()
        for followed, other in shared_logs:
            log.warning(
                "followed_log_shared", path=str(followed), other_swarmd=other.pid, other_config=other.config,
                swarmd=os.getpid(), config=config.source,
                fix="two daemons act on one log's lines: point each config at its own node's logs",
            )
        notifier = Notifier.from_env(os.environ)
        sup = Supervisor(
            config,
            clock=SystemClock(),
            spawner=PosixSpawner(),
            log=log,
            notifier=notifier,
            metrics=metrics,
            config_path=path,
            locks=locks,
        )
        sup.attach(monitor)
        sup.attach(ControlEndpoint(config, sup.snapshot, sup.post, sup.running_config))
        sup.attach(WebEndpoint(config, sup.snapshot, metrics, log))
        restore = install(sup.post)
        try:
            code = sup.run()  # starts the parts, and stops them before it returns
        finally:
            # Not the default handlers: a late SIGTERM of a storm must not turn a clean
            # stop (exit 0) into death by signal while we close the logs.
            restore()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_IGN)
            log.info("swarmd_exited", state=sup.state.value)
            notifier.close()
            monitor.close()
        return code


@contextlib.contextmanager
def _single_instance(lock_path: Path) -> Iterator[None]:
    """One swarmd per state_dir: two would run two trainers on one identity."""
    fh = lock_path.open("a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SwarmdError(
                f"{lock_path}: another swarmd already supervises this state_dir; fix: stop it first (`swarmd stop`)"
            ) from None
        yield
    finally:
        fh.close()


@contextlib.contextmanager
def _host_locks(config: Config) -> Iterator[tuple[HostLocks, list[tuple[Path, Holder]]]]:
    """One identity, one node, host-wide: hold the identity's lock for our life
    (another daemon on it: one line naming it, exit 3); record the followed logs and
    yield the locks (the supervisor adds the identity p2pd really runs with) and the
    logs another daemon already follows."""
    from swarmd.identity import HostLocks, default_lock_dir, resolve_identity

    trainer = config.trainer
    identity = resolve_identity(config.identity.path, dict(trainer.env), os.environ, trainer.command, trainer.cwd)
    lock_dir = config.identity.lock_dir or default_lock_dir()
    locks = HostLocks(lock_dir, pid=os.getpid(), config=config.source)
    try:
        try:
            if identity is not None:
                locks.claim_identity(identity)
            shared = [(path, other) for path in config.logs.follow if (other := locks.claim_follow(path)) is not None]
        except OSError as err:
            raise SwarmdError(
                f"{config.source}: cannot use the identity lock directory {lock_dir} ({err.strerror or err}); "
                "fix: set [identity] lock_dir to a directory this user can write"
            ) from None
        yield locks, shared
    finally:
        locks.release()

"""One identity, one node, host-wide: locks keyed by the node's identity, not by
`state_dir`.

Two nodes on one `swarm.pem` fight over one peer id: p2pd refuses the second
("identity is already taken") and a supervisor that restarts it loops until it gives
up, while the first node's peers see it flap. A second config copied with another
`state_dir` is the usual way there, so the lock lives in a host-wide directory
(`/run/lock/swarmd`) and is keyed twice: by the identity file's real path, and by a
hash of its bytes (a copy of the key elsewhere is the same identity). `flock` locks
die with their holder, so a killed swarmd never leaves a stale one behind.

The same directory records which daemon follows which log file: two daemons reading
one file is a copied config that was not fully edited.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarmd.errors import SwarmdError

DEFAULT_LOCK_DIRS = (Path("/run/lock/swarmd"), Path("/tmp/swarmd-locks"))  # noqa: S108 -- a shared, well-known place is the point
_IDENTITY_FLAGS = ("--identity_path", "--identity-path")
_READ_LIMIT = 1 << 20  # a libp2p RSA key file is ~1.2 KiB; anything larger is not one


class IdentityTaken(SwarmdError):  # noqa: N818 -- reads as the condition, like NotFound
    """Another swarmd already supervises a node with this identity."""

    exit_code = 3

    def __init__(self, identity: Path, holder: Holder | None) -> None:
        self.identity = identity
        self.holder = holder
        super().__init__(str(self))

    def __str__(self) -> str:
        who = "another swarmd" if self.holder is None else f"swarmd pid {self.holder.pid} (config {self.holder.config})"
        return (
            f"identity {self.identity} is already in use by {who}; two nodes on one swarm.pem fight over one "
            "peer id: stop that daemon, or give this node its own swarm.pem ([identity] path)"
        )


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a lock, as it wrote itself into the lock file."""

    pid: int
    config: str
    what: str


def resolve_identity(
    explicit: Path | None, trainer_env: Mapping[str, str], env: Mapping[str, str], command: Sequence[str], cwd: Path
) -> Path | None:
    """The node's identity file: the config key, else what the node itself will read
    (IDENTITY_PATH in the trainer's env or ours, as run_rl_swarm.sh does; an
    `--identity_path` argument), else upstream's default `<cwd>/swarm.pem` for
    run_rl_swarm.sh. None when nothing names one."""
    if explicit is not None:
        return explicit
    for source in (trainer_env, env):
        if source.get("IDENTITY_PATH"):
            return cwd / source["IDENTITY_PATH"]
    for i, arg in enumerate(command):
        for flag in _IDENTITY_FLAGS:
            if arg == flag and i + 1 < len(command):
                return cwd / command[i + 1]
            if arg.startswith(flag + "="):
                return cwd / arg.split("=", 1)[1]
    if any(Path(arg).name == "run_rl_swarm.sh" for arg in command):
        return cwd / "swarm.pem"
    return None


def identity_keys(identity: Path) -> list[str]:
    """Lock names for one identity: its real path, and its content when it exists
    (the node may create it on its first start)."""
    real = Path(os.path.realpath(identity))
    keys = ["path-" + hashlib.sha256(bytes(real)).hexdigest()[:24]]
    with contextlib.suppress(OSError):
        with real.open("rb") as fh:
            data = fh.read(_READ_LIMIT)
        if data:
            keys.append("key-" + hashlib.sha256(data).hexdigest()[:24])
    return keys


def default_lock_dir() -> Path:
    """The first shared directory we can use: /run/lock is host-wide (a unit's
    PrivateTmp hides /tmp from other units; /tmp is the fallback without /run/lock)."""
    for candidate in DEFAULT_LOCK_DIRS:
        try:
            _ensure_dir(candidate)
        except OSError:
            continue
        return candidate
    return DEFAULT_LOCK_DIRS[-1]


def _ensure_dir(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o755)
        # Sticky and world-writable like /run/lock itself: daemons of other users
        # (several node users on one host) must be able to create their locks here.
        path.chmod(0o1777)  # sticky: each user can remove only their own files
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "not writable", str(path))


class HostLocks:
    """The locks one swarmd holds for its life (`release` or process exit frees them)."""

    def __init__(self, lock_dir: Path, *, pid: int, config: str) -> None:
        self._dir = lock_dir
        self._pid = pid
        self._config = config
        self._held: dict[str, int] = {}

    def claim_identity(self, identity: Path) -> None:
        """Hold every key of `identity`, or hold none and raise `IdentityTaken`."""
        _ensure_dir(self._dir)
        taken: list[str] = []
        for key in identity_keys(identity):
            holder = self._claim(key, f"identity {identity}")
            if holder is not None:
                for mine in taken:
                    self._drop(mine)
                raise IdentityTaken(identity, holder if holder.pid else None)
            taken.append(key)

    def claim_follow(self, path: Path) -> Holder | None:
        """Record that we follow `path`; the other daemon that already does, if any
        (not an error: the caller warns)."""
        _ensure_dir(self._dir)
        real = Path(os.path.realpath(path))
        key = "follow-" + hashlib.sha256(bytes(real)).hexdigest()[:24]
        return self._claim(key, f"follows {real}")

    def release(self) -> None:
        for key in list(self._held):
            self._drop(key)

    def _claim(self, key: str, what: str) -> Holder | None:
        """Lock `key`; None when we hold it now, else who holds it (pid 0: unknown)."""
        if key in self._held:
            return None
        path = self._dir / f"{key}.lock"
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            return holder
        except OSError:
            os.close(fd)
            raise
        record = json.dumps({"pid": self._pid, "config": self._config, "what": what}).encode()
        with contextlib.suppress(OSError):  # read-only fd (another user's file): the lock still holds
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
        self._held[key] = fd
        return None

    def _drop(self, key: str) -> None:
        fd = self._held.pop(key, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last fd releases the flock


def _open_lock(path: Path) -> int:
    flags = os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, flags | os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        return os.open(path, flags | os.O_RDONLY)  # another user's lock file: flock works read-only


def _read_holder(fd: int) -> Holder:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid = data.get("pid")
    return Holder(
        pid if isinstance(pid, int) else 0,
        str(data.get("config", "?")),
        str(data.get("what", "")),
    )


def describe(holder: Holder) -> str:
    return f"swarmd pid {holder.pid} (config {shlex.quote(holder.config)})"

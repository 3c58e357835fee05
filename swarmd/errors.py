"""The few errors swarmd raises on purpose. Each `__str__` is one line naming the file
and the fix; `cli` is the only place that turns them into an exit code."""

from __future__ import annotations


class SwarmdError(Exception):
    """Base of every expected error; the CLI prints `str(err)` and exits `exit_code`."""

    exit_code = 1


class ConfigError(SwarmdError):
    """Raised when `monitor.toml` (or another config file) cannot be used.

    `line` is the 1-based line in `path` when the TOML parser or a key lookup knows it.
    """

    exit_code = 2

    def __init__(self, path: str, reason: str, *, key: str = "", line: int | None = None, fix: str = "") -> None:
        self.path = path
        self.key = key
        self.line = line
        self.reason = reason
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        key = f" [{self.key}]" if self.key else ""
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{where}:{key} {self.reason}{fix}"


class SpawnError(SwarmdError):
    """Raised when the trainer command cannot be started at all."""

    def __init__(self, argv0: str, reason: str, fix: str = "") -> None:
        self.argv0 = argv0
        self.reason = reason
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"cannot start {self.argv0!r}: {self.reason}{fix}"


class NotFound(SpawnError):  # noqa: N818 - supervisor's names, read as the OS error they map
    """The command does not exist (ENOENT): a typo or a missing install; fatal at once."""


class NotExecutable(SpawnError):  # noqa: N818 - as NotFound
    """The command exists but is not executable (EACCES on exec or ENOEXEC)."""


class NoPermission(SpawnError):  # noqa: N818 - as NotFound
    """The working directory or command is not accessible to this user."""


class ControlError(SwarmdError):
    """Raised by `swarmd status|restart|reload` when the daemon's control socket
    cannot be reached (daemon not running, or a different state_dir)."""

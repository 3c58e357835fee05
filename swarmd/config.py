"""`monitor.toml` -> typed, validated, frozen settings.

`parse(text, source, base_dir)` is pure (tested with strings); `load(path)` is the only
I/O and puts the path into every error. Relative paths in the file are resolved against
the directory of the file, so a unit installed under /etc/swarmd behaves the same as a
checkout. Two exceptions, because that is what an operator means by them: log file
names resolve under `logs.dir`, and `logs.follow` entries (files the trainer writes)
resolve against `trainer.cwd`.

The parser is strict on purpose: a daemon that silently ignores `stal_after = 60`
supervises with the wrong settings for weeks. Every error is one `ConfigError` line
with file, line, key, reason and fix; values of secret-looking keys never appear in it.

THE FIELD NAMES BELOW ARE THE CONTRACT other modules code against. The network
sections (`[probes]`, `[web]`, `[chain]`) are read in `config_net`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmd.config_net import (
    ChainConfig,
    ProbesConfig,
    WebConfig,
    read_chain,
    read_probes,
    read_web,
)
from swarmd.domain import Verdict
from swarmd.toml_reader import Context, Table, decode_toml, read_config_text, toml_type

DEFAULT_CONFIG_NAME = "monitor.toml"


@dataclass(frozen=True, slots=True)
class TrainerConfig:
    command: tuple[str, ...]
    cwd: Path
    env: tuple[tuple[str, str], ...] = ()
    # Lines written to the child's stdin at start (answers to interactive prompts of an
    # unmodified run_rl_swarm.sh); stdin is closed afterwards.
    stdin_lines: tuple[str, ...] = ()
    stop_timeout: float = 30.0  # SIGTERM to the group, then SIGKILL after this
    # Upstream run_rl_swarm.sh exits 0 on failure (W1): treat exit 0 as a crash.
    exit_zero_is_failure: bool = False
    # Exit codes that mean "do not restart, alert" (e.g. 2 for a config/usage error).
    fatal_exit_codes: tuple[int, ...] = (2, 78)


@dataclass(frozen=True, slots=True)
class LogsConfig:
    dir: Path
    trainer_log: Path  # absolute (dir / name)
    monitor_log: Path  # absolute
    max_bytes: int = 50 * 1024 * 1024
    keep: int = 5
    compress: bool = True
    follow: tuple[Path, ...] = ()  # extra files the trainer writes, followed and classified
    console: bool = True  # also render monitor events readably on stderr


@dataclass(frozen=True, slots=True)
class RestartConfig:
    initial_delay: float = 5.0
    max_delay: float = 900.0
    multiplier: float = 2.0
    jitter: float = 1.0  # seconds of uniform jitter added (tenacity wait_random)
    min_interval: float = 1.0  # never start twice within this many seconds
    healthy_reset_after: float = 600.0  # running this long resets the back-off
    crash_loop_max: int = 10  # this many restarts ...
    crash_loop_window: float = 3600.0  # ... within this many seconds -> fatal
    on_fatal: str = "exit"  # "exit" (non-zero) or "wait" (stay up, serve status, await SIGHUP)
    # After an OOM restart, extra env applied to the next start (e.g. smaller batch).
    oom_fallback_env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class HealthConfig:
    heartbeat_file: Path  # absolute; default state_dir/trainer.json
    stall_after: float = 1800.0  # floor for stall detection
    stall_step_factor: float = 3.0  # stall = max(stall_after, factor * longest recent step)
    startup_grace: float = 300.0  # no stall verdict this long after a start, or until the first progress
    min_peers: int = 0  # 0 disables the peer check
    peers_grace: float = 120.0  # peers below min for this long -> reconnect
    reconnect_attempts: int = 3  # SIGUSR1 tries before a restart
    reconnect_timeout: float = 120.0  # wait this long for peers after a SIGUSR1
    ready_on: str = "progress"  # "progress" (first progress line/heartbeat) or "start"
    # Until READY, ask systemd for more start time (EXTEND_TIMEOUT_USEC) for at most
    # this long after swarmd's start; 0: never (TimeoutStartSec alone decides).
    ready_timeout: float = 3600.0
    # A DHT fault (p2pd gone or silent, peers lost): "signal" asks the node to
    # re-bootstrap in place (SIGUSR1, only if it catches it), "restart" restarts it.
    reconnect: str = "signal"


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    # The node's libp2p key file (absolute). None: what the node itself reads
    # (IDENTITY_PATH, --identity_path, run_rl_swarm.sh's <cwd>/swarm.pem).
    path: Path | None = None
    # Host-wide directory of identity locks. None: /run/lock/swarmd, else /tmp/swarmd-locks.
    lock_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A classifier rule from `[[rules]]`; a name equal to a built-in replaces it."""

    name: str
    pattern: str
    verdict: str  # a Verdict value, e.g. "restart"
    kind: str = ""
    enabled: bool = True
    exception: str = ""  # a traceback's final exception type (e.g. "ModuleNotFoundError")


@dataclass(frozen=True, slots=True)
class Config:
    source: str  # the path (or "<string>") the config came from; used in errors
    state_dir: Path
    trainer: TrainerConfig
    logs: LogsConfig
    restart: RestartConfig
    health: HealthConfig
    probes: ProbesConfig
    web: WebConfig
    rules: tuple[RuleSpec, ...] = ()
    control_socket: Path = field(default=Path("swarmd.sock"))  # absolute after parse
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)


# --------------------------------------------------------------------------- public API


def load(path: Path) -> Config:
    """Read and parse one config file; every failure is a one-line `ConfigError`."""
    return parse(read_config_text(path, DEFAULT_CONFIG_NAME), str(path), path.absolute().parent)


def parse(text: str, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Parse and validate config text; `base_dir` anchors relative paths (default: cwd)."""
    ctx = Context(source, text)
    data = decode_toml(text, ctx)
    return _build_config(Table(data, "", ctx), base_dir if base_dir is not None else Path.cwd())


# ------------------------------------------------------------------------ the sections


def _fields(cls: type[Any]) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


_SECTIONS = frozenset({"trainer", "logs", "restart", "health", "probes", "web", "rules", "control", "identity", "chain"})
_TRAINER_DEFAULTS = TrainerConfig(command=(), cwd=Path())
_LOGS_DEFAULTS = LogsConfig(dir=Path(), trainer_log=Path(), monitor_log=Path())
_HEALTH_DEFAULTS = HealthConfig(heartbeat_file=Path())


def _build_config(root: Table, base: Path) -> Config:
    root.reject_unknown(_SECTIONS | {"state_dir"})
    state_dir = root.path("state_dir", base / "state", base)
    trainer = _trainer(root.child("trainer", _fields(TrainerConfig)), base)
    control = root.child("control", {"socket"})
    socket = control.path("socket", state_dir / "swarmd.sock", base)
    # AF_UNIX paths are limited to 108 bytes (sun_path) including the NUL.
    if len(str(socket).encode("utf-8", "surrogateescape")) > 107:
        raise control.error("socket", f"control socket path is longer than 107 bytes ({socket})",
                            "use a shorter state_dir, or set [control] socket to a short absolute path")
    return Config(
        source=root.ctx.source,
        state_dir=state_dir,
        trainer=trainer,
        logs=_logs(root.child("logs", _fields(LogsConfig)), base, trainer.cwd),
        restart=_restart(root.child("restart", _fields(RestartConfig))),
        health=_health(root.child("health", _fields(HealthConfig)), base, state_dir),
        probes=read_probes(root.child("probes", _fields(ProbesConfig))),
        web=read_web(root.child("web", _fields(WebConfig))),
        rules=_rules(root.children("rules", _fields(RuleSpec))),
        control_socket=socket,
        identity=_identity(root.child("identity", _fields(IdentityConfig)), trainer.cwd, base),
        chain=read_chain(root.child("chain", _fields(ChainConfig))),
    )


def _command(t: Table) -> tuple[str, ...]:
    fix = 'e.g. command = ["python", "-m", "trainer"]'
    if not t.has("command"):
        raise t.error("command", "is required: the trainer command to supervise", f"add to [trainer]: {fix}")
    value = t.data["command"]
    if isinstance(value, str):
        try:
            argv = tuple(shlex.split(value))
        except ValueError as exc:
            raise t.error("command", f"cannot split the command string: {exc}", "fix the quoting, or give a list of strings") from None
        if any("\x00" in arg for arg in argv):
            raise t.error("command", "contains a NUL character")
    else:
        argv = t.strings("command")
    if not argv or not argv[0].strip():
        raise t.error("command", "is empty", fix)
    return argv


def _trainer(t: Table, base: Path) -> TrainerConfig:
    d = _TRAINER_DEFAULTS
    command = _command(t)
    codes = t.data.get("fatal_exit_codes", list(d.fatal_exit_codes))
    if not isinstance(codes, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in codes):
        raise t.error("fatal_exit_codes", f"must be an array of integers, got {toml_type(codes)}")
    if any(not 0 <= c <= 255 for c in codes):
        raise t.error("fatal_exit_codes", "exit codes must be between 0 and 255")
    lines = t.strings("stdin_lines")
    if any("\n" in line or "\r" in line for line in lines):
        raise t.error("stdin_lines", "an entry contains a newline", "give one array entry per line")
    return TrainerConfig(
        command=command,
        cwd=t.path("cwd", base, base),
        env=t.string_table("env"),
        stdin_lines=lines,
        stop_timeout=t.duration("stop_timeout", d.stop_timeout),
        exit_zero_is_failure=t.boolean("exit_zero_is_failure", d.exit_zero_is_failure),
        fatal_exit_codes=tuple(codes),
    )


def _logs(t: Table, base: Path, trainer_cwd: Path) -> LogsConfig:
    d = _LOGS_DEFAULTS
    log_dir = t.path("dir", base / "logs", base)
    return LogsConfig(
        dir=log_dir,
        trainer_log=t.path("trainer_log", log_dir / "trainer.log", log_dir),
        monitor_log=t.path("monitor_log", log_dir / "monitor.log", log_dir),
        max_bytes=t.size("max_bytes", d.max_bytes),
        keep=t.integer("keep", d.keep, low=0),
        compress=t.boolean("compress", d.compress),
        follow=tuple(_follow(t, trainer_cwd)),
        console=t.boolean("console", d.console),
    )


def _follow(t: Table, trainer_cwd: Path) -> list[Path]:
    paths = []
    for entry in t.strings("follow"):
        if not entry or entry.startswith("~"):
            raise t.error("follow", "entries must be non-empty paths without '~'", "write absolute paths or paths relative to trainer.cwd")
        paths.append(trainer_cwd / entry)
    return paths


def _restart(t: Table) -> RestartConfig:
    d = RestartConfig()
    initial = t.duration("initial_delay", d.initial_delay, allow_zero=True)
    maximum = t.duration("max_delay", d.max_delay)
    if maximum < initial:
        culprit = "max_delay" if t.has("max_delay") else "initial_delay"
        raise t.error(culprit, f"max_delay ({maximum:g}s) is less than initial_delay ({initial:g}s)",
                      "make max_delay at least initial_delay")
    min_interval = t.duration("min_interval", d.min_interval, allow_zero=True)
    if min_interval > maximum:
        # Both are promises (never slower than max_delay, never faster than
        # min_interval); they cannot both hold the other way round.
        raise t.error("min_interval", f"min_interval ({min_interval:g}s) is more than max_delay ({maximum:g}s)",
                      "make min_interval at most max_delay")
    return RestartConfig(
        initial_delay=initial,
        max_delay=maximum,
        multiplier=t.number("multiplier", d.multiplier, low=1.0),
        jitter=t.duration("jitter", d.jitter, allow_zero=True),
        min_interval=min_interval,
        healthy_reset_after=t.duration("healthy_reset_after", d.healthy_reset_after),
        crash_loop_max=t.integer("crash_loop_max", d.crash_loop_max, low=1),
        crash_loop_window=t.duration("crash_loop_window", d.crash_loop_window),
        on_fatal=t.string("on_fatal", d.on_fatal, choices=("exit", "wait")),
        oom_fallback_env=t.string_table("oom_fallback_env"),
    )


def _health(t: Table, base: Path, state_dir: Path) -> HealthConfig:
    d = _HEALTH_DEFAULTS
    return HealthConfig(
        heartbeat_file=t.path("heartbeat_file", state_dir / "trainer.json", base),
        stall_after=t.duration("stall_after", d.stall_after),
        stall_step_factor=t.number("stall_step_factor", d.stall_step_factor, low=1.0),
        startup_grace=t.duration("startup_grace", d.startup_grace, allow_zero=True),
        min_peers=t.integer("min_peers", d.min_peers, low=0),
        peers_grace=t.duration("peers_grace", d.peers_grace, allow_zero=True),
        reconnect_attempts=t.integer("reconnect_attempts", d.reconnect_attempts, low=0),
        reconnect_timeout=t.duration("reconnect_timeout", d.reconnect_timeout),
        ready_on=t.string("ready_on", d.ready_on, choices=("progress", "start")),
        ready_timeout=t.duration("ready_timeout", d.ready_timeout, allow_zero=True),
        reconnect=t.string("reconnect", d.reconnect, choices=("signal", "restart")),
    )


def _identity(t: Table, trainer_cwd: Path, base: Path) -> IdentityConfig:
    # The key file is the node's: relative to trainer.cwd, as the node resolves it.
    path = t.path("path", Path(), trainer_cwd) if t.has("path") else None
    lock_dir = t.path("lock_dir", Path(), base) if t.has("lock_dir") else None
    return IdentityConfig(path=path, lock_dir=lock_dir)


_VERDICTS = tuple(v.value for v in Verdict)


def _rules(tables: list[Table]) -> tuple[RuleSpec, ...]:
    specs: list[RuleSpec] = []
    for t in tables:
        name = t.string("name", "", required=True)
        exception = t.string("exception", "")
        if exception and not re.fullmatch(r"[A-Za-z_][\w.]*", exception):
            raise t.error("exception", f"{exception!r} is not an exception class name",
                          "use the type a traceback ends with, e.g. 'ModuleNotFoundError' or 'torch.OutOfMemoryError'")
        # A rule matches lines (pattern), a traceback's final exception (exception), or both.
        pattern = t.string("pattern", "", required=not exception)
        if not name.strip():
            raise t.error("name", "must not be empty", "give the rule a short name, e.g. 'p2pd-timeout'")
        if any(spec.name == name for spec in specs):
            raise t.error("name", f"duplicate rule name {name!r}", "give each [[rules]] entry its own name")
        if not pattern and not exception:
            raise t.error("pattern", "must not be empty", "a regular expression matching the log line")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise t.error("pattern", f"invalid regular expression: {exc}",
                          "escape special characters with '\\'; TOML '...' strings keep backslashes as written") from None
        except (OverflowError, RecursionError, ValueError):
            raise t.error("pattern", "regular expression too large or deeply nested", "simplify it") from None
        verdict = t.string("verdict", "", required=True)
        if verdict not in _VERDICTS:
            close = difflib.get_close_matches(verdict, _VERDICTS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise t.error("verdict", f"unknown verdict {verdict!r}", f"{hint}one of: {', '.join(_VERDICTS)}")
        specs.append(RuleSpec(name=name, pattern=pattern, verdict=verdict,
                              kind=t.string("kind", ""), enabled=t.boolean("enabled", True), exception=exception))
    return tuple(specs)

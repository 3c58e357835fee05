"""`swarmd run | status | check-config | restart | reload | stop | tail | classify`.

Holds no logic of its own: it parses arguments, wires the real collaborators
together, and is the only place that turns a `SwarmdError` into one stderr line and
an exit code (no tracebacks for expected errors). `run` itself lives in `run_command`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarmd import __version__, run_command
from swarmd.errors import SwarmdError

if TYPE_CHECKING:
    pass

DEFAULT_CONFIG = "monitor.toml"
_CORPUS_HEADERS = ("# source:", "# class:", "# expect:")


# What a shell reports for a command that SIGPIPE ended: `swarmd status | head` then
# reads like any other Unix tool's.
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit:  # --help, --version and usage errors end here
            sys.stdout.flush()
            raise
        try:
            result: int = args.func(args)
        except SwarmdError as err:
            print(f"swarmd: {err}", file=sys.stderr)
            return err.exit_code
        except KeyboardInterrupt:
            return 130
        # Flush here, not at interpreter exit: a reader that went away must be seen
        # while we can still handle it.
        sys.stdout.flush()
    except BrokenPipeError:
        return _reader_went_away()
    return result


def _reader_went_away() -> int:
    """The reader of stdout closed its end (`| head`): stop printing, quietly.

    Python ignores SIGPIPE, so the write raised instead; what is still buffered would
    raise again when the interpreter flushes stdout at exit, so stdout is pointed at
    /dev/null first (the recipe in Python's `signal` documentation).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="swarmd", description="Supervise an RL swarm training node.")
    p.add_argument("--version", action="version", version=f"swarmd {__version__}")
    sub = p.add_subparsers(dest="verb", required=True)

    def cmd(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(func=func)
        return sp

    run = cmd("run", run_command.run, "supervise the configured trainer until SIGTERM")
    run.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="monitor.toml (default: ./monitor.toml)")
    run.add_argument("--no-console", action="store_true", help="do not echo monitor events on stderr")
    for name, func, help_ in (
        ("status", _status, "show the running daemon's state"),
        ("restart", _control, "restart the trainer now (no back-off)"),
        ("reload", _control, "re-read monitor.toml and restart the trainer (--dry-run: show what would change)"),
        ("stop", _control, "stop the trainer and the daemon"),
    ):
        sp = cmd(name, func, help_)
        sp.add_argument("--config", "-c", default=DEFAULT_CONFIG)
        if name == "status":
            sp.add_argument("--json", action="store_true", help="print the raw status as JSON")
        if name == "reload":
            sp.add_argument("--dry-run", action="store_true", help="print what a reload would change; change nothing")
    chk = cmd("check-config", _check_config, "validate a monitor.toml; exit 2 with file:line on error")
    chk.add_argument("file", nargs="?", default=DEFAULT_CONFIG)
    chk.add_argument("--diff", action="store_true", help="also print what a reload would change in the running daemon")
    chk.add_argument("--socket", type=Path, help="the running daemon's control socket, if the file moves it")
    tail = cmd("tail", _tail, "follow monitor.log with human formatting")
    tail.add_argument("--config", "-c", default=DEFAULT_CONFIG)
    tail.add_argument("-n", type=int, default=20, help="lines of history to show first")
    tail.add_argument("--no-follow", action="store_true", help="print the last lines and exit")
    cls = cmd("classify", _classify, "print FILE<TAB>VERDICT: what swarmd would do after reading each log")
    cls.add_argument("files", nargs="+", type=Path)
    cls.add_argument("--config", "-c", default=None, help="use the [[rules]] of this monitor.toml too")
    cls.add_argument("-v", "--verbose", action="store_true",
                     help="also print the rule, the fix and the block (traceback or lines) that decided")
    cls.add_argument("--json", action="store_true", help="one JSON object per file (verdict, rule, kind, fix, block)")
    return p


# -- talking to a running daemon ------------------------------------------------------------------
def _socket_for(config_arg: str) -> Path:
    from swarmd.config import load

    return load(Path(config_arg).resolve()).control_socket


def _control(args: argparse.Namespace) -> int:
    from swarmd.control import request

    if getattr(args, "dry_run", False):
        return _print_diff(Path(args.config).resolve(), None)
    reply = request(_socket_for(args.config), args.verb)
    if not reply.get("ok"):
        print(f"swarmd: {reply.get('error', 'request refused')}", file=sys.stderr)
        return 1
    print(f"{args.verb}: queued")
    return 0


def _status(args: argparse.Namespace) -> int:
    from swarmd.control import request

    reply = request(_socket_for(args.config), "status")
    status = reply.get("status", {})
    if args.json:
        print(json.dumps(status, indent=2, default=str))
    else:
        print(render_status(status, color=sys.stdout.isatty() and "NO_COLOR" not in os.environ))
    return 0


_STATE_COLORS = {"running": "32", "degraded": "33", "reconnecting": "33", "backoff": "33", "restarting": "33", "fatal": "31", "starting": "36"}


def render_status(s: dict[str, Any], color: bool = False) -> str:
    from swarmd.status_lines import chain_line, p2pd_line

    """The `swarmd status` table; pure so it is tested without a daemon."""

    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color and code else text

    def dur(v: Any) -> str:
        if v is None:
            return "-"
        secs = int(float(v))
        h, rem = divmod(secs, 3600)
        m, sec = divmod(rem, 60)
        return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"

    state = str(s.get("state", "?"))
    by_reason = s.get("restarts_by_reason") or {}
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(by_reason.items(), key=lambda kv: -kv[1])) or "-"
    decision = s.get("last_decision") or {}
    rewards = [r for _, r in (s.get("reward_history") or [])][-8:]
    trend = " ".join(f"{r:.2f}" for r in rewards) or "-"
    rows = [
        ("state", paint(state, _STATE_COLORS.get(state, ""))),
        ("trainer pid", str(s.get("pid") or "-")),
        ("uptime", dur(s.get("uptime_s"))),
        ("restarts", f"{s.get('restarts', 0)} ({reasons})"),
        ("last decision", f"{decision.get('action', '-')}: {decision.get('reason', '')}" if decision else "-"),
        ("evidence", str(decision.get("evidence", "-"))[:160] if decision else "-"),
        ("last signal", f"{(s.get('last_signal') or {}).get('kind', '-')}"),
        ("round / stage", f"{s.get('round', '-')} / {s.get('stage', '-')}"),
        ("peers", str(s.get("peers") if s.get("peers") is not None else "-")),
        ("peer", f"{s.get('animal') or '-'} {s.get('peer_id') or ''}".strip()),
        ("p2pd", p2pd_line(s.get("dht") or {})),
        ("chain", chain_line(s.get("chain") or {})),
        ("chain queue", "-" if s.get("chain_queue") is None else f"{s['chain_queue']} submissions waiting"),
        ("last progress", f"{dur(s.get('last_progress_age_s'))} ago" if s.get("last_progress_age_s") is not None else "-"),
        ("reward trend", trend),
        ("config", str(s.get("config_path", "-"))),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# -- offline tools -------------------------------------------------------------------------------
def _check_config(args: argparse.Namespace) -> int:
    from swarmd.config import load

    cfg = load(Path(args.file).resolve())
    print(f"{args.file}: ok (trainer: {' '.join(cfg.trainer.command)})")
    return _print_diff(Path(args.file).resolve(), args.socket) if args.diff else 0


def _print_diff(path: Path, socket: Path | None) -> int:
    """What a reload with `path` would change against the daemon's running config."""
    from swarmd.config import load
    from swarmd.config_diff import flatten, render_diff
    from swarmd.control import request

    new = load(path)
    reply = request(socket or new.control_socket, "config")
    running = reply.get("config")
    if not reply.get("ok") or not isinstance(running, dict):
        raise SwarmdError(f"{socket or new.control_socket}: the daemon did not send its config; fix: update swarmd and restart it")
    lines = render_diff(running, flatten(new))
    print("\n".join(lines) if lines else "a reload would change nothing")
    return 0


def read_log_lines(path: Path) -> list[str]:
    """A log file as lines: bytes decoded with replacement, split on \\n and \\r (tqdm
    frames), and the corpus header lines dropped."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SwarmdError(f"{path}: cannot read ({err.strerror}); fix: check the path and permissions") from None
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return [ln for ln in text.split("\n") if not ln.startswith(_CORPUS_HEADERS)]


# A file where no rule matched: nothing to act on, the node writes output.
_NO_SIGNAL_VERDICT = "healthy_progress"
_BLOCK_HEAD, _BLOCK_TAIL = 8, 24  # lines of a long deciding traceback shown by -v


def _classify(args: argparse.Namespace) -> int:
    from swarmd.analyze import judge_lines
    from swarmd.classify import Classifier
    from swarmd.user_rules import build_rules

    specs: tuple[Any, ...] = ()
    if args.config:
        from swarmd.config import load

        specs = load(Path(args.config).resolve()).rules
    classifier = Classifier(build_rules(specs))
    for path in args.files:
        judged = judge_lines(read_log_lines(path), classifier)
        verdict = judged.verdict.value if judged.verdict else _NO_SIGNAL_VERDICT
        top = judged.deciding[0] if judged.deciding else None
        if args.json:
            print(json.dumps({
                "file": str(path),
                "verdict": verdict,
                "rule": top.rule if top else None,
                "kind": top.kind if top else None,
                "fix": (top.fix or None) if top else None,
                "block": list(top.block or (top.line,)) if top else [],
                "deciding": [{"rule": s.rule, "kind": s.kind, "line": s.line} for s in judged.deciding],
            }, ensure_ascii=False))
            continue
        print(f"{path}\t{verdict}")
        if args.verbose:
            _print_decision(judged.deciding)
    return 0


def _print_decision(deciding: Sequence[Any]) -> None:
    if not deciding:
        print("\t(no rule matched: nothing to act on)")
        return
    top = deciding[0]
    print(f"\trule: {top.rule} (kind {top.kind})")
    if top.fix:
        print(f"\tfix: {top.fix}")
    block = list(top.block) or [top.line]
    if len(block) > _BLOCK_HEAD + _BLOCK_TAIL:
        skipped = len(block) - _BLOCK_HEAD - _BLOCK_TAIL
        block = [*block[:_BLOCK_HEAD], f"... ({skipped} lines) ...", *block[-_BLOCK_TAIL:]]
    for line in block:
        print(f"\t| {line.rstrip()[:300]}")
    for sig in deciding[1:4]:
        print(f"\talso: {sig.rule}: {sig.line.strip()[:200]}")


def _tail(args: argparse.Namespace) -> int:
    from swarmd.clock import SystemClock
    from swarmd.config import load
    from swarmd.follow import FileFollower
    from swarmd.logs import configure

    path = load(Path(args.config).resolve()).logs.monitor_log
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    try:
        history = path.read_bytes()
    except FileNotFoundError:
        raise SwarmdError(f"{path}: no monitor log yet; fix: start swarmd with `swarmd run`") from None
    # Only complete lines: a half-written last line is printed whole by the follower.
    done = history.rfind(b"\n") + 1
    lines = history[:done].splitlines()[-args.n :] if args.n > 0 else []
    for raw in lines:
        print(format_event(raw.decode("utf-8", "replace"), color), flush=True)
    if args.no_follow:
        return 0
    # The same follower the daemon uses: it survives rotation, truncation and deletion.
    # Its own notes (rotated, reopened) are the daemon's business, not this output's.
    configure(None, None)
    follower = FileFollower([path], lambda _p, line, _t: print(format_event(line, color), flush=True), clock=SystemClock())
    follower.start({path: done})
    try:
        threading.Event().wait()
    finally:
        follower.stop()
    return 0


_LEVEL_COLORS = {"debug": "2", "info": "32", "warning": "33", "error": "31", "critical": "1;31"}


def format_event(line: str, color: bool = False) -> str:
    """One monitor.log JSON line -> `time LEVEL event key=value ...`; decisions stand out."""
    line = line.rstrip("\n")
    try:
        ev = json.loads(line)
    except ValueError:
        return line
    if not isinstance(ev, dict):
        return line
    ts = str(ev.pop("ts", ""))[11:19]
    level = str(ev.pop("level", "info"))
    event = str(ev.pop("event", ""))
    rest = " ".join(f"{k}={v}" for k, v in ev.items() if v not in (None, ""))

    def paint(text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if color else text

    lvl = paint(f"{level.upper():<7}", _LEVEL_COLORS.get(level, ""))
    if event in ("decision", "alert", "state_changed"):
        event = paint(event, "1;35" if event != "alert" else "1;31")
    return f"{ts} {lvl} {event} {rest}".rstrip()



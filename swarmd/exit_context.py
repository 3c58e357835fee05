"""The child exited: exit status + the last uncaught traceback + the faults before it
-> one verdict with its reason.

Why one pure function: the exit status alone says little (`1` for every Python crash,
`137` for every SIGKILL, `0` from launchers that swallow errors), and the last line
alone misleads (the upstream launcher prints ">> An error was detected…" after the real
cause). Together they decide: a fatal cause stops restarts at once, instead of burning
`crash_loop_max` restarts on an install that cannot work; and SIGKILL is not called an
OOM unless the kernel said so (only then is `oom_fallback_env` armed).
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass

from swarmd.domain import Signal, Verdict

__all__ = ["CONFIRMED_OOM_KINDS", "ExitFacts", "ExitVerdict", "judge_exit"]

# Kinds whose evidence is the kernel's own OOM record: the only proof of an OOM kill.
CONFIRMED_OOM_KINDS = frozenset({"kernel_oom"})
# The launcher's generic line: evidence of a death, never a cause when one is known.
_GENERIC_EXIT_KINDS = frozenset({"trainer_exited"})


@dataclass(frozen=True, slots=True)
class ExitFacts:
    returncode: int
    crash: Signal | None = None  # the last uncaught traceback of this run
    faults: Sequence[Signal] = ()  # fault signals of this run, oldest first
    kernel_oom: str = ""  # the kernel's record of an OOM kill of this run's tree
    exit_zero_is_failure: bool = False
    fatal_exit_codes: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class ExitVerdict:
    """`verdict` None: a deliberate, clean exit (nothing to do)."""

    verdict: Verdict | None
    kind: str
    evidence: str
    fix: str = ""

    @property
    def oom_confirmed(self) -> bool:
        return self.kind in CONFIRMED_OOM_KINDS


def judge_exit(facts: ExitFacts) -> ExitVerdict:
    rc = facts.returncode
    if facts.kernel_oom:
        return ExitVerdict(Verdict.RESTART_AFTER_CLEANUP, "kernel_oom", facts.kernel_oom)
    cause = _cause(facts)
    if cause is not None and cause.verdict in (Verdict.GIVE_UP_FATAL, Verdict.OPERATOR_NEEDED):
        # A restart fails the same way (or asks the same unanswered question): stop now.
        return ExitVerdict(Verdict.GIVE_UP_FATAL, cause.kind, cause.line, cause.fix)
    if rc in facts.fatal_exit_codes:
        evidence = cause.line if cause else f"trainer exited with code {rc}"
        return ExitVerdict(Verdict.GIVE_UP_FATAL, f"exit_code_{rc}_is_fatal", evidence)
    if rc == 0 and not facts.exit_zero_is_failure and cause is None:
        return ExitVerdict(None, "clean_exit", "trainer exited with code 0")
    if cause is not None:
        if cause.kind in CONFIRMED_OOM_KINDS or cause.verdict is Verdict.RESTART_AFTER_CLEANUP:
            return ExitVerdict(Verdict.RESTART_AFTER_CLEANUP, cause.kind, cause.line)
        return ExitVerdict(Verdict.RESTART, cause.kind, cause.line)
    if rc in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return ExitVerdict(
            Verdict.RESTART,
            "killed_sigkill",
            f"trainer killed by SIGKILL (rc={rc}); the kernel reported no OOM kill, so not treated as OOM",
        )
    if rc < 0:
        return ExitVerdict(Verdict.RESTART, f"killed_signal_{-rc}", f"trainer killed by signal {-rc}")
    return ExitVerdict(Verdict.RESTART, "exit_nonzero", f"trainer exited with code {rc}")


def _cause(facts: ExitFacts) -> Signal | None:
    """The most telling fault: the most severe; on a tie a whole traceback before a
    bare line, a specific cause before the launcher's generic line, then the latest."""
    best: Signal | None = None
    best_key: tuple[int, int, int, int] | None = None
    pool = [*facts.faults, *([facts.crash] if facts.crash is not None else [])]
    for order, sig in enumerate(pool):
        if not sig.verdict.is_fault:
            continue
        key = (sig.verdict.severity, sig.kind not in _GENERIC_EXIT_KINDS, bool(sig.block), order)
        if best_key is None or key > best_key:
            best, best_key = sig, key
    return best

"""Exit status + last traceback + faults before it -> one verdict (pure)."""

from __future__ import annotations

import pytest

from swarmd.domain import Signal, Verdict
from swarmd.exit_context import ExitFacts, judge_exit

V = Verdict


def fault(kind: str, verdict: Verdict, *, block: bool = False, fix: str = "") -> Signal:
    lines = ("Traceback (most recent call last):", f"{kind}Error: x") if block else ()
    return Signal(kind, verdict, f"{kind} line", block=lines, fix=fix)


LAUNCHER = fault("trainer_exited", V.RESTART)


def test_fatal_traceback_stops_restarts_at_once_with_its_fix() -> None:
    crash = fault("dependency_missing", V.GIVE_UP_FATAL, block=True, fix="install hydra")
    got = judge_exit(ExitFacts(1, crash=crash, faults=[LAUNCHER]))
    assert (got.verdict, got.kind, got.fix) == (V.GIVE_UP_FATAL, "dependency_missing", "install hydra")


def test_launcher_line_after_the_real_cause_does_not_hide_it() -> None:
    crash = fault("network_error", V.RESTART, block=True)
    got = judge_exit(ExitFacts(1, crash=None, faults=[crash, LAUNCHER]))
    assert got.kind == "network_error"


def test_launcher_line_alone_is_a_restart() -> None:
    assert judge_exit(ExitFacts(0, faults=[LAUNCHER])).verdict is V.RESTART


@pytest.mark.parametrize("rc", [137, -9])
def test_sigkill_without_kernel_record_is_a_plain_restart_not_oom(rc: int) -> None:
    got = judge_exit(ExitFacts(rc))
    assert (got.verdict, got.kind, got.oom_confirmed) == (V.RESTART, "killed_sigkill", False)
    assert "not treated as OOM" in got.evidence


@pytest.mark.parametrize("rc", [137, -9])
def test_kernel_confirmed_oom_restarts_after_cleanup_and_is_confirmed(rc: int) -> None:
    record = "Out of memory: Killed process 4242 (python) total-vm:1kB"
    got = judge_exit(ExitFacts(rc, kernel_oom=record))
    assert (got.verdict, got.kind, got.evidence, got.oom_confirmed) == (
        V.RESTART_AFTER_CLEANUP,
        "kernel_oom",
        record,
        True,
    )


def test_shell_killed_line_cleans_up_but_is_not_a_confirmed_oom() -> None:
    got = judge_exit(ExitFacts(137, faults=[fault("os_oom_killed", V.RESTART_AFTER_CLEANUP)]))
    assert (got.verdict, got.oom_confirmed) == (V.RESTART_AFTER_CLEANUP, False)


def test_clean_exit_zero_is_nothing_unless_configured_as_failure() -> None:
    assert judge_exit(ExitFacts(0)).verdict is None
    assert judge_exit(ExitFacts(0, exit_zero_is_failure=True)).verdict is V.RESTART


def test_configured_fatal_exit_code_gives_up() -> None:
    got = judge_exit(ExitFacts(78, fatal_exit_codes=frozenset({78})))
    assert (got.verdict, got.kind) == (V.GIVE_UP_FATAL, "exit_code_78_is_fatal")


def test_transient_noise_before_exit_is_not_the_cause() -> None:
    got = judge_exit(ExitFacts(1, faults=[fault("reward_submit", V.TRANSIENT_IGNORE)]))
    assert got.kind == "exit_nonzero"


def test_waiting_for_a_person_then_exiting_gives_up_with_the_operator_fix() -> None:
    wait = fault("operator_needed", V.OPERATOR_NEEDED, fix="log in")
    got = judge_exit(ExitFacts(1, faults=[wait]))
    assert (got.verdict, got.fix) == (V.GIVE_UP_FATAL, "log in")


def test_other_signal_is_named() -> None:
    assert judge_exit(ExitFacts(-11)).kind == "killed_signal_11"

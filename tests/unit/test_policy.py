"""The pure recovery policy: signals, exits and ticks in, decisions out, on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.backoff import Backoff
from swarmd.config import HealthConfig, RestartConfig, TrainerConfig
from swarmd.domain import Action, Health, Signal, Verdict
from swarmd.policy import Policy


def _policy(
    *, restart: RestartConfig | None = None, health: HealthConfig | None = None, trainer: TrainerConfig | None = None
) -> Policy:
    restart = restart or RestartConfig(jitter=0.0)
    health = health or HealthConfig(heartbeat_file=Path("hb.json"), stall_after=600.0, startup_grace=60.0)
    trainer = trainer or TrainerConfig(command=("t",), cwd=Path())
    p = Policy(trainer, health, Backoff(restart))
    p.child_started(0.0)
    return p


def sig(verdict: Verdict, kind: str = "k", **kw: float) -> Signal:
    return Signal(kind=kind, verdict=verdict, line=f"{kind} line", **kw)  # type: ignore[arg-type]


def test_p2pd_timeout_line_restarts_with_the_first_backoff_delay() -> None:
    """A restart-class line restarts after the initial delay, with the line as evidence."""
    d = _policy().on_signal(sig(Verdict.RESTART, "p2pd_startup_timeout"), 5.0)
    assert d.action is Action.RESTART
    assert d.reason == "p2pd_startup_timeout"
    assert d.evidence == "p2pd_startup_timeout line"
    assert d.delay == 5.0


def test_oom_kill_line_asks_for_cleanup_before_restart() -> None:
    """restart_after_cleanup lines map to the cleanup action."""
    d = _policy().on_signal(sig(Verdict.RESTART_AFTER_CLEANUP, "os_oom_killed"), 1.0)
    assert d.action is Action.RESTART_AFTER_CLEANUP


def test_fatal_line_gives_up_at_once() -> None:
    """A fault restarting cannot fix (AA24, broken install) gives up with no delay."""
    d = _policy().on_signal(sig(Verdict.GIVE_UP_FATAL, "install_broken"), 1.0)
    assert d.action is Action.GIVE_UP


@pytest.mark.parametrize("verdict", [Verdict.HEALTHY_PROGRESS, Verdict.HEALTHY_IDLE, Verdict.TRANSIENT_IGNORE])
def test_benign_lines_decide_nothing(verdict: Verdict) -> None:
    """Progress, idle waiting and transient reward errors never cause an action."""
    assert _policy().on_signal(sig(verdict), 1.0).action is Action.NONE


def test_dht_rpc_error_reconnects_in_place_then_restarts_after_failed_attempts() -> None:
    """reconnect_dht sends SIGUSR1 up to reconnect_attempts times; then a restart."""
    health = HealthConfig(heartbeat_file=Path("h"), reconnect_attempts=2, reconnect_timeout=30.0)
    p = _policy(health=health)
    ok = Health(network_ok=True)
    assert p.on_signal(sig(Verdict.RECONNECT_DHT, "dht_rpc_error"), 10.0).action is Action.RECONNECT_DHT
    assert p.on_signal(sig(Verdict.RECONNECT_DHT, "dht_rpc_error"), 11.0).action is Action.NONE  # burst
    assert p.on_tick(41.0, ok).action is Action.RECONNECT_DHT  # first attempt timed out
    d = p.on_tick(72.0, ok)  # second attempt timed out too
    assert d.action is Action.RESTART
    assert "after_2_reconnects" in d.reason


def test_progress_after_reconnect_counts_as_success() -> None:
    """A progress line after the SIGUSR1 clears the pending reconnect and its failures."""
    p = _policy()
    p.on_signal(sig(Verdict.RECONNECT_DHT), 10.0)
    p.on_signal(sig(Verdict.HEALTHY_PROGRESS), 20.0)
    assert not p.reconnect_pending
    assert p.on_tick(500.0, Health(network_ok=True)).action is Action.NONE


def test_repeated_restart_signals_walk_the_backoff_curve() -> None:
    """The policy paces restarts: a burst walks the back-off, never restarts faster."""
    p = _policy()
    delays = [p.on_signal(sig(Verdict.RESTART), 1.0 + i / 100).delay for i in range(3)]
    assert delays == [5.0, 10.0, 20.0]


@pytest.mark.parametrize(
    ("rc", "action", "reason"),
    [
        (1, Action.RESTART, "exit_nonzero"),
        # SIGKILL is not OOM unless the kernel says so (#9): a plain restart.
        (137, Action.RESTART, "killed_sigkill"),
        (-9, Action.RESTART, "killed_sigkill"),
        (-11, Action.RESTART, "killed_signal_11"),
        (2, Action.GIVE_UP, "exit_code_2_is_fatal"),
        (78, Action.GIVE_UP, "exit_code_78_is_fatal"),
        (0, Action.NONE, "clean_exit"),
    ],
)
def test_exit_codes_map_to_actions(rc: int, action: Action, reason: str) -> None:
    """Config errors are fatal at once, 137/SIGKILL a plain restart, 0 is a deliberate stop."""
    d = _policy().on_exit(rc, 5.0)
    assert (d.action, d.reason) == (action, reason)


def test_exit_zero_is_a_crash_when_configured() -> None:
    """Upstream run_rl_swarm.sh exits 0 on failure: with exit_zero_is_failure it restarts."""
    p = _policy(trainer=TrainerConfig(command=("t",), cwd=Path(), exit_zero_is_failure=True))
    assert p.on_exit(0, 5.0).action is Action.RESTART


def test_exit_after_a_fault_line_uses_that_line_as_reason() -> None:
    """The evidence of an exit is the last fault line seen before it."""
    p = _policy()
    p.on_signal(sig(Verdict.RESTART, "dht_bootstrap_failed"), 1.0)
    d = p.on_exit(1, 2.0)
    assert d.reason == "dht_bootstrap_failed"


def test_exit_after_a_fatal_line_gives_up() -> None:
    """An import error followed by exit 1 is fatal, not a restart loop."""
    p = _policy()
    p.on_signal(sig(Verdict.GIVE_UP_FATAL, "dependency_error"), 1.0)
    assert p.on_exit(1, 2.0).action is Action.GIVE_UP


def test_crash_loop_turns_into_give_up() -> None:
    """crash_loop_max restarts inside the window -> give up with the crash_loop reason."""
    p = _policy(restart=RestartConfig(jitter=0.0, crash_loop_max=3, crash_loop_window=100.0))
    actions = [p.on_exit(1, float(t)).action for t in range(4)]
    assert actions == [Action.RESTART, Action.RESTART, Action.RESTART, Action.GIVE_UP]


def test_stall_threshold_adapts_to_slow_cpu_steps() -> None:
    """A 860 s/it CPU step raises the stall threshold to 3 x 860 s."""
    p = _policy()
    p.on_signal(sig(Verdict.HEALTHY_PROGRESS, step_seconds=860.0), 10.0)
    assert p.stall_threshold() == pytest.approx(2580.0)
    assert p.on_tick(10.0 + 2000.0, Health()).action is Action.NONE
    d = p.on_tick(10.0 + 2581.0, Health())
    assert (d.action, d.reason) == (Action.RESTART, "stall")


def test_trainer_backoff_of_900s_is_never_a_stall() -> None:
    """'Next check in 900.0s' extends the silence allowed to 3 x 900 s."""
    p = _policy()
    p.on_signal(sig(Verdict.HEALTHY_IDLE, wait_seconds=900.0), 10.0)
    assert p.on_tick(10.0 + 1500.0, Health()).action is Action.NONE


def test_no_stall_verdict_while_the_network_is_down() -> None:
    """A network outage holds every restart: waiting is the only useful action."""
    p = _policy()
    assert p.on_tick(5000.0, Health(network_ok=False)).action is Action.NONE


def test_lost_peers_reconnect_after_grace() -> None:
    """Fewer peers than min_peers for peers_grace -> SIGUSR1 first."""
    p = _policy(health=HealthConfig(heartbeat_file=Path("h"), min_peers=2, peers_grace=60.0))
    few = Health(network_ok=True, peers=0)
    assert p.on_tick(10.0, few).action is Action.NONE
    assert p.on_tick(50.0, few).action is Action.NONE
    d = p.on_tick(71.0, few)
    assert (d.action, d.reason) == (Action.RECONNECT_DHT, "peers_lost")


def test_reconnect_mode_restart_restarts_on_every_dht_fault() -> None:
    """A node that cannot re-bootstrap in place (upstream) is restarted, never signalled."""
    health = HealthConfig(heartbeat_file=Path("h"), reconnect="restart", min_peers=2, peers_grace=10.0)
    dead = Health(network_ok=True, p2pd_alive=False, p2pd_evidence="p2pd (pid 7) gone for 2.0s")
    d = _policy(health=health).on_tick(30.0, dead)
    assert (d.action, d.reason, d.evidence) == (Action.RESTART, "p2pd_gone", "p2pd (pid 7) gone for 2.0s")
    assert _policy(health=health).on_signal(sig(Verdict.RECONNECT_DHT, "dht_error"), 5.0).action is Action.RESTART
    p = _policy(health=health)
    p.on_tick(10.0, Health(network_ok=True, peers=0))
    assert p.on_tick(21.0, Health(network_ok=True, peers=0)).action is Action.RESTART


def test_the_dht_fault_cause_is_the_reason_and_a_live_p2pd_heals_it() -> None:
    p = _policy()
    silent = Health(network_ok=True, p2pd_alive=False, p2pd_evidence="no answer", dht_fault="p2pd_silent")
    d = p.on_tick(30.0, silent)
    assert (d.action, d.reason, d.evidence) == (Action.RECONNECT_DHT, "p2pd_silent", "no answer")
    healed = p.on_tick(35.0, Health(network_ok=True, p2pd_alive=True))
    assert (healed.action, healed.reason) == (Action.NONE, "reconnected")


def test_dead_p2pd_with_a_live_trainer_reconnects_first() -> None:
    """p2pd gone while the trainer lives: re-bootstrap in place before any restart."""
    d = _policy().on_tick(30.0, Health(network_ok=True, p2pd_alive=False))
    assert (d.action, d.reason) == (Action.RECONNECT_DHT, "p2pd_gone")


def test_kernel_confirmed_oom_exit_restarts_after_cleanup() -> None:
    """Only the kernel's OOM record turns a SIGKILL into an OOM (cleanup first)."""
    d = _policy().on_exit(-9, 5.0, kernel_oom="Out of memory: Killed process 7 (python)")
    assert (d.action, d.reason) == (Action.RESTART_AFTER_CLEANUP, "kernel_oom")


def test_fatal_traceback_at_exit_gives_up_at_once_with_the_fix() -> None:
    """A crash whose cause a restart cannot fix stops restarts with the first exit."""
    crash = Signal("dependency_missing", Verdict.GIVE_UP_FATAL, "ModuleNotFoundError: No module named 'hydra'",
                   block=("Traceback (most recent call last):",), fix="install hydra")
    d = _policy().on_exit(1, 5.0, crash=crash)
    assert (d.action, d.reason) == (Action.GIVE_UP, "dependency_missing")
    assert "install hydra" in d.evidence


def test_startup_grace_holds_stall_verdicts_only_until_the_first_progress() -> None:
    """Silence within the grace is the start (loading, bootstrap); after real progress
    the start is over and the stall threshold alone judges, grace or not."""
    health = HealthConfig(heartbeat_file=Path("hb.json"), stall_after=10.0, startup_grace=90.0)
    loading = _policy(health=health)
    loading.child_started(0.0)
    assert loading.on_tick(80.0, Health()).action is Action.NONE
    assert loading.on_tick(91.0, Health()).reason == "stall"
    started = _policy(health=health)
    started.child_started(0.0)
    started.on_signal(Signal("round", Verdict.HEALTHY_PROGRESS, "Starting round: 0/1000000."), 20.0)
    assert started.on_tick(29.0, Health()).action is Action.NONE
    assert started.on_tick(31.0, Health()).reason == "stall"


def test_startup_lines_do_not_reset_the_stall_clock() -> None:
    """Greetings and loading bars are not progress: a node that only greets stalls."""
    p = _policy()
    for t in range(0, 700, 10):
        assert p.on_signal(sig(Verdict.HEALTHY_PROGRESS, "startup"), float(t)).action is Action.NONE
    assert p.on_tick(701.0, Health()).reason == "stall"


def test_operator_wait_loop_waits_for_the_operator_instead_of_restarting() -> None:
    """A node waiting for its API key is reported once as operator_needed and is never
    stall-restarted while it waits; progress ends the episode."""
    p = _policy()
    wait = Signal("operator_wait", Verdict.HEALTHY_IDLE, "Waiting for API key to be activated...")
    decisions = []
    for t in range(0, 3000, 5):
        decisions.append(p.on_signal(wait, float(t)))
        decisions.append(p.on_tick(float(t) + 1, Health()))
    acted = [d for d in decisions if d.action is not Action.NONE]
    assert [d.action for d in acted] == [Action.WAIT_OPERATOR]
    assert p.operator_needed
    p.on_signal(sig(Verdict.HEALTHY_PROGRESS, "round"), 3001.0)
    assert not p.operator_needed


def test_unanswered_prompt_then_silence_waits_for_the_operator_with_the_fix() -> None:
    """A question followed by silence is the node waiting for an answer: no stall
    restart, and the alert says where the answers go."""
    p = _policy()
    prompt = Signal("prompt", Verdict.HEALTHY_IDLE, "Push models to the Hub? [y/N]", rule="prompt_unanswered")
    assert p.on_signal(prompt, 70.0).action is Action.NONE
    d = p.on_tick(700.0, Health())
    assert (d.action, d.reason) == (Action.WAIT_OPERATOR, "operator_needed")
    assert "[y/N]" in d.evidence
    assert "stdin_lines" in d.evidence
    assert p.on_tick(2000.0, Health()).action is Action.NONE


def test_operator_needed_signal_waits_once() -> None:
    p = _policy()
    s = Signal("operator_needed", Verdict.OPERATOR_NEEDED, "Waiting...", fix="log in")
    first = p.on_signal(s, 1.0)
    assert (first.action, first.reason) == (Action.WAIT_OPERATOR, "operator_needed")
    assert "log in" in first.evidence
    assert p.on_signal(s, 2.0).action is Action.NONE

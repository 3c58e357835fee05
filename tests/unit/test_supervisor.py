"""The supervisor's state machine, replayed with a fake clock and a recording spawner.

Each test reads as a history: events in, then the (from, to, reason) transitions, the
spawner's calls and the signals the child received. Real threads still run (the stop
worker), so `pump` drains the event queue with a bounded wait.
"""

from __future__ import annotations

import errno
import queue
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from swarmd.clock import FakeClock
from swarmd.config import (
    Config,
    HealthConfig,
    LogsConfig,
    ProbesConfig,
    RestartConfig,
    TrainerConfig,
    WebConfig,
)
from swarmd.domain import Signal, State, Verdict
from swarmd.errors import NotFound
from swarmd.events import ChildDown, ChildExited, KernelOom, LineSeen
from swarmd.metrics import Metrics
from swarmd.process import ProcRef
from swarmd.signal_bridge import OsSignal
from swarmd.supervisor import Supervisor
from tests.fakes.doubles import FakeSpawner


def make_config(tmp: Path, **restart: Any) -> Config:
    state = tmp / "state"
    logs = tmp / "logs"
    return Config(
        source=str(tmp / "monitor.toml"),
        state_dir=state,
        trainer=TrainerConfig(command=("trainer", "--demo"), cwd=tmp, stop_timeout=0.3, env=(("A", "1"),)),
        logs=LogsConfig(dir=logs, trainer_log=logs / "trainer.log", monitor_log=logs / "monitor.log", compress=False),
        restart=RestartConfig(**{"jitter": 0.0, **restart}),
        health=HealthConfig(heartbeat_file=state / "trainer.json"),
        probes=ProbesConfig(),
        web=WebConfig(),
        control_socket=state / "swarmd.sock",
    )


class Harness:
    def __init__(self, tmp: Path, spawner: FakeSpawner, **restart: Any) -> None:
        self.clock = FakeClock()
        self.spawner = spawner
        self.config = make_config(tmp, **restart)
        self.sup = Supervisor(
            self.config,
            clock=self.clock,
            spawner=spawner,
            log=structlog.get_logger(),
            metrics=Metrics(),
            env={"PATH": "/usr/bin", "NOTIFY_SOCKET": "/run/x"},
            config_path=tmp / "monitor.toml",
        )

    def line(self, verdict: Verdict, kind: str = "k", gen: int | None = None, **kw: Any) -> None:
        sig = Signal(kind=kind, verdict=verdict, line=f"{kind}: evidence", **kw)
        self.sup.handle(LineSeen(gen or self.sup.generation, sig, self.clock.monotonic(), "stdout"))

    def pump(self, until: type, timeout: float = 5.0) -> None:
        """Handle queued events until one of type `until` was handled."""
        while True:
            try:
                ev = self.sup.events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {until.__name__} within {timeout}s; state={self.sup.state}") from None
            self.sup.handle(ev)
            if isinstance(ev, until):
                return

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.sup.tick()


@pytest.fixture
def spawner() -> Iterator[FakeSpawner]:
    sp = FakeSpawner()
    yield sp
    sp.close_all()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as cap:
        yield cap


@pytest.fixture
def h(tmp_path: Path, spawner: FakeSpawner) -> Iterator[Harness]:
    harness = Harness(tmp_path, spawner)
    yield harness
    harness.sup.close()


def transitions(logs: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["from"], e["to"], e["reason"]) for e in logs if e["event"] == "state_changed"]


def test_start_spawns_the_command_with_env_and_without_notify_socket(h: Harness, logs: list[dict[str, Any]]) -> None:
    """The child gets the configured argv, cwd and env, never systemd's NOTIFY_SOCKET."""
    h.sup.start()
    call = h.spawner.calls[0]
    assert call.argv == ("trainer", "--demo")
    assert call.env["A"] == "1"
    assert "NOTIFY_SOCKET" not in call.env
    assert h.sup.state is State.STARTING


def test_first_progress_line_makes_the_node_running_and_ready(h: Harness, logs: list[dict[str, Any]]) -> None:
    """starting -> running happens on the first progress line, with a ready event."""
    h.sup.start()
    h.line(Verdict.HEALTHY_PROGRESS, "round_join", round=3, stage=0)
    assert h.sup.state is State.RUNNING
    assert any(e["event"] == "ready" for e in logs)
    assert h.sup.snapshot()["round"] == 3


def test_p2pd_error_line_restarts_after_backoff(h: Harness, logs: list[dict[str, Any]]) -> None:
    """A restart-class line: running -> restarting -> backoff (5 s) -> starting, one new spawn."""
    h.sup.start()
    h.line(Verdict.HEALTHY_PROGRESS)
    h.line(Verdict.RESTART, "p2pd_startup_timeout")
    h.pump(ChildDown)
    assert h.spawner.children[0].group_signals[0] == signal.SIGTERM
    assert h.sup.state is State.BACKOFF
    h.advance(4.0)
    assert len(h.spawner.calls) == 1
    h.advance(1.5)
    assert len(h.spawner.calls) == 2
    assert transitions(logs)[1:] == [
        ("starting", "running", "progress_seen"),
        ("running", "restarting", "p2pd_startup_timeout"),
        ("restarting", "backoff", "p2pd_startup_timeout"),
        ("backoff", "starting", "child_started"),
    ]
    decision = next(e for e in logs if e["event"] == "decision")
    assert decision["evidence"] == "p2pd_startup_timeout: evidence"
    assert decision["next_backoff"] == 5.0


def test_a_burst_of_error_lines_causes_one_restart(h: Harness) -> None:
    """100 P2PDaemonError lines in a second -> one restart decision, not 100."""
    h.sup.start()
    for _ in range(100):
        h.line(Verdict.RESTART, "p2pd_startup_timeout")
    h.pump(ChildDown)
    assert h.sup.restarts == 1


def test_lines_of_a_previous_child_are_not_acted_on(h: Harness) -> None:
    """The dying child's last words are logged but decide nothing."""
    h.sup.start()
    h.line(Verdict.RESTART, "p2pd_startup_timeout")
    h.pump(ChildDown)
    h.advance(6.0)
    h.line(Verdict.RESTART, "p2pd_startup_timeout", gen=1)
    assert h.sup.state is State.STARTING
    assert h.sup.restarts == 1


def test_crash_loop_backs_off_then_goes_fatal_and_exits_nonzero(tmp_path: Path, spawner: FakeSpawner, logs: list[dict[str, Any]]) -> None:
    """Exit 1 at every start: back-off 5, 10, 20 s, then fatal with an alert and exit code 1."""
    h = Harness(tmp_path, spawner, crash_loop_max=3, crash_loop_window=600.0)
    h.sup.start()
    delays = []
    for _ in range(3):
        spawner.last.exit(1)
        h.pump(ChildDown)
        assert h.sup.state is State.BACKOFF
        delays.append(h.sup.snapshot()["next_start_in_s"])
        h.advance(delays[-1] + 0.01)
    spawner.last.exit(1)
    h.pump(ChildDown)
    h.sup.close()
    assert delays == [5.0, 10.0, 20.0]
    assert h.sup.state is State.FATAL
    assert h.sup.exit_code == 1
    alert = next(e for e in logs if e["event"] == "alert")
    assert alert["reason"] == "crash_loop"


def test_fatal_line_stops_the_trainer_and_alerts(h: Harness, logs: list[dict[str, Any]]) -> None:
    """A give_up_fatal line (e.g. AA24 signature error) stops a still-running trainer."""
    h.sup.start()
    h.line(Verdict.GIVE_UP_FATAL, "modal_auth_signature_error")
    h.pump(ChildDown)
    assert h.sup.state is State.FATAL
    assert signal.SIGTERM in h.spawner.children[0].group_signals
    assert any(e["event"] == "alert" and e["reason"] == "modal_auth_signature_error" for e in logs)


def test_missing_command_is_fatal_at_once(h: Harness) -> None:
    """ENOENT on spawn is a config problem: fatal, no restart loop."""
    h.spawner.fail_next(NotFound("trainer", "no such file", "fix the command"))
    h.sup.start()
    assert h.sup.state is State.FATAL
    assert h.sup.exit_code == 1


def test_eagain_on_spawn_backs_off_and_retries(h: Harness) -> None:
    """A transient fork failure (EAGAIN) is retried after the back-off."""
    h.spawner.fail_next(errno.EAGAIN)
    h.sup.start()
    assert h.sup.state is State.BACKOFF
    h.advance(5.1)
    assert len(h.spawner.calls) == 2
    assert h.sup.state is State.STARTING


def test_sigterm_stops_gracefully_and_exits_zero(h: Harness, logs: list[dict[str, Any]]) -> None:
    """SIGTERM: TERM to the group, stopped, exit code 0."""
    h.sup.start()
    h.sup.handle(OsSignal(signal.SIGTERM))
    h.pump(ChildDown)
    assert h.sup.state is State.STOPPED
    assert h.sup.exit_code == 0
    assert h.spawner.children[0].group_signals == [signal.SIGTERM]


def test_second_sigterm_during_stop_escalates_to_sigkill(tmp_path: Path, logs: list[dict[str, Any]]) -> None:
    """A trainer that ignores TERM is KILLed at once on a second SIGTERM."""
    spawner = FakeSpawner(ignore_term=True)
    h = Harness(tmp_path, spawner)
    try:
        h.sup.start()
        h.sup.handle(OsSignal(signal.SIGTERM))
        h.sup.handle(OsSignal(signal.SIGTERM))
        h.pump(ChildDown)
        assert signal.SIGKILL in spawner.children[0].group_signals
        assert any(e["event"] == "stop_escalated" for e in logs)
    finally:
        h.sup.close()
        spawner.close_all()


def test_sighup_during_shutdown_is_ignored(tmp_path: Path, spawner: FakeSpawner, logs: list[dict[str, Any]]) -> None:
    """Once stopping, a SIGHUP neither reloads nor restarts."""
    h = Harness(tmp_path, FakeSpawner(ignore_term=True))
    try:
        h.sup.start()
        h.sup.handle(OsSignal(signal.SIGTERM))
        h.sup.handle(OsSignal(signal.SIGHUP))
        assert h.sup.state is State.STOPPING
        assert any(e["event"] == "sighup_ignored" for e in logs)
        h.pump(ChildDown)  # let the stop worker finish while its log lines are captured
    finally:
        h.sup.close()
        h.spawner.close_all()


def test_sighup_with_a_broken_config_keeps_the_old_one_and_the_trainer(h: Harness, logs: list[dict[str, Any]]) -> None:
    """A broken monitor.toml on SIGHUP is rejected with its error; nothing restarts."""
    Path(h.config.source).write_text("[trainer\ncommand = 1\n")
    h.sup.start()
    h.sup.handle(OsSignal(signal.SIGHUP))
    rejected = next(e for e in logs if e["event"] == "config_rejected")
    assert "monitor.toml" in rejected["error"]
    assert len(h.spawner.calls) == 1
    assert h.sup.state is State.STARTING
    assert h.sup.config is h.config


def test_sigusr1_is_passed_to_the_trainer_as_a_reconnect(h: Harness) -> None:
    """SIGUSR1 to swarmd -> SIGUSR1 to the trainer, state reconnecting."""
    h.sup.start()
    h.line(Verdict.HEALTHY_PROGRESS)
    h.sup.handle(OsSignal(signal.SIGUSR1))
    assert h.spawner.children[0].signals == [signal.SIGUSR1]
    assert h.sup.state is State.RECONNECTING


def test_a_trainer_without_a_sigusr1_handler_is_restarted_never_signalled(h: Harness, logs: list[dict[str, Any]]) -> None:
    """SIGUSR1's default action kills: no handler, no signal; a restart, with the fix."""
    h.sup.start()
    h.spawner.last.unhandled.add(signal.SIGUSR1)
    h.line(Verdict.HEALTHY_PROGRESS)
    h.sup.handle(OsSignal(signal.SIGUSR1))
    assert h.spawner.children[0].signals == []
    refused = next(e for e in logs if e["event"] == "reconnect_signal_not_caught")
    assert refused["pid"] == h.spawner.children[0].pid
    assert 'reconnect = "restart"' in refused["fix"]
    assert h.sup.state is State.RESTARTING


def test_unexpected_sigkill_is_a_plain_restart_without_oom_fallback(tmp_path: Path, spawner: FakeSpawner, logs: list[dict[str, Any]]) -> None:
    """kill -9 with no kernel OOM record: restart, and the OOM fallback env stays unarmed
    (#9: a SIGKILL is not an OOM unless the kernel says so; this test used to expect it armed)."""
    h = Harness(tmp_path, spawner, oom_fallback_env=(("BATCH", "1"),))
    try:
        h.sup.start()
        spawner.last.exit(-9)
        h.pump(ChildDown)
        h.advance(5.1)
        assert len(spawner.calls) == 2
        assert "BATCH" not in spawner.calls[-1].env
        assert not any(e["event"] == "oom_fallback_applied" for e in logs)
    finally:
        h.sup.close()


def test_kernel_confirmed_oom_restarts_with_cleanup_and_oom_fallback(tmp_path: Path, spawner: FakeSpawner, logs: list[dict[str, Any]]) -> None:
    """The kernel's OOM record: restart_after_cleanup, and the OOM fallback env on the next start."""
    h = Harness(tmp_path, spawner, oom_fallback_env=(("BATCH", "1"),))
    try:
        h.sup.start()
        h.line(Verdict.RESTART_AFTER_CLEANUP, "kernel_oom")
        h.pump(ChildDown)
        h.advance(5.1)
        assert spawner.calls[-1].env["BATCH"] == "1"
        assert any(e["event"] == "oom_fallback_applied" for e in logs)
    finally:
        h.sup.close()


def test_operator_needed_is_a_state_with_an_alert_and_progress_leaves_it(h: Harness, logs: list[dict[str, Any]]) -> None:
    """Waiting for a person: state operator_needed, an alert with the fix, no restart."""
    h.sup.start()
    h.line(Verdict.OPERATOR_NEEDED, "operator_needed")
    assert h.sup.state is State.OPERATOR_NEEDED
    assert any(e["event"] == "alert" and e.get("reason") == "operator_needed" for e in logs)
    assert len(h.spawner.calls) == 1
    h.line(Verdict.HEALTHY_PROGRESS, "round", round=1)
    assert h.sup.state is State.RUNNING


def test_clean_exit_stops_the_supervisor(h: Harness) -> None:
    """Exit 0 is a deliberate stop (supervisord's expected exit): swarmd exits 0."""
    h.sup.start()
    h.spawner.last.exit(0)
    h.pump(ChildDown)
    assert h.sup.state is State.STOPPED
    assert h.sup.exit_code == 0


def test_exit_event_of_an_old_generation_is_ignored(h: Harness) -> None:
    """A late exit notice for a replaced child changes nothing."""
    h.sup.start()
    h.sup.handle(ChildExited(gen=99, returncode=1))
    assert h.sup.state is State.STARTING


def _record_tree(h: Harness, name: str) -> int:
    """Put the fake trainer in its run's recorded tree, as remember_tree does for a real one."""
    run = h.sup.machine.run
    assert run is not None
    pid = run.child.pid
    run.refs[(pid, 1.0)] = ProcRef(pid, 1.0, name, ("python",))
    return pid


def test_kernel_oom_record_for_a_process_of_the_tree_restarts_after_cleanup(tmp_path: Path, spawner: FakeSpawner, logs: list[dict[str, Any]]) -> None:
    """The kernel log reader's record (a recorded one here) for our pid: restart after
    cleanup with the kernel's line, and the OOM fallback env armed."""
    h = Harness(tmp_path, spawner, oom_fallback_env=(("BATCH", "1"),))
    try:
        h.sup.start()
        pid = _record_tree(h, "python")
        line = f"Out of memory: Killed process {pid} (python) total-vm:8123456kB"
        h.sup.handle(KernelOom(pid, "python", line))
        decision = next(e for e in logs if e["event"] == "decision")
        assert (decision["action"], decision["reason"], decision["evidence"]) == ("restart_after_cleanup", "kernel_oom", line)
        h.pump(ChildDown)
        h.advance(5.1)
        assert spawner.calls[-1].env["BATCH"] == "1"
    finally:
        h.sup.close()


def test_kernel_oom_record_for_another_process_is_ignored(h: Harness, logs: list[dict[str, Any]]) -> None:
    h.sup.start()
    pid = _record_tree(h, "python")
    h.sup.handle(KernelOom(pid + 100_000, "python", "Out of memory: Killed process 1 (python)"))
    h.sup.handle(KernelOom(pid, "bash", "Out of memory: Killed process x (bash)"))  # a reused pid
    assert not any(e["event"] == "decision" for e in logs)
    assert h.sup.state is State.STARTING


def test_fatal_traceback_on_the_pipe_gives_up_at_once(h: Harness, logs: list[dict[str, Any]]) -> None:
    """A crash whose cause a restart cannot fix: fatal at once, no restart burnt."""
    h.sup.start()
    crash = Signal("dependency_missing", Verdict.GIVE_UP_FATAL, "ModuleNotFoundError: No module named 'hydra'",
                   block=("Traceback (most recent call last):", "ModuleNotFoundError: No module named 'hydra'"),
                   fix="install hydra")
    h.sup.handle(LineSeen(h.sup.generation, crash, h.clock.monotonic(), "stdout"))
    assert h.sup.state is State.FATAL
    assert len(h.spawner.calls) == 1
    assert "install hydra" in next(e for e in logs if e["event"] == "decision")["evidence"]


def test_restartable_traceback_waits_for_the_exit_which_names_it(h: Harness, logs: list[dict[str, Any]]) -> None:
    """An uncaught network error: no restart while the process may still go on; its exit
    is then judged with the traceback, not as a bare 'exit 1'."""
    h.sup.start()
    crash = Signal("network_error", Verdict.RESTART, "ConnectionRefusedError: [Errno 111] Connection refused",
                   block=("Traceback (most recent call last):", "ConnectionRefusedError: [Errno 111] Connection refused"))
    h.sup.handle(LineSeen(h.sup.generation, crash, h.clock.monotonic(), "stdout"))
    assert not any(e["event"] == "decision" for e in logs)
    h.spawner.last.exit(1)
    h.pump(ChildExited)
    decision = next(e for e in logs if e["event"] == "decision")
    assert (decision["action"], decision["reason"]) == ("restart", "network_error")

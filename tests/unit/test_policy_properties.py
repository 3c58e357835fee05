"""Properties of the recovery pacing, for any history (hypothesis).

Two levels, because the promises live at two levels:
- the back-off alone: every delay is within its cap, for any restart configuration
  and any spacing of restarts;
- the supervisor (FakeClock + FakeSpawner, as in test_supervisor.py) driven by random
  histories of classified lines of every verdict, exits, probe results, operator
  signals and clock advances: no decision's back-off exceeds `max_delay`, no two starts
  of the trainer are closer than `min_interval`, and `fatal` is left only by SIGHUP
  (reload) or an operator restart. This is where min_interval and fatal are real: the
  supervisor, not the policy, turns a delay into a start and owns the state.
"""

from __future__ import annotations

import queue
import signal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from swarmd.backoff import Backoff
from swarmd.clock import FakeClock
from swarmd.config import RestartConfig
from swarmd.control import ControlRequest
from swarmd.domain import ProbeResult, Signal, State, Verdict
from swarmd.events import LineSeen, ProbeDone
from swarmd.metrics import Metrics
from swarmd.signal_bridge import OsSignal
from swarmd.supervisor import Supervisor
from tests.fakes.doubles import FakeSpawner
from tests.unit.test_supervisor import make_config

seconds = st.floats(min_value=0.0, max_value=3600.0, allow_nan=False)


@st.composite
def restart_configs(draw: st.DrawFn) -> RestartConfig:
    initial = draw(st.floats(min_value=0.0, max_value=60.0))
    maximum = draw(st.floats(min_value=max(initial, 0.01), max_value=1800.0))
    return RestartConfig(
        initial_delay=initial,
        max_delay=maximum,
        multiplier=draw(st.floats(min_value=1.0, max_value=10.0)),
        jitter=draw(st.floats(min_value=0.0, max_value=120.0)),
        # config.py does not forbid min_interval > max_delay; then both promises cannot hold.
        min_interval=draw(st.floats(min_value=0.0, max_value=maximum)),
        crash_loop_max=draw(st.integers(min_value=1, max_value=20)),
        crash_loop_window=draw(st.floats(min_value=1.0, max_value=7200.0)),
    )


@given(cfg=restart_configs(), gaps=st.lists(seconds, min_size=1, max_size=40))
def test_backoff_delay_never_exceeds_the_cap(cfg: RestartConfig, gaps: list[float]) -> None:
    """Whatever the curve, jitter and min_interval, no delay is above max_delay or below 0."""
    b = Backoff(cfg)
    now = 0.0
    for gap in gaps:
        now += gap
        delay = b.next_delay(now)
        assert 0.0 <= delay <= cfg.max_delay
        b.started(now + delay)
        now += delay


# -- the supervisor -------------------------------------------------------------------------

MIN_INTERVAL = 3.0
MAX_DELAY = 40.0

_kinds = {v: f"{v.value}_kind" for v in Verdict}
step = st.one_of(
    st.tuples(st.just("line"), st.sampled_from(list(Verdict))),
    st.tuples(st.just("exit"), st.sampled_from([0, 1, 2, 78, 137, -9, -11, 143])),
    st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=120.0)),
    st.tuples(st.just("probe"), st.booleans()),
    st.tuples(st.just("signal"), st.sampled_from([signal.SIGUSR1, signal.SIGHUP])),
    st.tuples(st.just("control"), st.just("restart")),
)
_LEAVES_FATAL = {("signal", signal.SIGHUP), ("control", "restart")}


class Driver:
    """Replays one history on a supervisor, recording start times and decisions."""

    def __init__(self, tmp: Path) -> None:
        self.clock = FakeClock()
        self.spawner = FakeSpawner()
        cfg = make_config(
            tmp, initial_delay=1.0, max_delay=MAX_DELAY, multiplier=3.0, jitter=5.0, min_interval=MIN_INTERVAL,
            crash_loop_max=4, crash_loop_window=300.0, on_fatal="wait",
        )
        Path(cfg.source).write_text('[trainer]\ncommand = ["trainer", "--demo"]\n[restart]\non_fatal = "wait"\n'
                                    f"min_interval = {MIN_INTERVAL}\nmax_delay = {MAX_DELAY}\n")
        self.decisions: list[dict[str, Any]] = []
        self.sup = Supervisor(cfg, clock=self.clock, spawner=self.spawner, log=self, metrics=Metrics(),
                              env={"PATH": "/usr/bin"}, config_path=Path(cfg.source))
        self.starts: list[float] = []

    # the supervisor's logger: keep the decisions, drop the rest
    def __getattr__(self, level: str) -> Any:
        def emit(event: str, **kw: Any) -> None:
            if event == "decision":
                self.decisions.append(kw)
        return emit

    def spawned(self) -> None:
        while len(self.starts) < len(self.spawner.calls):
            self.starts.append(self.clock.monotonic())

    def settle(self, timeout: float = 5.0) -> None:
        """Handle what the worker threads post until a stop or an exit is complete."""
        while self.sup.settling:
            self._one(timeout)
        while True:
            try:
                ev = self.sup.events.get_nowait()
            except queue.Empty:
                return
            self.sup.handle(ev)

    def _one(self, timeout: float) -> None:
        try:
            ev = self.sup.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event from the workers within {timeout}s; state={self.sup.state}") from None
        self.sup.handle(ev)

    def do(self, kind: str, arg: Any) -> None:
        sup = self.sup
        if kind == "line":
            sig = Signal(kind=_kinds[arg], verdict=arg, line=f"{arg.value} evidence")
            sup.handle(LineSeen(sup.generation, sig, self.clock.monotonic(), "stdout"))
        elif kind == "exit":
            run = sup.current
            if run is not None and run.exited is None and not run.stopping:
                self.spawner.last.exit(arg)
                while sup.current is run and run.exited is None:
                    self._one(5.0)  # the exit waiter thread reports it
        elif kind == "advance":
            self.clock.advance(arg)
            sup.tick()
        elif kind == "probe":
            sup.handle(ProbeDone(ProbeResult("network", arg, "probe")))
        elif kind == "signal":
            sup.handle(OsSignal(arg))
        elif kind == "control":
            sup.handle(ControlRequest(arg))
        self.settle()
        self.spawned()

    def close(self) -> None:
        self.sup.close()
        self.spawner.close_all()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(step, min_size=1, max_size=25))
def test_any_history_keeps_the_cap_the_min_interval_and_fatal(tmp_path: Path, history: list[tuple[str, Any]]) -> None:
    """For any history: back-off <= max_delay, starts >= min_interval apart, fatal left only by SIGHUP/restart."""
    d = Driver(tmp_path)
    try:
        d.sup.start()
        d.spawned()
        for kind, arg in history:
            was_fatal = d.sup.state is State.FATAL
            d.do(kind, arg)
            if was_fatal and (kind, arg) not in _LEAVES_FATAL:
                assert d.sup.state is State.FATAL, f"{kind} {arg} left fatal"
            if was_fatal:
                event(f"step in fatal: {kind}")
        for dec in d.decisions:
            assert (dec.get("next_backoff") or 0.0) <= MAX_DELAY, dec
        gaps = [b - a for a, b in zip(d.starts, d.starts[1:], strict=False)]
        assert all(g >= MIN_INTERVAL - 1e-9 for g in gaps), (gaps, history)
    finally:
        d.close()


def test_silence_during_an_outage_is_not_counted_as_a_stall_afterwards() -> None:
    """An outage longer than stall_after, then the network is back: no instant `stall` restart."""
    from swarmd.config import HealthConfig, TrainerConfig
    from swarmd.domain import Action, Health
    from swarmd.policy import Policy

    health = HealthConfig(heartbeat_file=Path("hb"), stall_after=600.0, startup_grace=60.0)
    p = Policy(TrainerConfig(command=("t",), cwd=Path()), health, Backoff(RestartConfig(jitter=0.0)))
    p.child_started(0.0)
    for t in range(10, 3600, 10):
        assert p.on_tick(float(t), Health(network_ok=False)).action is Action.NONE
    assert p.on_tick(3610.0, Health(network_ok=True)).action is Action.NONE
    d = p.on_tick(3600.0 + 601.0, Health(network_ok=True))
    assert (d.action, d.reason) == (Action.RESTART, "stall"), "silence after the outage still counts"

"""The fault cases, one function each: start swarmd on the fake node, inject one fault,
assert the recovery and the logged reason, and return the figures for the fault table.

The tests in test_faults.py call these and add the common audits (lines lost, orphans,
duplicate trainers); benchmarks/fault_table.py calls the same functions and tabulates.
Timings are scaled down (stall_after 1.5 s, a 3 s outage instead of 60 s) so each case
takes seconds on a 2-core box; the logic under test does not depend on the scale.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.faults.harness import (
    Fault,
    Report,
    lines_lost,
    node_argv,
    pid_alive,
    ts,
    wait_for,
)

Event = dict[str, Any]


def _decisions(f: Fault) -> list[Event]:
    return f.events("decision")


def _after(f: Fault, t: float, pred: Callable[[Event], bool], timeout: float = 20.0) -> Event:
    """The first event matching `pred` logged at or after wall time `t`."""
    return f.d.wait_event(lambda e: pred(e) and ts(e) >= t - 0.001, timeout)


def _running_after(f: Fault, t: float, timeout: float = 20.0) -> Event:
    return _after(f, t, lambda e: e.get("event") == "state_changed" and e.get("to") == "running", timeout)


def kill9_trainer(f: Fault) -> Report:
    """kill -9 of the trainer: a plain restart (no kernel OOM record, so not an OOM: #9),
    the old tree still ended before a new trainer runs again."""
    f.start(node_argv(f.tmp))
    f.running()
    pid = f.started()["pid"]
    time.sleep(0.5)
    f.inject()
    os.kill(pid, signal.SIGKILL)
    decision = _after(f, f.inject_at, lambda e: e.get("event") == "decision")
    assert (decision["action"], decision["reason"]) == ("restart", "killed_sigkill"), decision
    f.detected(decision)
    second = f.started(2)
    assert second["pid"] != pid
    f.recovered(_running_after(f, ts(second)))
    time.sleep(0.5)
    return f.finish()


def _p2pd_pid(sock: Path, not_pid: int | None = None) -> int:
    pidfile = Path(f"{sock}.pid")

    def read() -> int | None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if pid != not_pid and pid_alive(pid):
                return pid
        return None

    return int(wait_for(read, 15, f"a live fake p2pd in {pidfile}"))


def kill9_p2pd(f: Fault) -> Report:
    """p2pd killed under a live trainer: SIGUSR1 first (p2pd_gone), the trainer restarts
    its daemon in place, swarmd logs `reconnected`; no restart, same trainer."""
    sock = f.tmp / "p2pd.sock"
    f.start(node_argv(f.tmp, "--p2pd", str(sock), "--reconnect"),
            health="reconnect_attempts = 2\nreconnect_timeout = 3")
    f.running()
    trainer = f.started()["pid"]
    old = _p2pd_pid(sock)
    time.sleep(1.5)  # one health tick sees the daemon, so its absence later means it died
    f.inject()
    os.kill(old, signal.SIGKILL)
    decision = _after(f, f.inject_at, lambda e: e.get("event") == "decision")
    assert (decision["action"], decision["reason"]) == ("reconnect_dht", "p2pd_gone"), decision
    f.detected(decision)
    healed = _after(f, f.inject_at, lambda e: e.get("event") == "state_changed" and e.get("reason") == "reconnected")
    assert healed["to"] == "running"
    f.recovered(healed)
    new = _p2pd_pid(sock, not_pid=old)
    assert new != old
    assert pid_alive(trainer)
    assert [d["action"] for d in _decisions(f)] == ["reconnect_dht"], "a reconnect that worked must not restart"
    assert len(f.events("child_started")) == 1
    return f.finish()


def kill9_p2pd_no_reconnect(f: Fault) -> Report:
    """p2pd killed and the trainer cannot bring it back: reconnect_attempts SIGUSR1s,
    then a restart named after the cause; the new trainer has a p2pd again."""
    sock = f.tmp / "p2pd.sock"
    f.start(node_argv(f.tmp, "--p2pd", str(sock)), health="reconnect_attempts = 1\nreconnect_timeout = 1.5")
    f.running()
    old = _p2pd_pid(sock)
    time.sleep(1.5)
    f.inject()
    os.kill(old, signal.SIGKILL)
    first = _after(f, f.inject_at, lambda e: e.get("event") == "decision")
    assert (first["action"], first["reason"]) == ("reconnect_dht", "p2pd_gone"), first
    f.detected(first)
    restart = _after(f, f.inject_at, lambda e: e.get("event") == "decision" and e.get("action") == "restart")
    assert restart["reason"] == "p2pd_gone_after_1_reconnects", restart
    second = f.started(2)
    f.recovered(_running_after(f, ts(second)))
    _p2pd_pid(sock, not_pid=old)
    return f.finish()


def sigstop_trainer(f: Fault) -> Report:
    """A SIGSTOPped trainer: heartbeat and output stop -> `stall` -> restart; the stop is
    quick (SIGCONT delivers the pending TERM), no KILL escalation needed."""
    f.start(node_argv(f.tmp), health="stall_after = 1.5\nstartup_grace = 0.5")
    f.running()
    pid = f.started()["pid"]
    time.sleep(0.5)
    f.inject()
    os.kill(pid, signal.SIGSTOP)
    decision = _after(f, f.inject_at, lambda e: e.get("event") == "decision")
    assert (decision["action"], decision["reason"]) == ("restart", "stall"), decision
    f.detected(decision)
    down = _after(f, f.inject_at, lambda e: e.get("event") == "child_down")
    assert not down["escalated"], "a stopped trainer should die of the TERM once continued"
    second = f.started(2)
    f.recovered(_running_after(f, ts(second)))
    assert not pid_alive(pid)
    return f.finish()


class ProbeTarget:
    """A loopback HTTP server standing in for the network: stop it and probes fail."""

    def __init__(self) -> None:
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self.up()

    def up(self) -> None:
        class Quiet(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Quiet)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def probes_toml(self) -> str:
        return f'[probes]\nurls = ["http://127.0.0.1:{self.port}/"]\ninterval = 0.3\ntimeout = 0.25\n'


@contextlib.contextmanager
def probe_target() -> Iterator[ProbeTarget]:
    target = ProbeTarget()
    try:
        yield target
    finally:
        target.down()


OUTAGE_S = 3.0


def network_down(f: Fault, outage_s: float = OUTAGE_S) -> Report:
    """The probe target stops answering for `outage_s`: `degraded`, nothing restarts (no
    stall verdict either, though stall_after is far shorter), the same trainer keeps
    running; when it answers again, `running` (network_up)."""
    with probe_target() as net:
        f.start(node_argv(f.tmp), extra=net.probes_toml())
        f.running()
        pid = f.started()["pid"]
        f.inject()
        net.down()
        degraded = _after(f, f.inject_at, lambda e: e.get("event") == "state_changed" and e.get("to") == "degraded")
        assert degraded["reason"] == "network_down"
        f.detected(degraded)
        time.sleep(outage_s)
        assert not _decisions(f), f"no action while the network is down: {_decisions(f)}"
        assert pid_alive(pid)
        net.up()
        back = _after(f, f.inject_at, lambda e: e.get("event") == "state_changed" and e.get("reason") == "network_up")
        assert back["to"] == "running"
        f.recovered(back)
        assert len(f.events("child_started")) == 1
        return f.finish()


def network_down_trainer_dies(f: Fault) -> Report:
    """The trainer dies during the outage: one restart decision, but no start (and so no
    restart storm) until the network answers again; then one new trainer."""
    with probe_target() as net:
        f.start(node_argv(f.tmp), extra=net.probes_toml())
        f.running()
        pid = f.started()["pid"]
        net.down()
        f.inject()
        f.d.wait_event(lambda e: e.get("event") == "network_down")
        os.kill(pid, signal.SIGKILL)
        decision = _after(f, f.inject_at, lambda e: e.get("event") == "decision")
        f.detected(decision)
        waiting = _after(f, f.inject_at, lambda e: e.get("event") == "state_changed" and e.get("reason") == "waiting_for_network")
        assert waiting["to"] == "degraded"
        time.sleep(OUTAGE_S)
        assert len(f.events("child_started")) == 1, "started a trainer while the network was down"
        assert len(_decisions(f)) == 1
        net.up()
        second = f.started(2)
        f.recovered(_running_after(f, ts(second)))
        return f.finish()


def p2pd_error_burst(f: Fault) -> Report:
    """100 P2PDaemonError lines within 1 s -> one restart decision, not 100."""
    f.start(node_argv(f.tmp, "--burst", "100", "--burst-marker", str(f.tmp / "burst.done")))
    f.inject()  # the burst starts right after the first line
    decision = f.d.wait_event(lambda e: e.get("event") == "decision")
    assert decision["reason"] == "p2pd_startup_timeout", decision
    f.detected(decision)
    second = f.started(2)
    f.recovered(_running_after(f, ts(second)))
    time.sleep(1.5)  # the rest of the burst has long been read by now
    assert len(_decisions(f)) == 1, [d["reason"] for d in _decisions(f)]
    f.report.notes["burst_lines_in_log"] = f.d.trainer_log.read_text(errors="replace").count("P2PDaemonError")
    return f.finish()


def log_deleted(f: Fault) -> Report:
    """trainer.log is deleted under the running daemon: it is recreated, and every line
    printed after the deletion is in it (swarmd checks the path before every write).
    `lines_lost` counts lines printed after the deletion that are missing (the lines
    before it went with the file the operator deleted)."""
    f.start(node_argv(f.tmp, rate=20.0))
    f.running()
    time.sleep(1.0)
    log = f.d.trainer_log
    pid = f.started()["pid"]
    f.inject()
    log.unlink()
    before = f.last_seq(pid)  # lines up to here were in the file the operator deleted
    back = wait_for(log.exists, 5, "trainer.log recreated")
    f.report.detection_s = round(time.time() - f.inject_at, 3) if back else None
    f.report.recovery_s = f.report.detection_s
    time.sleep(1.5)
    report = f.finish(since={pid: before})
    report.notes["check_interval_s"] = 0.0
    return report


def mount_small_tmpfs(where: Path, size: str = "1m") -> str | None:
    """Mount a tmpfs of `size` at `where`; None on success, else why it cannot."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    if shutil.which("mount") is None:
        return "no mount(8)"
    where.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                         capture_output=True, text=True, timeout=10, check=False)
    return None if out.returncode == 0 else f"mount -t tmpfs failed: {out.stderr.strip()}"


def unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10, check=False)


def disk_full(f: Fault, logdir: Path) -> Report:
    """The trainer log's filesystem fills up (a 1 MiB tmpfs at `logdir`, already mounted):
    swarmd reports it once, keeps supervising (a kill -9 during the episode is still
    restarted), buffers the refused lines, and writes them all once space is freed."""
    ballast = logdir / "ballast"
    # 300-byte lines at 20/s: the tmpfs page the log was appending to fills in < 1 s.
    f.start(node_argv(f.tmp, "--pad", "300", rate=20.0), logs=f'trainer_log = "{logdir / "trainer.log"}"')
    f.running()
    first = f.started()["pid"]
    f.inject()
    with ballast.open("wb") as fh, contextlib.suppress(OSError):  # fill it up
        fh.write(b"\0" * (2 << 20))
    failed = f.d.wait_event(lambda e: e.get("event") == "trainer_log_write_failed")
    f.detected(failed)
    os.kill(first, signal.SIGKILL)  # still supervising while the disk is full?
    second = f.started(2)
    _running_after(f, ts(second))
    time.sleep(1.0)
    assert len(f.events("trainer_log_write_failed")) == 1, "report once per episode, not per line"
    ballast.unlink()
    recovered = f.d.wait_event(lambda e: e.get("event") == "log_write_recovered")
    f.recovered(recovered)
    time.sleep(0.5)
    report = f.finish()
    # The trainer log of this case lives on the tmpfs, not in tmp/logs.
    report.lines_lost, report.lines_checked = lines_lost(logdir, f.tmp / "seq")
    return report


def sigterm_storm_during_restart(f: Fault) -> Report:
    """10 SIGTERMs while a restart is in flight (the trainer takes 1 s to save): one
    stop, no new trainer, exit 0, nothing left behind."""
    f.start(node_argv(f.tmp, "--term-delay", "1.0"))
    f.running()
    f.d.signal(signal.SIGHUP)  # reload + restart: the old trainer is now saving
    f.d.wait_event(lambda e: e.get("event") == "state_changed" and e.get("to") == "restarting")
    f.inject()
    for _ in range(10):
        f.d.signal(signal.SIGTERM)
        time.sleep(0.01)
    stopped = _after(f, f.inject_at, lambda e: e.get("event") == "state_changed" and e.get("to") == "stopped")
    f.detected(stopped)
    f.recovered(stopped)
    report = f.finish(stop=False)
    assert report.exit_code == 0, f"swarmd exited with {report.exit_code} after the storm"
    assert len(f.events("child_started")) == 1, "a new trainer was started during the shutdown"
    assert len(f.events("child_down")) == 1
    report.notes["stop_escalated"] = len(f.events("stop_escalated"))
    return report


def corrupt_swarm_pem(f: Fault) -> Report:
    """The real trainer (`python -m trainer`) on a corrupt swarm.pem: exit 78, `fatal` at
    once with the trainer's one-line message in trainer.log, no restart loop, exit 1."""
    from tests.e2e.daemon import REPO

    state = f.tmp / "node"
    state.mkdir()
    (state / "swarm.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n")
    argv = [sys.executable, "-m", "trainer", "--config", str(REPO / "trainer.toml"),
            "--override", f"state_dir={state}", "--override", f"heartbeat_path={f.tmp / 'state' / 'trainer.json'}",
            "--override", "local_swarm_peers=0"]
    f.start(argv)
    f.inject()
    alert = f.d.wait_event(lambda e: e.get("event") == "alert", timeout=60)
    assert alert["reason"] == "exit_code_78_is_fatal", alert
    f.detected(alert)
    report = f.finish(stop=False)
    assert report.exit_code == 1, f"swarmd exited with {report.exit_code}; fatal should exit 1"
    assert len(f.events("child_started")) == 1, "a corrupt identity must not be restarted"
    text = f.d.trainer_log.read_text(errors="replace")
    assert "swarm.pem" in text, text[-500:]
    assert "fix:" in text, text[-500:]
    assert "not base64" not in text, "the key file's content must never reach the log"
    return report


SCENARIOS: dict[str, Callable[[Fault], Report]] = {
    "kill -9 trainer": kill9_trainer,
    "kill -9 p2pd (reconnect works)": kill9_p2pd,
    "kill -9 p2pd (reconnect fails)": kill9_p2pd_no_reconnect,
    "SIGSTOP trainer (stall)": sigstop_trainer,
    "network down 3s": network_down,
    "network down + trainer dies": network_down_trainer_dies,
    "P2PDaemonError burst x100": p2pd_error_burst,
    "trainer.log deleted": log_deleted,
    "corrupt swarm.pem (real trainer)": corrupt_swarm_pem,
    "SIGTERM x10 during restart": sigterm_storm_during_restart,
}

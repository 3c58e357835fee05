"""The DHT health part judges only looks at the current trainer's live tree."""

from __future__ import annotations

from pathlib import Path

from swarmd.dht_health import DhtHealth
from swarmd.p2pd_probe import DhtLook, DhtParts, P2pdAnswer, TreeProc

NO_SUCH_PID = 2**22 + 77  # the watcher's own looks at it find nothing and are ignored


def look(gen: int, at: float, *, p2pd: bool = True, tree_alive: bool = True, answered: bool = True) -> DhtLook:
    daemon = TreeProc(500, 400, 1000.0, "p2pd", ("p2pd", "-listen=/unix/tmp/x.sock"))
    dht = TreeProc(400, 300, 999.0, "python", ("python",))
    parts = DhtParts(daemon, dht, Path("/tmp/x.sock")) if p2pd else DhtParts()
    answer = P2pdAnswer(answered, "x.sock: answered IDENTIFY", "12D3Koo") if p2pd else None
    return DhtLook(gen, at, parts, answer, tree_alive, frozenset({300, 400, 500} if p2pd else {300}))


def test_looks_at_an_earlier_trainer_or_a_dead_tree_change_nothing() -> None:
    health = DhtHealth(lambda _look: None, interval=60.0)
    try:
        health.watch(2, NO_SUCH_PID, 1.0)
        assert health.on_look(look(2, 0.0)).alive is True
        assert health.on_look(look(1, 10.0, p2pd=False)).alive is True  # gen 1 is gone
        assert health.on_look(look(2, 10.0, p2pd=False, tree_alive=False)).alive is True
        health.on_look(look(2, 11.0, p2pd=False))
        verdict = health.on_look(look(2, 15.0, p2pd=False))
        assert (verdict.alive, verdict.cause) == (False, "p2pd_gone")
        status = health.status()
        assert status["p2pd_alive"] is False
        assert "pid 500" in status["p2pd_evidence"]
    finally:
        health.stop()


def test_a_new_trainer_starts_unknown_and_status_shows_the_daemon() -> None:
    health = DhtHealth(lambda _look: None, interval=60.0)
    try:
        health.watch(1, NO_SUCH_PID, 1.0)
        health.on_look(look(1, 0.0))
        status = health.status()
        assert (status["p2pd_pid"], status["dht_pid"], status["p2pd_answered"]) == (500, 400, True)
        assert status["p2pd_peer_id"] == "12D3Koo"
        health.watch(2, NO_SUCH_PID, 1.0)
        assert health.judgement.alive is None
        assert health.status()["p2pd_pid"] is None
    finally:
        health.stop()

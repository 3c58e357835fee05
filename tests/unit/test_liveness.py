"""The p2pd liveness judgement, driven by hand-made sightings on a fake timeline."""

from __future__ import annotations

from swarmd.liveness import P2pdLiveness, Sighting

P2PD = (4242, 1000.0)
ANONYMOUS = (4200, 999.0)  # hivemind's identity-check daemon


def feed(tracker: P2pdLiveness, sightings: list[Sighting]) -> list[bool | None]:
    return [tracker.observe(s).alive for s in sightings]


def test_a_p2pd_that_answers_is_alive() -> None:
    assert feed(P2pdLiveness(), [Sighting(t, P2PD, True) for t in (0.0, 1.0)]) == [True, True]


def test_the_identity_check_daemon_ending_is_not_a_fault() -> None:
    """hivemind runs an anonymous p2pd to check the identity, then the node's real one."""
    tracker = P2pdLiveness(gone_after=3.0)
    seen = feed(tracker, [
        Sighting(0.0, ANONYMOUS, True),
        Sighting(1.0, None),
        Sighting(2.0, None),
        Sighting(2.5, P2PD, True),
        Sighting(10.0, P2PD, True),
    ])
    assert seen == [True, None, None, True, True]


def test_a_p2pd_missing_for_gone_after_is_dead() -> None:
    tracker = P2pdLiveness(gone_after=2.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, P2PD, True)])
    assert tracker.observe(Sighting(2.0, None)).alive is None
    assert tracker.observe(Sighting(3.0, None)).alive is None
    verdict = tracker.observe(Sighting(4.0, None))
    assert (verdict.alive, verdict.cause) == (False, "p2pd_gone")
    assert "pid 4242" in verdict.evidence


def test_a_blip_shorter_than_gone_after_is_forgiven() -> None:
    tracker = P2pdLiveness(gone_after=2.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(2.0, None)])
    assert tracker.observe(Sighting(3.0, P2PD, True)).alive is True
    assert tracker.observe(Sighting(4.5, None)).alive is None  # a new absence starts afresh


def test_a_p2pd_that_stops_answering_is_dead_after_unanswered_after() -> None:
    tracker = P2pdLiveness(unanswered_after=4.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, P2PD, True)])
    quiet = [Sighting(t, P2PD, False, "sock: no answer") for t in (2.0, 4.0, 5.9, 6.0)]
    assert feed(tracker, quiet) == [None, None, None, False]
    verdict = tracker.observe(Sighting(7.0, P2PD, False, "sock: no answer"))
    assert verdict.cause == "p2pd_silent"
    assert "has not answered its control socket for 5.0s" in verdict.evidence
    assert "sock: no answer" in verdict.evidence


def test_one_answer_ends_an_unanswered_streak() -> None:
    tracker = P2pdLiveness(unanswered_after=4.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(2.0, P2PD, False)])
    assert tracker.observe(Sighting(3.0, P2PD, True)).alive is True
    assert feed(tracker, [Sighting(t, P2PD, False) for t in (6.0, 9.0)]) == [None, None]


def test_a_single_slow_answer_is_not_enough() -> None:
    """Two asks at least: one ask that timed out long after the previous look is load."""
    tracker = P2pdLiveness(unanswered_after=4.0)
    tracker.observe(Sighting(0.0, P2PD, True))
    assert tracker.observe(Sighting(30.0, P2PD, False)).alive is None


def test_a_replacement_daemon_heals() -> None:
    """An in-place reconnect restarts the DHT: the new daemon is the node's own."""
    tracker = P2pdLiveness(gone_after=1.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, None)])
    assert tracker.observe(Sighting(2.0, None)).alive is False
    assert tracker.observe(Sighting(3.0, (5555, 1010.0), True)).alive is True


def test_a_node_without_hivemind_stays_unknown() -> None:
    tracker = P2pdLiveness()
    assert feed(tracker, [Sighting(float(t), None) for t in range(100)]) == [None] * 100


def test_reset_forgets_the_previous_trainers_daemon() -> None:
    tracker = P2pdLiveness(gone_after=1.0)
    tracker.observe(Sighting(0.0, P2PD, True))
    tracker.reset()
    assert feed(tracker, [Sighting(t, None) for t in (2.0, 5.0, 9.0)]) == [None, None, None]


def test_a_stopped_dht_process_is_a_fault_though_p2pd_answers() -> None:
    tracker = P2pdLiveness(unanswered_after=1.0, stopped_after=4.0)
    tracker.observe(Sighting(0.0, P2PD, True, dht=4100))
    stopped = [Sighting(t, P2PD, True, dht=4100, dht_stopped=True) for t in (2.0, 4.0, 6.0)]
    assert feed(tracker, stopped) == [True, True, False]
    verdict = tracker.observe(Sighting(7.0, P2PD, True, dht=4100, dht_stopped=True))
    assert verdict.cause == "dht_stopped"
    assert "DHT process (pid 4100) has been stopped for 5.0s" in verdict.evidence
    assert tracker.observe(Sighting(8.0, P2PD, True, dht=4100)).alive is True  # SIGCONT heals


def test_gone_evidence_names_the_dht_process_only_when_it_went_too() -> None:
    tracker = P2pdLiveness(gone_after=1.0)
    tracker.observe(Sighting(0.0, P2PD, True, dht=4100))
    tracker.observe(Sighting(1.0, None, tree=frozenset({1, 4100})))
    alone = tracker.observe(Sighting(2.0, None, tree=frozenset({1, 4100})))
    assert alone.evidence.startswith("the node's p2pd (pid 4242) is gone")
    both = tracker.observe(Sighting(3.0, None, tree=frozenset({1})))
    assert both.evidence.startswith("the node's DHT process (pid 4100) and its p2pd (pid 4242) are gone")


def test_a_stopped_dht_process_is_judged_sooner_than_an_unanswered_ask() -> None:
    """State T is unambiguous: two looks 2 s apart suffice, while a p2pd that merely
    does not answer gets the longer window (a slow daemon on a loaded host)."""
    stopped, silent = P2pdLiveness(), P2pdLiveness()
    for tracker in (stopped, silent):
        tracker.observe(Sighting(0.0, P2PD, True, dht=4100))
    assert feed(stopped, [Sighting(t, P2PD, True, dht=4100, dht_stopped=True) for t in (1.0, 2.0, 3.0)]) == [
        True, True, False]
    assert feed(silent, [Sighting(t, P2PD, False, dht=4100) for t in (1.0, 2.0, 3.0, 4.0, 5.0)]) == [
        None, None, None, None, False]

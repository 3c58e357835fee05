"""The p2pd liveness judgement, driven by hand-made sightings on a fake timeline."""

from __future__ import annotations

from swarmd.liveness import P2pdLiveness, Sighting

P2PD = (4242, 1000.0)
IDENTITY_CHECK = (4200, 999.0)


def feed(tracker: P2pdLiveness, sightings: list[Sighting]) -> list[bool | None]:
    return [tracker.observe(s).alive for s in sightings]


def test_a_fresh_p2pd_is_unknown_until_it_has_settled() -> None:
    tracker = P2pdLiveness(settle=5.0)
    seen = feed(tracker, [Sighting(t, P2PD, True) for t in (0.0, 2.0, 4.0, 5.0)])
    assert seen == [None, None, None, True]


def test_the_identity_check_daemon_ending_is_not_a_fault() -> None:
    """hivemind runs a short p2pd to check the identity, then the node's real one."""
    tracker = P2pdLiveness(settle=5.0, gone_after=2.0)
    seen = feed(tracker, [
        Sighting(0.0, IDENTITY_CHECK, True),
        Sighting(1.0, None),
        Sighting(2.0, None),
        Sighting(4.0, None),
        Sighting(5.0, P2PD, True),
        Sighting(10.0, P2PD, True),
    ])
    assert seen == [None, None, None, None, None, True]


def test_an_established_p2pd_missing_for_gone_after_is_dead() -> None:
    tracker = P2pdLiveness(settle=1.0, gone_after=2.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, P2PD, True)])
    assert tracker.observe(Sighting(2.0, None)).alive is None
    assert tracker.observe(Sighting(3.0, None)).alive is None
    verdict = tracker.observe(Sighting(4.0, None))
    assert verdict.alive is False
    assert "pid 4242" in verdict.evidence
    assert "gone" in verdict.evidence


def test_a_blip_shorter_than_gone_after_is_forgiven() -> None:
    tracker = P2pdLiveness(settle=1.0, gone_after=2.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, P2PD, True), Sighting(2.0, None)])
    assert tracker.observe(Sighting(3.0, P2PD, True)).alive is True
    assert tracker.observe(Sighting(4.5, None)).alive is None  # a new absence starts afresh


def test_a_p2pd_that_stops_answering_is_dead_after_unanswered_after() -> None:
    tracker = P2pdLiveness(settle=1.0, unanswered_after=4.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, P2PD, True)])
    quiet = [Sighting(t, P2PD, False, "sock: no answer") for t in (2.0, 4.0, 5.9, 6.0)]
    seen = feed(tracker, quiet)
    assert seen == [None, None, None, False]
    verdict = tracker.observe(Sighting(7.0, P2PD, False, "sock: no answer"))
    assert "has not answered its control socket for 5.0s" in verdict.evidence
    assert "sock: no answer" in verdict.evidence


def test_one_answer_ends_an_unanswered_streak() -> None:
    tracker = P2pdLiveness(settle=1.0, unanswered_after=4.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, P2PD, True), Sighting(2.0, P2PD, False)])
    assert tracker.observe(Sighting(3.0, P2PD, True)).alive is True
    assert feed(tracker, [Sighting(t, P2PD, False) for t in (6.0, 9.0)]) == [None, None]


def test_a_single_slow_answer_is_not_enough() -> None:
    """Two asks at least: one ask that timed out long after the previous look is load."""
    tracker = P2pdLiveness(settle=1.0, unanswered_after=4.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, P2PD, True)])
    assert tracker.observe(Sighting(30.0, P2PD, False)).alive is None


def test_a_replacement_daemon_heals_once_settled() -> None:
    """An in-place reconnect restarts the DHT: the new daemon becomes the node's own."""
    tracker = P2pdLiveness(settle=2.0, gone_after=1.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(2.0, P2PD, True)])
    assert tracker.observe(Sighting(3.0, None)).alive is None
    assert tracker.observe(Sighting(4.0, None)).alive is False
    new = (5555, 1010.0)
    assert feed(tracker, [Sighting(5.0, new, True), Sighting(7.0, new, True)]) == [None, True]


def test_a_node_without_hivemind_stays_unknown() -> None:
    tracker = P2pdLiveness()
    assert feed(tracker, [Sighting(float(t), None) for t in range(100)]) == [None] * 100


def test_reset_forgets_the_previous_trainers_daemon() -> None:
    tracker = P2pdLiveness(settle=1.0, gone_after=1.0)
    feed(tracker, [Sighting(0.0, P2PD, True), Sighting(1.0, P2PD, True)])
    tracker.reset()
    assert feed(tracker, [Sighting(t, None) for t in (2.0, 5.0, 9.0)]) == [None, None, None]


def test_a_stopped_dht_process_is_a_fault_though_p2pd_answers() -> None:
    tracker = P2pdLiveness(settle=1.0, unanswered_after=4.0)
    feed(tracker, [Sighting(0.0, P2PD, True, dht=4100), Sighting(1.0, P2PD, True, dht=4100)])
    stopped = [Sighting(t, P2PD, True, dht=4100, dht_stopped=True) for t in (2.0, 4.0, 6.0)]
    assert feed(tracker, stopped) == [True, True, False]
    verdict = tracker.observe(Sighting(7.0, P2PD, True, dht=4100, dht_stopped=True))
    assert verdict.cause == "dht_stopped"
    assert "DHT process (pid 4100) has been stopped for 5.0s" in verdict.evidence
    assert tracker.observe(Sighting(8.0, P2PD, True, dht=4100)).alive is True  # SIGCONT heals


def test_causes_name_the_fault() -> None:
    tracker = P2pdLiveness(settle=1.0, gone_after=1.0, unanswered_after=1.0)
    feed(tracker, [Sighting(0.0, P2PD, True, dht=4100), Sighting(1.0, P2PD, True, dht=4100)])
    silent = feed(tracker, [Sighting(2.0, P2PD, False, dht=4100), Sighting(3.0, P2PD, False, dht=4100)])
    assert silent == [None, False]
    assert tracker.observe(Sighting(3.5, P2PD, False, dht=4100)).cause == "p2pd_silent"
    tracker.observe(Sighting(4.0, None))
    gone = tracker.observe(Sighting(5.0, None))
    assert gone.cause == "p2pd_gone"
    assert "DHT process (pid 4100) and its p2pd (pid 4242) are gone" in gone.evidence


def test_a_p2pd_old_enough_by_its_start_time_is_established_at_once() -> None:
    """A look that came late (a loaded host) must not delay the judgement."""
    tracker = P2pdLiveness(settle=5.0, gone_after=2.0)
    assert tracker.observe(Sighting(0.0, P2PD, True, age=6.0)).alive is True
    feed(tracker, [Sighting(1.0, None), Sighting(2.0, None)])
    assert tracker.observe(Sighting(3.0, None)).alive is False


def test_a_p2pd_killed_before_it_settled_is_judged_after_the_longer_wait() -> None:
    tracker = P2pdLiveness(settle=5.0, gone_after=2.0, unsettled_gone_after=10.0)
    tracker.observe(Sighting(0.0, P2PD, True, age=1.0))
    assert feed(tracker, [Sighting(t, None) for t in (1.0, 5.0, 10.9)]) == [None, None, None]
    verdict = tracker.observe(Sighting(11.0, None))
    assert (verdict.alive, verdict.cause) == (False, "p2pd_gone")


def test_a_dht_process_still_in_the_tree_is_not_called_gone() -> None:
    tracker = P2pdLiveness(settle=1.0, gone_after=1.0)
    feed(tracker, [Sighting(0.0, P2PD, True, dht=4100), Sighting(1.0, P2PD, True, dht=4100)])
    tracker.observe(Sighting(2.0, None, tree=frozenset({1, 4100})))
    verdict = tracker.observe(Sighting(3.0, None, tree=frozenset({1, 4100})))
    assert verdict.evidence.startswith("the node's p2pd (pid 4242) is gone")

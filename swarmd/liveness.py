"""Is the node's DHT daemon alive? Pure judgement over what `p2pd_probe` saw.

The node cannot be asked (upstream writes no heartbeat and trains on alone when its
p2pd dies), so this judges from outside, from a series of looks at the node's tree:

- once a p2pd was seen, no p2pd in the tree for `gone_after` seconds means it died (a
  killed DHT process takes its p2pd out of the tree as well: the orphan is
  re-parented). The grace covers hivemind's identity check, which runs an anonymous
  p2pd, shuts it down and starts the node's real one right after;
- a p2pd that still runs but has not answered its control socket for
  `unanswered_after` seconds (and at least two asks) is as good as dead: SIGSTOPped,
  wedged, or its socket deleted;
- a DHT process (p2pd's parent, hivemind's forked process) stopped (state `T`) for
  `stopped_after` seconds and two looks is the same fault one step up: p2pd answers,
  but nothing in the node serves the DHT. A stopped state is unambiguous (a slow
  daemon is never `T`), so this window is shorter than the one for an unanswered ask,
  which must outlast a daemon that is merely slow on a loaded host.

A new daemon (another pid) replaces the old one: an in-place reconnect restarts the DHT.
No clock is read here; every call gets `now` (monotonic).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sighting:
    """One look: the node's p2pd (pid, start time) if any, whether its control socket
    answered (None: not asked), and its DHT process (pid, and whether it is stopped)."""

    at: float
    p2pd: tuple[int, float] | None
    answered: bool | None = None
    detail: str = ""
    dht: int | None = None
    dht_stopped: bool = False
    tree: frozenset[int] = frozenset()  # the pids of the node's tree at this look


@dataclass(frozen=True, slots=True)
class Judgement:
    """`alive`: True, False (with the cause and the evidence), or None while nothing
    is known (no p2pd yet, or a node that does not use hivemind). `cause` is one of
    `p2pd_gone`, `p2pd_silent`, `dht_stopped`."""

    alive: bool | None
    evidence: str = ""
    cause: str = ""


UNKNOWN = Judgement(None)


class P2pdLiveness:
    def __init__(self, *, gone_after: float = 3.0, unanswered_after: float = 4.0, stopped_after: float = 2.0) -> None:
        self._gone_after = gone_after
        self._unanswered_after = unanswered_after
        self._stopped_after = stopped_after
        self.reset()

    def reset(self) -> None:
        """A new trainer: forget the old one's daemon."""
        self._current: tuple[int, float] | None = None
        self._missing_since: float | None = None
        self._unanswered_since: float | None = None
        self._unanswered_count = 0
        self._dht: int | None = None
        self._stopped_since: float | None = None
        self._stopped_count = 0

    def observe(self, s: Sighting) -> Judgement:
        if s.p2pd is None:
            return self._absent(s)
        self._missing_since = None
        self._dht = s.dht if s.dht is not None else self._dht
        if s.p2pd != self._current:
            self._current = s.p2pd
            self._unanswered_since, self._unanswered_count = None, 0
        stopped = self._dht_stopped(s)
        answering = self._answering(s, s.p2pd[0])
        return stopped if answering.alive is not False and stopped.alive is not None else answering

    def _absent(self, s: Sighting) -> Judgement:
        last = self._current  # the daemon last seen stays "current" until another one
        if last is None:
            return UNKNOWN
        if self._missing_since is None:
            self._missing_since = s.at
        gone_for = s.at - self._missing_since
        if gone_for < self._gone_after:
            return UNKNOWN
        if self._dht is not None and self._dht not in s.tree:
            what = f"the node's DHT process (pid {self._dht}) and its p2pd (pid {last[0]}) are"
        else:
            what = f"the node's p2pd (pid {last[0]}) is"
        return Judgement(False, f"{what} gone from its process tree (for {gone_for:.1f}s)", "p2pd_gone")

    def _answering(self, s: Sighting, pid: int) -> Judgement:
        if s.answered is not False:
            self._unanswered_since, self._unanswered_count = None, 0
            return Judgement(True, s.detail)
        if self._unanswered_since is None:
            self._unanswered_since = s.at
        self._unanswered_count += 1
        silent = s.at - self._unanswered_since
        if self._unanswered_count >= 2 and silent >= self._unanswered_after:
            return Judgement(
                False,
                f"the node's p2pd (pid {pid}) runs but has not answered its control socket for {silent:.1f}s: {s.detail}",
                "p2pd_silent",
            )
        return UNKNOWN

    def _dht_stopped(self, s: Sighting) -> Judgement:
        """UNKNOWN while the DHT process runs (or too briefly stopped), else the fault."""
        if not s.dht_stopped:
            self._stopped_since, self._stopped_count = None, 0
            return UNKNOWN
        if self._stopped_since is None:
            self._stopped_since = s.at
        self._stopped_count += 1
        still = s.at - self._stopped_since
        if self._stopped_count >= 2 and still >= self._stopped_after:
            return Judgement(
                False,
                f"the node's DHT process (pid {s.dht}) has been stopped for {still:.1f}s (SIGSTOP?): its p2pd answers, "
                "but nothing in the node serves the DHT",
                "dht_stopped",
            )
        return UNKNOWN

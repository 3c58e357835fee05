"""The threads that feed the loop from outside the trainer's pipe: followed log files
and network probes. Each only posts events; the loop decides what they mean.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmd.analyze import LogAnalyzer
from swarmd.classify import Classifier
from swarmd.clock import Clock
from swarmd.config import Config
from swarmd.config_net import ProbesConfig
from swarmd.domain import Signal, Verdict
from swarmd.events import LineSeen, ProbeDone
from swarmd.follow import FileFollower
from swarmd.parts import Kept
from swarmd.probes import probe_network

_FRAME_COALESCE = 0.25  # seconds between two bare progress frames that reach the loop


class Followers:
    """`[logs] follow`: classify each line of the extra log files and post the ones
    that matter, tagged with the current trainer generation."""

    name = "followers"

    def __init__(
        self,
        paths: tuple[Path, ...],
        *,
        classifier: Callable[[], Classifier],
        gen: Callable[[], int],
        post: Callable[[Any], None],
        count_line: Callable[[int], None],
        clock: Clock,
        watch: Callable[[str, FileFollower], None] = lambda name, reader: None,
    ) -> None:
        self.paths = paths
        self._watch = watch  # the metrics export the follower's callback errors
        self._classifier = classifier
        self._gen = gen
        self._post = post
        self._count_line = count_line
        self._clock = clock
        self._follower: FileFollower | None = None
        self._gates: dict[Path, LineGate] = {}
        self._started = False

    def start(self) -> None:
        self._started = True
        if not self.paths or self._follower is not None:
            return
        self._follower = FileFollower(list(self.paths), self._on_line, clock=self._clock)
        self._watch("follow", self._follower)
        self._follower.start()

    def reconfigure(self, config: Config) -> list[Kept]:
        """A new file is followed from now, a dropped one is read to its end and let
        go; files in both lists keep their place (no line replayed or skipped)."""
        self.paths = config.logs.follow
        if self._follower is not None:
            self._follower.set_paths(list(self.paths))
        elif self._started:
            self.start()
        return []

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def _on_line(self, path: Path, line: str, t: float) -> None:
        self._count_line(1)
        gate = self._gates.get(path)
        if gate is None:
            gate = self._gates[path] = LineGate(self._classifier, self._post, self._gen, str(path))
        gate(line, t)


class ProbeLoop:
    """`[probes]`: run the network checks every `interval` on a thread of their own
    (every check has a timeout, but the loop never waits on one)."""

    name = "probes"

    def __init__(self, settings: ProbesConfig, post: Callable[[Any], None]) -> None:
        self.settings = settings
        self._post = post
        self._stop = threading.Event()
        self._started = False

    def start(self, *, at_once: bool = False) -> None:
        """`at_once`: probe now instead of after the first interval (the first start
        has its answer already: `Machine.begin` probes before starting the trainer)."""
        self._started = True
        s = self.settings
        if not (s.urls or s.tcp or s.dns):
            return
        self._stop = threading.Event()  # each thread has its own: a reload ends the old one
        threading.Thread(target=self._loop, args=(s, self._stop, at_once), name="probes", daemon=True).start()

    def reconfigure(self, config: Config) -> list[Kept]:
        """New targets, interval and timeout: the old thread ends (it may finish the
        check it is in), a new one probes with the new settings at once."""
        new = config.probes
        if new == self.settings or not self._started:
            self.settings = new
            return []
        self._stop.set()
        self.settings = new
        if not (new.urls or new.tcp or new.dns):
            self._post(ProbeDone(probe_network(new)))  # "none configured": a failing old probe no longer holds
        self.start(at_once=True)
        return []

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, settings: ProbesConfig, stop: threading.Event, at_once: bool) -> None:
        if not at_once and stop.wait(settings.interval):
            return
        while True:
            result = probe_network(settings)
            if stop.is_set():
                return  # a reload replaced these settings while the check ran
            self._post(ProbeDone(result))
            if stop.wait(settings.interval):
                return


class LineGate:
    """Runs in a reader thread: classify a line and post only what matters.

    Lines go through a `LogAnalyzer`, so a traceback is judged as a whole block and a
    login loop as a loop. Bare tqdm frames (progress without a round number) are
    coalesced to a few per second, so a trainer printing 100k frames/s cannot flood the
    loop. The classifier and the generation are read per call (a line, or a pipe
    reader's whole read), so a reload's new rules apply at once (with a fresh analyzer).
    """

    def __init__(
        self,
        classifier: Callable[[], Classifier],
        post: Callable[[Any], None],
        gen: Callable[[], int],
        source: str,
    ) -> None:
        self._classifier = classifier
        self._post = post
        self._gen = gen
        self._source = source
        self._last_frame = 0.0
        self._last_noise = 0.0
        # Fed by the reader thread only; the loop reads `last_crash` (a read-only peek).
        self._analyzer: LogAnalyzer | None = None
        self._analyzer_rules: Classifier | None = None

    def __call__(self, line: str, t: float) -> None:
        self._post_signals(self._current().feed(line, t), t)

    def lines(self, text: str, t: float) -> None:
        """Many lines joined by `\\n` (a pipe reader's whole read), judged as if one by
        one, at a fraction of the cost (`LogAnalyzer.feed_text`)."""
        self._post_signals(self._current().feed_text(text, t), t)

    def _current(self) -> LogAnalyzer:
        clf = self._classifier()
        an = self._analyzer
        if an is None or self._analyzer_rules is not clf:
            an = self._analyzer = LogAnalyzer(clf)
            self._analyzer_rules = clf
        return an

    def _post_signals(self, signals: tuple[Signal, ...], t: float) -> None:
        for sig in signals:
            if sig.verdict is Verdict.HEALTHY_PROGRESS and sig.round is None and not sig.block:
                if t - self._last_frame < _FRAME_COALESCE:
                    continue
                self._last_frame = t
            elif sig.verdict is Verdict.TRANSIENT_IGNORE:
                # Noise decides nothing (the status page shows the latest): a library
                # logging caught tracebacks by the hundred must not flood the loop.
                if t - self._last_noise < _FRAME_COALESCE:
                    continue
                self._last_noise = t
            self._post(LineSeen(self._gen(), sig, t, self._source))

    def last_crash(self) -> Signal | None:
        """The last uncaught traceback's signal, the block still open included (its
        writer exited): the exit context's evidence."""
        an = self._analyzer
        return an.crash_now() if an is not None else None

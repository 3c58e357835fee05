"""One stream of log lines -> signals: line rules, traceback blocks, operator loops.

Why one object per stream: the line rules in `classify` are stateless, but a
traceback is only evidence as a whole block, and a login loop only as a loop. The
analyzer keeps the little state both need (the block being assembled, the operator
episode), O(1) per line, and hands out signals in the order their evidence arrived.
The supervisor keeps one per reader thread; `judge_lines` is the whole-file answer
(`swarmd classify`, the corpus test).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from swarmd.classify import Classifier
from swarmd.domain import Signal, Verdict
from swarmd.operator import OPERATOR_KINDS, OperatorWatch
from swarmd.rules import is_progress
from swarmd.taxonomy import cause_of, with_fix
from swarmd.tracebacks import (
    OPENERS,
    Traceback,
    TracebackAssembler,
    exception_type_of,
    unquote,
)

__all__ = ["FileJudgement", "LogAnalyzer", "block_signal", "judge_lines"]

_NONE: tuple[Signal, ...] = ()
_GAME_LOOP = re.compile(r", in run_game\b")
# The upstream launcher's words once its trainer is gone (not signals: they name no cause).
_EXITED = re.compile(r">> Shutting down trainer|^\s*Terminated\s*$|\bzsh: terminated\b")
_WENT_ON_KINDS = frozenset({"logged_exception", "caught_exception"})
# How V8 words a TypeError; Python says "'NoneType' object has no attribute" and
# "object is not callable" instead.
_JS_WORDING = re.compile(r"Cannot (?:read|set) propert(?:y|ies) of (?:undefined|null)|\bis not a function\b")
_CONTEXT_LINES = 8  # a complaint this close before a traceback introduced it
_FIX_FROM = Verdict.OPERATOR_NEEDED.severity  # line signals from here up carry their fix
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# A cause known only as "something escaped": the node carrying on afterwards proves it
# was not fatal to it (a thread's traceback, a retried call).
_GENERIC_KINDS = frozenset({"uncaught_exception", "network_error", "http_error"})
# An idle line holding none of these, and no gate word of the classifier's, leaves `feed`
# with nothing to say: ANSI is stripped first, only "Error"/"Exception" make a lone
# exception, and the assembler opens blocks on its OPENERS only (see `feed_text`).
_SPEAKS = ("\x1b", "Error", "Exception", *OPENERS)


def block_signal(tb: Traceback, classifier: Classifier) -> Signal:
    """What one traceback calls for: caught at WARN level -> nothing; else the line
    rules on its final exception (p2pd, DHT, reward noise...), else the taxonomy."""
    final = tb.final_line
    block = tb.lines
    if tb.caught:
        return Signal("caught_exception", Verdict.TRANSIENT_IGNORE, final, "traceback:caught", block=block)
    user = classifier.exception_rule(tb.exc_type, final)
    if user is not None:
        return Signal(user.kind, user.verdict, final, user.name, block=block)
    known = classifier.classify(final) if tb.exc_type else None
    cause = cause_of(tb)
    if known is not None and known.verdict.severity < Verdict.RESTART.severity and _GAME_LOOP.search("\n".join(block)):
        # It escaped to the node's game loop (run_game), which ends the game: whatever
        # the library calls the error, the node has stopped training.
        return Signal("game_loop_exception", Verdict.RESTART, final, f"traceback:game_loop:{known.rule}", block=block)
    if known is not None and known.kind not in ("startup",):
        # The line rules know this cause; the taxonomy may still word the fix better.
        fix = cause.fix if cause.verdict is known.verdict else ""
        return with_fix(Signal(known.kind, known.verdict, final, f"traceback:{known.rule}", block=block, fix=fix))
    return Signal(cause.kind, cause.verdict, final, f"traceback:{cause.kind}", block=block, fix=cause.fix)


class LogAnalyzer:
    """Feed lines in order; get the signals each line completes."""

    __slots__ = ("_asm", "_clf", "_context", "_last_crash", "_last_sig", "_n", "_sig_n", "_watch")

    def __init__(self, classifier: Classifier, watch: OperatorWatch | None = None) -> None:
        self._clf = classifier
        self._asm = TracebackAssembler()
        self._watch = watch if watch is not None else OperatorWatch()
        self._last_crash: Signal | None = None
        self._n = 0  # lines fed
        self._last_sig: Signal | None = None  # the last line signal, fed at line `_sig_n`
        self._sig_n = 0
        self._context: Signal | None = None  # the complaint that introduced the open block

    @property
    def last_crash(self) -> Signal | None:
        """The signal of the last uncaught traceback seen (for the exit context)."""
        return self._last_crash

    def feed(self, line: str, t: float = 0.0) -> tuple[Signal, ...]:
        if "\x1b" in line:
            line = _ANSI.sub("", line)
        self._n += 1
        if self._asm.passes(line):
            # Most lines: no traceback open or opening; only the line rules speak.
            sig = self._clf.classify(line)
            if sig is not None:
                return self._line_signal(sig, t, ())
            if ("Error" in line or "Exception" in line) and line.lstrip("`")[:1].isalpha():
                return self._lone_exception(unquote(line.strip()))
            return _NONE
        was_open = self._asm.in_block
        source_line = self._asm.in_block and line[:1].isspace()
        tb = self._asm.feed(line)
        if self._asm.in_block and (not was_open or tb is not None):
            # A block opens here: a known complaint logged just before it owns it.
            recent = self._last_sig is not None and self._n - self._sig_n <= _CONTEXT_LINES
            self._context = self._last_sig if recent else None
        # Inside a traceback, an indented line (a frame, its source, carets) is code,
        # not an event (`raise P2PDaemonError(...)`): the whole block decides.
        sig = None if source_line else self._clf.classify(line)
        if sig is not None and self._asm.in_block and self._clf.has_exception_rules:
            # A user rule names this exception: the whole block decides, not the
            # built-in line rule that also knows its final line.
            exc = exception_type_of(line)
            if exc and self._clf.exception_rule(exc, line) is not None:
                sig = None
        if tb is None and sig is None:
            return _NONE
        before = (self._on_block(tb),) if tb is not None else ()
        if sig is None:
            return before
        return self._line_signal(sig, t, before)

    def feed_text(self, text: str, t: float = 0.0) -> tuple[Signal, ...]:
        """Lines joined by `\\n` (what a reader took in one read): the signals `feed`
        would give for each line in turn, in order, leaving the same state behind.

        Why: at 10k lines/s a call per line is most of swarmd's CPU, while nearly every
        line says nothing. A run of lines that cannot speak (no block open, none of
        `_SPEAKS`, no gate word: `Classifier.quiet_until`) is counted and noted in one
        step; only the lines from a possible speaker on go through `feed`.
        """
        lower = text.lower()
        # A character whose lower case is longer would shift the gate's offsets.
        skip = len(lower) == len(text)
        out: list[Signal] = []
        pos, end = 0, len(text)
        while True:
            if skip and not self._asm.in_block:
                quiet = self._clf.quiet_until(text, lower, pos, _SPEAKS)
                if quiet >= end:
                    self._pass_lines(text, pos, end)
                    break
                start = text.rfind("\n", pos, quiet) + 1  # of the line that may speak
                if start > pos:
                    self._pass_lines(text, pos, start - 1)
                    pos = start
            nl = text.find("\n", pos)
            out.extend(self.feed(text[pos:] if nl < 0 else text[pos:nl], t))
            if nl < 0:
                break
            pos = nl + 1
        return tuple(out)

    def _pass_lines(self, text: str, start: int, end: int) -> None:
        """The lines in `text[start:end]` say nothing: count them, and let the assembler
        note its context (the last two non-blank ones) as `passes` would have."""
        self._n += text.count("\n", start, end) + 1
        last: list[str] = []
        stop = end
        while len(last) < 2 and stop >= start:
            begin = text.rfind("\n", start, stop) + 1 or start
            line = text[begin:stop]
            if line and not line.isspace():
                last.append(line)
            stop = begin - 1
        for line in reversed(last):
            self._asm.passes(line)

    def _line_signal(self, sig: Signal, t: float, before: tuple[Signal, ...]) -> tuple[Signal, ...]:
        if sig.verdict.severity >= _FIX_FROM:
            sig = with_fix(sig)
        self._last_sig = sig
        self._sig_n = self._n
        if sig.kind in OPERATOR_KINDS:
            loop = self._watch.seen(sig, t)
            if loop is not None:
                return (*before, sig, loop)
        elif is_progress(sig):
            self._watch.progress()
        return (*before, sig)

    def _lone_exception(self, line: str) -> tuple[Signal, ...]:
        """A final exception line on its own (the reporter kept only that line)."""
        exc = exception_type_of(line)
        if not exc or exc.endswith("Warning"):
            return _NONE
        message = line.split(":", 1)[1].strip() if ":" in line else ""
        if exc == "ReferenceError" or _JS_WORDING.search(message):
            # JavaScript's wording (the login server's Node process shares the
            # terminal): not the trainer's exception, so not its crash.
            return _NONE
        return (self._on_block(Traceback(exc, message, (line,))),)

    def flush(self) -> tuple[Signal, ...]:
        """End of the stream (or the writer exited): the block still open, if any."""
        tb = self._asm.flush()
        return _NONE if tb is None else (self._on_block(tb),)

    def pending_operator(self, prompt: bool = False) -> Signal | None:
        return self._watch.pending(prompt)

    def crash_now(self) -> Signal | None:
        """The last uncaught traceback, counting the block still open, without changing
        anything (the loop asks this while the reader thread may still feed)."""
        tb = self._asm.peek()
        if tb is not None and not tb.caught:
            sig = self._judge_block(tb)
            if sig.verdict is not Verdict.TRANSIENT_IGNORE:
                return sig
        return self._last_crash

    def _on_block(self, tb: Traceback) -> Signal:
        sig = self._judge_block(tb)
        if not tb.caught and sig.verdict is not Verdict.TRANSIENT_IGNORE:
            self._last_crash = sig
        return sig

    def _judge_block(self, tb: Traceback) -> Signal:
        sig = block_signal(tb, self._clf)
        ctx = self._context
        owned = ctx is not None and ctx.verdict in (Verdict.TRANSIENT_IGNORE, Verdict.RECONNECT_DHT)
        if (owned or tb.logged) and sig.kind in _GENERIC_KINDS:
            # The stack of a complaint already judged (reward submission, a coroutine
            # hivemind caught): the complaint decides, not the generic exception.
            by = ctx.rule if owned and ctx is not None else "library_logger"
            sig = Signal("logged_exception", Verdict.TRANSIENT_IGNORE, sig.line, f"traceback:logged_by:{by}", block=sig.block)
        return sig


@dataclass(frozen=True, slots=True)
class FileJudgement:
    """A whole excerpt's verdict, the signals that carry it, and every signal seen."""

    verdict: Verdict | None
    deciding: tuple[Signal, ...]
    signals: tuple[Signal, ...]


def judge_lines(lines: Iterable[str], classifier: Classifier) -> FileJudgement:
    """What swarmd would do after reading these lines: the most severe signal wins,
    except a generic crash the node visibly survived (real progress after it)."""
    an = LogAnalyzer(classifier)
    signals: list[Signal] = []
    exited_at = -1  # signals seen before the launcher said its trainer is gone
    last_line_signals: tuple[Signal, ...] = ()  # of the last non-blank line
    for line in lines:
        got = an.feed(line)
        signals.extend(got)
        if line.strip():
            last_line_signals = got
        if _EXITED.search(line):
            exited_at = len(signals)
    signals.extend(an.flush())
    pending = an.pending_operator()
    if pending is None and any(s.kind == "prompt" for s in last_line_signals):
        # It ends asking a question nobody answered: the node sits at that prompt.
        pending = an.pending_operator(prompt=True)
    if pending is not None:
        signals.append(pending)
    # Evidence the node went on: real progress, or its libraries still logging what
    # they caught.
    last_progress = max(
        (i for i, s in enumerate(signals) if is_progress(s) or s.kind in _WENT_ON_KINDS), default=-1
    )
    useful = [
        s
        for i, s in enumerate(signals)
        if not (i < last_progress and s.kind in _GENERIC_KINDS and s.rule.startswith("traceback:"))
    ]
    if not useful:
        return FileJudgement(None, (), tuple(signals))
    worst = max(s.verdict.severity for s in useful)
    if worst <= Verdict.HEALTHY_IDLE.severity:
        # Healthy: the latest state wins (waiting, then joining a round = progressing).
        healthy = [s for s in useful if is_progress(s) or s.kind == "startup"]
        last = healthy[-1] if healthy else useful[-1]
        return FileJudgement(last.verdict, (last,), tuple(signals))
    # The whole block is better evidence than its last line alone: blocks first.
    top = tuple(sorted((s for s in useful if s.verdict.severity == worst), key=lambda s: not s.block))
    last_wait = max((i for i, s in enumerate(signals) if s.kind in OPERATOR_KINDS), default=len(signals))
    if top[0].verdict is Verdict.OPERATOR_NEEDED and exited_at > last_wait:
        # It stopped waiting by exiting: a restart would ask the same person again
        # (the exit context's rule), so the fix is needed before anything else.
        return FileJudgement(Verdict.GIVE_UP_FATAL, top, tuple(signals))
    return FileJudgement(top[0].verdict, top, tuple(signals))

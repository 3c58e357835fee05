"""Waiting for a person: a loop of "waiting for the API key", a login page nobody can
open, a question nobody answers -> one `operator_needed` signal with what to do.

Why a watch and not a rule: one "Waiting for API key to be activated..." is a normal
step of every login; the same line for minutes is a node that will wait for ever. A
restart cannot help (it asks again), and stall detection would restart it every
`stall_after`. So the loop is detected by repeats or by the time between the first and
the latest wait line, reported once per episode, and the episode ends with the first
real progress. A wait that goes silent is the policy's part: a stall whose last word
was a wait for a person is `operator_needed`, not a restart.
"""

from __future__ import annotations

from dataclasses import replace

from swarmd.domain import Signal, Verdict

__all__ = ["OPERATOR_KINDS", "OperatorWatch", "escalation"]

OPERATOR_KINDS = frozenset({"operator_wait", "prompt"})

_NO_BROWSER_RULES = frozenset({"login_display_missing", "browser_opener_missing"})
_FIX_LOGIN = (
    "log in at the node's login page (http://localhost:3000 on the node's host) and finish the "
    "email step so the API key activates; if it never does, delete the node's userData.json and "
    "apiKey.json (under modal-login/temp-data) and log in again"
)
_FIX_DISPLAY = (
    "this host has no browser or $DISPLAY for the login page: open it from another machine "
    "through an SSH tunnel (ssh -L 3000:localhost:3000 user@host, then http://localhost:3000) "
    "and log in"
)
_FIX_PROMPT = (
    "the node asks a question nobody answers: put the answers in [trainer] stdin_lines in "
    "monitor.toml (one per prompt, in order)"
)


def _shows_no_browser(sig: Signal) -> bool:
    return sig.rule in _NO_BROWSER_RULES or "display" in sig.line.lower()


def escalation(last: Signal, display: bool = False) -> Signal:
    """The `operator_needed` signal for a wait whose last word was `last`, with what to
    do (`display`: some line of the episode said there is no browser or $DISPLAY). The
    policy uses it alone when a wait goes silent, e.g. a question left unanswered."""
    if last.kind == "prompt":
        fix = _FIX_PROMPT
    elif display or _shows_no_browser(last):
        fix = _FIX_DISPLAY
    else:
        fix = _FIX_LOGIN
    return replace(
        last,
        verdict=Verdict.OPERATOR_NEEDED,
        kind="operator_needed",
        rule=f"operator_loop:{last.rule}",
        fix=fix,
    )


class OperatorWatch:
    """Pure: fed the operator-kind signals, progress, and the clock; no I/O."""

    __slots__ = ("_after", "_count", "_display", "_first", "_last", "_repeats", "_reported")

    def __init__(self, repeats: int = 3, after: float = 120.0) -> None:
        self._repeats = max(1, repeats)
        self._after = after
        self._reset()

    def _reset(self) -> None:
        self._count = 0
        self._first: float | None = None
        self._last: Signal | None = None
        self._display = False
        self._reported = False

    def progress(self) -> None:
        """Real progress: whoever was needed has acted."""
        self._reset()

    def seen(self, sig: Signal, t: float) -> Signal | None:
        """An operator-kind signal at time `t`; the escalation, once, when the loop shows."""
        if self._first is None:
            self._first = t
        self._count += 1
        self._last = sig
        if _shows_no_browser(sig):
            self._display = True
        if self._reported:
            return None
        if self._count >= self._repeats or t - self._first >= self._after:
            return self._escalate()
        return None

    def pending(self, prompt: bool = False) -> Signal | None:
        """At the end of an excerpt: a login wait not followed by progress needs its
        operator; an unanswered prompt only when the caller saw it as the last line
        (`prompt`), since answered prompts scroll past in every startup."""
        if self._reported or self._last is None:
            return None
        if self._last.kind != "operator_wait" and not (prompt and self._last.kind == "prompt"):
            return None
        return self._escalate()

    def _escalate(self) -> Signal | None:
        last = self._last
        if last is None:
            return None
        self._reported = True
        return escalation(last, self._display)

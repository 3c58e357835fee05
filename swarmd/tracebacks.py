"""Python tracebacks as whole blocks, assembled from a stream of lines in O(1) per line.

Why blocks: the lines of a traceback say little one by one (`File "..."`, a source
line, carets); what decides is the block's final exception (type + message), and
whether anyone caught it. A line-at-a-time grep sees `Traceback` in harmless
reward-submission noise and misses `ModuleNotFoundError` wrapped onto two lines.

Shapes seen in real node logs, all handled here:
- `Traceback (most recent call last):` with 3.10 frames (no carets) or 3.11+ frames
  (`^^^^` / `~~~^^` lines), chained by `During handling of the above exception…` or
  `The above exception was the direct cause…` (the LAST exception is what propagated);
- every line prefixed by `[rank0]: ` (torch elastic), a pipe tag (`node-1  | `), a
  journald or hivemind timestamp, or a genrl `[...][...][LEVEL] - ` logger prefix;
- a logger's `Stack (most recent call last):` (stack_info) after the exception it logs;
- hydra's `Error executing job with overrides: [...]` followed by the exception alone;
- OCR-garbled or truncated headers (` eback (most recent call last):`) and excerpts
  that start in the middle of the frames;
- an exception message that ends with `:` and continues on the next line (hydra's
  `InstantiationException: Error in call to target '…':` + `RuntimeError('…')`).

The assembler never looks back at history: it keeps the block being built (bounded)
and the previous line. A block is handed out when the first line that cannot belong
to it arrives, or on `flush()` (end of input, or the child exited).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Traceback", "TracebackAssembler", "exception_type_of", "unquote"]

_MAX_BLOCK_LINES = 400  # frames kept; a deeper (recursive) traceback keeps its head and tail
_HEADER = "recent call last"
_HYDRA = "Error executing job"
_FRAME_HINT = 'File "'
# `passes` turns away (with no more than a note of it) an idle line holding none of these.
OPENERS = (_HEADER, _HYDRA, _FRAME_HINT)

# Prefixes a log pipeline puts before every line of a traceback.
_PREFIX = re.compile(
    r"^(?:"
    r"\[rank\d+\]:\s?"  # torch elastic
    r"|[\w.-]{1,64}\s{1,8}\|\s"  # docker compose "node-1  | "
    r"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ [\w.@/-]+(?:\[\d+\])?: "  # journald
    r"|\[\d+(?:\.\d+)?\] "  # kernel/short-monotonic stamp
    r"|\[\d{4}-\d\d-\d\d [\d:,.]+\]\[[^\]]{1,100}\]\[[A-Z]+\] - "  # genrl logger
    r")"
)
_FRAME = re.compile(r'^\s*File "[^"]*", line \d+')
_CARETS = re.compile(r"^\s*[~^]+\s*$")
_CHAIN = ("During handling of the above exception", "The above exception was the direct cause")
# A final exception line: `pkg.mod.TypeName: message`, `TypeName`, or a repr
# `TypeName('message')` (hydra). The name must look like an exception class.
_EXC = re.compile(
    r"^(?P<type>(?:[A-Za-z_]\w*\.){0,6}[A-Z_]\w*?(?:Error|Exception|Exit|Interrupt|Failure|Fault|Timeout"
    r"|Warning|Iteration|Unavailable|Refused|Reset|Denied|Cancelled|Abort(?:ed)?|NotFound|Invalid\w*))"
    r"(?:(?::\s?(?P<msg>.*))|(?:\((?P<repr>.*)\)\s*))?$"
)
# Log levels at which a library says "I caught this and go on".
_CAUGHT_LEVEL = re.compile(
    r"\[WARN(?:ING)?\]|\]\[WARNING\]|(?:^|\s)WARNING:[\w.]+:|\bW\d{4} \d\d:|\| WARNING \||\bWARNING\s+[\w.]+:\d+"
)
# Words with which a library introduces a traceback it caught and survives.
_GOES_ON = re.compile(
    r"(?i)\bretry(?:ing)?\b|\bwill (?:retry|recover)\b|\bcaught (?:an )?exception\b|\bcontinuing\b"
)
# Python's own report of an exception it did not let propagate: a finalizer or an
# `atexit` handler raised (the unraisable hook). The program was not interrupted.
_IGNORED = re.compile(r"\bException ignored (?:in|on|while|when|during)\b|^Error in atexit\._run_exitfuncs:")
# A record of a library logger (hivemind/petals formats name `module.func:line`): a
# library that logs a traceback has caught it; whether the node survives, the cause says.
_LIBRARY_RECORD = re.compile(
    r"\[(?:ERROR|WARN|WARNING|INFO|DEBUG)\]\s?\[[\w.<>]+:\d+\]|Task exception was never retrieved"
)
_OCR_DOTS = re.compile(r"(?<=\w)\. (?=[a-z_]\w*[.:])")  # "requests. exceptions.HTTPError"
_ERROR_REPR_LINE = re.compile(r"^[A-Z]\w*(?:Error|Exception)\(")


@dataclass(frozen=True, slots=True)
class Traceback:
    """One assembled block.

    `exc_type` is the dotted name as printed (`""` when the excerpt stops before the
    final exception), `message` its text, `caught` whether a WARN-level log record
    introduced it (the library logged it and went on) or Python said it ignored it
    (`Exception ignored in: ...`), `chained` how many exceptions
    came before the last one.
    """

    exc_type: str
    message: str
    lines: tuple[str, ...]
    caught: bool = False
    logged: bool = False
    chained: int = 0
    header: str = ""

    @property
    def short_type(self) -> str:
        """`requests.exceptions.HTTPError` -> `HTTPError`."""
        return self.exc_type.rsplit(".", 1)[-1]

    @property
    def final_line(self) -> str:
        if not self.exc_type:
            return "(traceback cut before its final exception)"
        return f"{self.exc_type}: {self.message}" if self.message else self.exc_type


# Assembler states.
_IDLE, _FRAMES, _AFTER_EXC, _CONTINUE = 0, 1, 2, 3


class TracebackAssembler:
    """Feeds on lines; returns a finished `Traceback` when a block closes, else None."""

    __slots__ = (
        "_after_frame",
        "_caught",
        "_chained",
        "_exc_msg",
        "_exc_type",
        "_header",
        "_indent",
        "_lines",
        "_logged",
        "_prev",
        "_prev2",
        "_state",
    )

    def __init__(self) -> None:
        self._state = _IDLE
        self._lines: list[str] = []
        self._prev = ""
        self._prev2 = ""
        self._reset()

    def _reset(self) -> None:
        self._state = _IDLE
        self._lines = []
        self._exc_type = ""
        self._exc_msg = ""
        self._caught = False
        self._logged = False
        self._chained = 0
        self._header = ""
        self._indent = 0
        self._after_frame = False

    @property
    def in_block(self) -> bool:
        return self._state != _IDLE

    @property
    def expects_source(self) -> bool:
        """The next line is the source line of the frame just read (code, not an event)."""
        return self._state == _FRAMES and self._after_frame

    def passes(self, line: str) -> bool:
        """The hot path: no block is open and this line opens none (it is only kept as
        context for the next block). False: call `feed` with it."""
        if self._state != _IDLE or _HEADER in line or _HYDRA in line or _FRAME_HINT in line:
            return False
        if line and not line.isspace():
            self._prev2 = self._prev
            self._prev = line
        return True

    def feed(self, line: str) -> Traceback | None:
        """One line in; the block it closed (if any) out. The line itself may open a
        new block, which is then reported by a later call."""
        if self._state == _IDLE:
            if _HEADER not in line and _HYDRA not in line and _FRAME_HINT not in line:
                self._note(line)
                return None
            self._open(line)
            return None
        done = self._step(line)
        if self._state == _IDLE:
            # The closing line may itself start the next block.
            if _HEADER in line or _HYDRA in line or _FRAME_HINT in line:
                self._open(line)
            else:
                self._note(line)
        return done

    def peek(self) -> Traceback | None:
        """The block still open as it stands, without closing it (safe to call from
        another thread than the feeder: it only reads). Asked when the writer exited, so
        a block that got no further than its opening line counts, as in `flush`."""
        if self._state == _IDLE or not self._lines:
            return None
        return Traceback(self._exc_type, self._exc_msg[:2000], tuple(self._lines), self._caught, self._logged,
                         self._chained, self._header)

    def flush(self) -> Traceback | None:
        """The block still open (end of input, or the writer exited), if any. Even a
        lone opening line counts here: Python prints `Traceback (most recent call
        last):` only while an exception escapes, so an output that ends on it is a
        crash whose frames were cut, not a header that "says nothing"."""
        if self._state == _IDLE:
            return None
        return self._finish(at_end=True)

    # -- internals ------------------------------------------------------------------------
    def _open(self, line: str) -> None:
        body = _strip(line)
        if _HEADER in line:
            at = line.find(_HEADER)
            lead = line[: max(0, at - 30)]
        elif _HYDRA in line:
            lead = line[: line.find(_HYDRA)]
        elif _FRAME.match(body):
            lead = ""
        else:
            self._note(line)
            return
        self._state = _FRAMES
        self._lines = [line]
        self._after_frame = not lead and not (_HEADER in line or _HYDRA in line)
        self._header = body.strip()
        # A block pasted indented (quoted in a message) keeps its exception at the
        # header's indentation, not at column 0.
        self._indent = len(body) - len(body.lstrip())
        # Caught: the log record that printed the traceback is at WARN level, either on
        # the header's own line or on the line just before it.
        before = (lead, self._prev, self._prev2)
        self._caught = any(_CAUGHT_LEVEL.search(t) or _GOES_ON.search(t) for t in before[:2]) or bool(
            _IGNORED.search(self._prev)
        )
        self._logged = any(_LIBRARY_RECORD.search(t) for t in before)
        self._note(line)

    def _note(self, line: str) -> None:
        """Remember the last two non-blank lines: the log record that introduced a block."""
        if line and not line.isspace():
            self._prev2 = self._prev
            self._prev = line

    def _keep(self, line: str) -> None:
        if len(self._lines) < _MAX_BLOCK_LINES:
            self._lines.append(line)
        else:
            self._lines[-1] = line  # keep the head and the latest line

    def _step(self, line: str) -> Traceback | None:
        body = _strip(line)
        stripped = body.strip()
        state = self._state
        if state == _CONTINUE:
            # The message ended with ':' and goes on here (hydra's repr of the cause).
            self._state = _AFTER_EXC
            if stripped and (_ERROR_REPR_LINE.match(stripped) or not body[:1].isspace()):
                self._keep(line)
                self._exc_msg = f"{self._exc_msg} {stripped}".strip()
                return None
        if _HEADER in line or _HYDRA in line:
            if self._exc_type:
                self._chained += 1  # a chained block, or the stack_info after the exception
            self._keep(line)
            self._state = _FRAMES
            return None
        if not stripped:
            if state == _FRAMES and len(self._lines) == 1:
                return None  # hydra leaves a blank line before its exception
            self._keep(line)
            return None
        if stripped.startswith(_CHAIN):
            self._keep(line)
            self._state = _FRAMES
            return None
        indent = len(body) - len(body.lstrip())
        if self._state == _FRAMES:
            frame = _FRAME.match(body) is not None
            if (
                frame
                or indent > self._indent
                or _CARETS.match(body)
                or stripped == "..."
                or '", line ' in stripped  # a frame soft-wrapped inside its path
            ):
                self._after_frame = frame
                self._keep(line)
                return None
            bare = unquote(stripped)
            m = _EXC.match(bare) or _EXC.match(_OCR_DOTS.sub(".", bare[:120]) + bare[120:])
            if m is None:
                if self._after_frame:
                    # The source line of the frame above, its indentation lost (a
                    # retyped or OCR'd copy): still inside the block.
                    self._after_frame = False
                    self._keep(line)
                    return None
                # Not an exception: the excerpt was cut, or another writer interleaved.
                return self._finish()
            self._keep(line)
            self._exc_type = m.group("type")
            msg = m.group("msg")
            if msg is None:
                msg = m.group("repr") or ""
            self._exc_msg = msg.strip()
            self._state = _CONTINUE if self._exc_msg.endswith(":") else _AFTER_EXC
            return None
        # After the final exception: hydra's trailer lines stay with it, anything else
        # closes the block (and is handled as a line of its own).
        if stripped.startswith(("full_key:", "object_type=", "Set the environment variable HYDRA_FULL_ERROR")):
            self._keep(line)
            return None
        if indent > self._indent and len(stripped) < 300 and not _FRAME.match(body):
            # The rest of a multi-line message (pretty-printed dicts, wrapped text).
            self._keep(line)
            return None
        return self._finish()

    def _finish(self, at_end: bool = False) -> Traceback | None:
        if not self._exc_type and len(self._lines) < 2 and not at_end:
            # An opening line followed by something that is not a frame: another writer
            # interleaved, or a line that only quotes a header; no block.
            self._reset()
            return None
        tb = Traceback(
            exc_type=self._exc_type,
            message=self._exc_msg[:2000],
            lines=tuple(self._lines),
            caught=self._caught,
            logged=self._logged,
            chained=self._chained,
            header=self._header,
        )
        self._reset()
        return tb


def _strip(line: str) -> str:
    """The line without a per-line log prefix (only tried inside a block)."""
    if line[:1] in (" ", "\t", ""):
        return line  # indented: a frame or its source, never a log prefix
    m = _PREFIX.match(line)
    return line[m.end() :] if m else line


def unquote(text: str) -> str:
    """The text without the markdown backticks a reporter wrapped it in (`` `TypeError: x` ``):
    pasted logs keep them on their first and last lines."""
    return text.strip("`").strip() if "`" in text else text


def exception_type_of(line: str) -> str:
    """The exception type a line would end a traceback with (`""` if none)."""
    m = _EXC.match(unquote(_strip(line).strip()))
    return m.group("type") if m else ""

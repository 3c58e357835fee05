"""A pipe reader's whole read judged at once (`LogAnalyzer.feed_text`) says exactly what
the same lines fed one by one say, and leaves the analyzer in the same state: the bulk
pass over quiet runs is only a cheaper way to the same answer."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmd.analyze import LogAnalyzer
from swarmd.classify import Classifier
from swarmd.domain import Signal, Verdict
from swarmd.rules import Rule

REPO = Path(__file__).resolve().parents[2]
EXCERPTS = sorted((REPO / "tests" / "corpus").glob("*.log")) + sorted((REPO.parent / "shared" / "failures").glob("*.log"))
CLF = Classifier()

# After the lines under test, these show what state was left behind: the context a
# new block's header reads (the last two lines), the line count that ties a complaint
# to the block it introduces, an open block's end.
PROBE = [
    "Traceback (most recent call last):",
    '  File "/venv/lib/python3.11/site-packages/hivemind/dht/dht.py", line 88, in run',
    "hivemind.p2p.P2PDaemonError: Daemon failed to start in 15.0 seconds",
    "INFO: after the probe",
]

# A line only a reader of the ANSI-stripped text knows: no gate word survives in the raw
# bytes (a colour code every two characters), yet stripped it is a p2pd failure.
P2PD = "hivemind.p2p.P2PDaemonError: Daemon failed to start in 15.0 seconds"
ANSI_ONLY = "\x1b[0m".join(P2PD[i : i + 2] for i in range(0, len(P2PD), 2))

TRICKY = [
    ANSI_ONLY,
    "",
    "   ",
    "line 12 ...........................................",
    "\x1b[31mERR\x1b[0mOR: colour inside a word",
    "tqdm frame 1\rtqdm frame 2",
    "a NUL\x00 in the middle",
    "x" * 20_000,
    "İstanbul error with a longer lower case",
    "Jul 19 09:22:42.251 [WARN] [petals.server.reachability.check:148] Reachability check failed",
    "Traceback (most recent call last):",
    '  File "/usr/lib/python3.11/asyncio/streams.py", line 48, in open_connection',
    "    raise exceptions[0]",
    "ConnectionRefusedError: [Errno 111] Connect call failed ('10.0.0.7', 31337)",
    "During handling of the above exception, another exception occurred:",
    "Error executing job with overrides: []",
    "RuntimeError: boom",
    "MyCustomException: went wrong",
    "`ModuleNotFoundError: No module named 'hydra'`",
    "Waiting for API key to be activated...",
    "Would you like to push models to the Hugging Face Hub? [y/N]",
    " 75%|███████▌  | 15/20 [01:23<00:27,  5.40s/it]",
    "INFO:hivemind_exp:🐝 Joining round: 12 starting at stage: 0",
]


def in_reads(lines: list[str], cuts: list[int], t: float = 1.0, clf: Classifier = CLF) -> tuple[list[Signal], LogAnalyzer]:
    """The lines handed over in reads of the sizes in `cuts` (cycled), as the pipe reader does."""
    an = LogAnalyzer(clf)
    out: list[Signal] = []
    i = k = 0
    while i < len(lines):
        n = max(1, cuts[k % len(cuts)])
        out.extend(an.feed_text("\n".join(lines[i : i + n]), t))
        i, k = i + n, k + 1
    return out, an


def assert_same(lines: list[str], cuts: list[int], clf: Classifier = CLF) -> None:
    ref = LogAnalyzer(clf)
    want = [sig for line in lines for sig in ref.feed(line, 1.0)]
    got, an = in_reads(lines, cuts, clf=clf)
    assert got == want
    assert an.crash_now() == ref.crash_now()
    assert an.pending_operator() == ref.pending_operator()
    # The state left behind decides what the next lines say.
    assert [s for line in PROBE for s in an.feed(line, 2.0)] == [s for line in PROBE for s in ref.feed(line, 2.0)]
    assert an.flush() == ref.flush()


def excerpt_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text(errors="replace").split("\n") if not ln.startswith("# ")]


def test_every_excerpt_in_reads_of_any_size_says_what_it_says_line_by_line() -> None:
    assert EXCERPTS, "no excerpts found"
    for path in EXCERPTS:
        lines = excerpt_lines(path)
        for cuts in ([1], [3, 1, 7], [200]):
            assert_same(lines, cuts)


def test_excerpts_interleaved_with_quiet_lines_judge_the_same() -> None:
    """The benchmark's shape: long quiet runs with the excerpts' lines among them, so
    runs are passed in bulk right up to the line that speaks."""
    quiet = [f"line {i}".ljust(60, ".") for i in range(90)]
    for path in EXCERPTS[:60]:
        lines = [*quiet, *excerpt_lines(path), *quiet, "", "  ", *quiet[:5]]
        assert_same(lines, [200, 17])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(st.sampled_from([*TRICKY, "line 1 ......", "line 2 ......"]), max_size=40),
    cuts=st.lists(st.integers(1, 12), min_size=1, max_size=5),
)
def test_any_mix_of_tricky_lines_in_any_reads_judges_the_same(picks: list[str], cuts: list[int]) -> None:
    assert_same(picks, cuts)


PIECES = [*"aeoErxn .:[]()|%\x1b\x00\r\t`İ", "\n", "Error", "Exception", "Traceback (most recent call last):", 'File "', "round", "[WARN]"]


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=120))
def test_random_text_judges_the_same(pieces: list[str]) -> None:
    assert_same("".join(pieces).split("\n"), [1, 5, 50])


def test_a_line_that_speaks_only_without_its_colours_is_not_passed_in_bulk() -> None:
    assert CLF.classify(ANSI_ONLY) is not None
    lines = ["line 1 ....", ANSI_ONLY, "line 2 ...."]
    got, _ = in_reads(lines, [3])
    assert got
    assert_same(lines, [3])


def test_a_library_record_two_lines_before_a_header_is_remembered_across_a_bulk_pass() -> None:
    """The header's context (the last two lines before it) comes out of a quiet run
    passed in bulk: the library record two lines up still makes the block logged."""
    record = "Jul 19 09:22:42 [INFO][petals.utils.peer:42] sending"
    quiet = "line 7 ......................"
    assert CLF.quiet_until(f"{record}\n{quiet}", f"{record}\n{quiet}".lower(), 0) == len(record) + len(quiet) + 1
    block = ["Traceback (most recent call last):", '  File "x.py", line 1, in f', "RuntimeError: boom", "INFO end"]
    lines = [quiet] * 5 + [record, quiet, *block]
    got, _ = in_reads(lines, [len(lines)])
    assert [s.rule for s in got] == ["traceback:logged_by:library_logger"]
    assert_same(lines, [len(lines)])


def test_a_user_rule_without_tokens_is_tried_on_every_line_in_bulk_too() -> None:
    """A rule the gate knows nothing of turns the bulk pass off rather than be skipped."""
    clf = Classifier([Rule(name="mine", pattern=re.compile(r"line 4\b"), verdict=Verdict.RESTART, kind="mine")])
    lines = [f"line {i}".ljust(40, ".") for i in range(10)]
    want = [sig for line in lines for sig in LogAnalyzer(clf).feed(line, 1.0)]
    got, _ = in_reads(lines, [10], clf=clf)
    assert got == want
    assert [s.rule for s in got] == ["mine"]


def test_quiet_until_never_passes_a_line_that_classifies() -> None:
    """Every line ending before the offset returned classifies as None."""
    lines = [*TRICKY, *(ln for p in EXCERPTS[:40] for ln in excerpt_lines(p))]
    # Offsets hold only where lower-casing keeps the length ("İ" grows; the analyzer
    # then passes nothing in bulk).
    text = "\n".join(ln for ln in lines if len(ln.lower()) == len(ln))
    lower = text.lower()
    assert len(lower) == len(text)
    pos = 0
    starts = [0]
    for ln in text.split("\n")[:-1]:
        pos += len(ln) + 1
        starts.append(pos)
    for start in starts:
        stop = CLF.quiet_until(text, lower, start)
        assert stop >= start
        end = start
        while True:
            nl = text.find("\n", end)
            if nl < 0 or nl >= stop:
                break
            assert CLF.classify(text[end:nl]) is None, text[end:nl]
            end = nl + 1

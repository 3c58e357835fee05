"""The file-level classifier against every labelled excerpt: the project's own corpus
(tests/corpus) and the shared failure corpus beside the checkout (../shared/failures).

Agreement is measured over all of them together and must stay >= 95%; every miss is
printed with what decided it, so a regression names its excerpt.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.analyze import judge_lines
from swarmd.classify import Classifier
from swarmd.cli import read_log_lines

REPO = Path(__file__).resolve().parents[2]
OWN = REPO / "tests" / "corpus"
SHARED = REPO.parent / "shared" / "failures"
MIN_AGREEMENT = 0.95
# The floor, over tests/corpus and ../shared/failures together (a clone without
# ../shared measures tests/corpus alone and says so).
MIN_EXCERPTS = 150
NO_SIGNAL = "healthy_progress"  # `swarmd classify` prints this when no rule matched


def _expect(path: Path) -> str:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("# expect:"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path}: no '# expect:' header; fix: add one (see tests/corpus/INDEX.md)")


def _files() -> list[Path]:
    own = sorted(OWN.glob("*.log")) if OWN.is_dir() else []
    shared = sorted(SHARED.glob("*.log")) if SHARED.is_dir() else []
    return own + shared


def test_shared_corpus_is_beside_the_checkout() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared corpus not found at {SHARED} (a clone without ../shared): only tests/corpus is measured")


def test_classifier_agrees_with_the_labelled_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    files = _files()
    if not files:
        pytest.skip(f"no excerpts in {OWN} or {SHARED}")
    clf = Classifier()
    misses: list[str] = []
    for path in files:
        expect = _expect(path)
        judged = judge_lines(read_log_lines(path), clf)
        got = judged.verdict.value if judged.verdict else NO_SIGNAL
        if got != expect:
            why = "; ".join(f"{s.rule}: {s.line.strip()[:120]}" for s in judged.deciding[:2]) or "no rule matched"
            misses.append(f"{path.parent.name}/{path.name}: expect {expect}, got {got} ({why})")
    agreement = 1 - len(misses) / len(files)
    with capsys.disabled():
        print(f"\ncorpus: {len(files) - len(misses)}/{len(files)} excerpts agree ({agreement:.1%})")
        for miss in misses:
            print(f"  MISS {miss}")
    assert agreement >= MIN_AGREEMENT, f"{len(misses)} misses of {len(files)}:\n" + "\n".join(misses)
    if SHARED.is_dir():
        assert len(files) >= MIN_EXCERPTS, f"{len(files)} excerpts; the corpus needs >= {MIN_EXCERPTS}"
    else:
        with capsys.disabled():
            print(f"  note: {len(files)} excerpts without ../shared; with it the floor is {MIN_EXCERPTS}")

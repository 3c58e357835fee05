"""The durable submission queue: written before it is sent, once per submission, bounded,
and intact after the writing process is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from trainer.coordinator.queue import Submission, SubmissionQueue


def _reward(rnd: int, stage: int = 0) -> Submission:
    return Submission("reward", rnd, stage, "QmA", reward=rnd * 10, queued_at=1.0)


def test_pending_is_oldest_round_first_and_done_removes(tmp_path: Path) -> None:
    q = SubmissionQueue(tmp_path)
    for rnd in (12, 3, 7):
        assert q.put(_reward(rnd))
    q.put(Submission("winners", 3, 0, "QmA", winners=("QmB",)))
    assert [(i.kind, i.round) for i in q.pending()] == [("reward", 3), ("winners", 3), ("reward", 7), ("reward", 12)]
    q.done(_reward(3))
    assert q.depth() == 3


def test_the_same_submission_is_queued_once(tmp_path: Path) -> None:
    q = SubmissionQueue(tmp_path)
    assert q.put(_reward(1)) is True
    assert q.put(Submission("reward", 1, 0, "QmA", reward=999)) is False
    assert [i.reward for i in q.pending()] == [10]


def test_full_queue_drops_the_oldest_round(tmp_path: Path) -> None:
    q = SubmissionQueue(tmp_path, max_items=3)
    for rnd in range(5):
        q.put(_reward(rnd))
    assert [i.round for i in q.pending()] == [2, 3, 4]
    assert q.dropped == 2


def test_a_new_process_finds_the_queue_and_discards_torn_or_bad_files(tmp_path: Path) -> None:
    SubmissionQueue(tmp_path).put(_reward(5))
    (tmp_path / "reward-r000000000000000006-s000000.json.tmp").write_text("{half")
    (tmp_path / "reward-r000000000000000007-s000000.json").write_text("not json")
    q = SubmissionQueue(tmp_path)
    assert [i.round for i in q.pending()] == [5]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "reward-r000000000000000005-s000000.json", "reward-r000000000000000007-s000000.bad"]


def test_a_submission_survives_sigkill_right_after_put(tmp_path: Path) -> None:
    """put() returns only after fsync + rename, so the writer may die the next instant."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from trainer.coordinator.queue import Submission, SubmissionQueue\n"
        "q = SubmissionQueue(Path(sys.argv[1]))\n"
        "for r in range(3):\n"
        "    q.put(Submission('reward', r, 0, 'QmA', reward=r))\n"
        "print('queued', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "queued"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        proc.stdout.close()  # type: ignore[union-attr]
    assert [i.round for i in SubmissionQueue(tmp_path).pending()] == [0, 1, 2]

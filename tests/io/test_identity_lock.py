"""Host-wide identity locks between real processes: a second daemon for one identity
is refused with the first one's pid and config, a copy of the key is the same
identity, and a killed holder leaves no stale lock."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmd.identity import HostLocks, IdentityTaken

pytestmark = pytest.mark.io

HOLDER = """
import sys
from pathlib import Path
from swarmd.identity import HostLocks
locks = HostLocks(Path(sys.argv[1]), pid=__import__("os").getpid(), config=sys.argv[3])
if sys.argv[2].startswith("follow:"):
    locks.claim_follow(Path(sys.argv[2][7:]))
else:
    locks.claim_identity(Path(sys.argv[2]))
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "node-a" / "swarm.pem"
    path.parent.mkdir()
    path.write_bytes(b"\x08\x00\x12" + os.urandom(64))
    return path


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def hold(procs: list[subprocess.Popen[str]], lock_dir: Path, target: str, config: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir), target, config],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_daemon_for_one_identity_is_refused_naming_the_first(
    tmp_path: Path, pem: Path, holder: list[subprocess.Popen[str]]
) -> None:
    first = hold(holder, tmp_path / "locks", str(pem), "/etc/swarmd/a.toml")
    locks = HostLocks(tmp_path / "locks", pid=os.getpid(), config="/etc/swarmd/b.toml")
    with pytest.raises(IdentityTaken) as caught:
        locks.claim_identity(pem)
    line = str(caught.value)
    assert "\n" not in line
    assert f"swarmd pid {first.pid}" in line
    assert "/etc/swarmd/a.toml" in line
    assert str(pem) in line
    assert "own swarm.pem" in line


def test_a_copy_of_the_key_elsewhere_is_the_same_identity(
    tmp_path: Path, pem: Path, holder: list[subprocess.Popen[str]]
) -> None:
    hold(holder, tmp_path / "locks", str(pem), "a.toml")
    copy = tmp_path / "node-b" / "swarm.pem"
    copy.parent.mkdir()
    shutil.copy(pem, copy)
    with pytest.raises(IdentityTaken):
        HostLocks(tmp_path / "locks", pid=os.getpid(), config="b.toml").claim_identity(copy)


def test_a_symlink_to_the_key_is_the_same_identity_even_before_it_exists(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    missing = tmp_path / "later.pem"  # upstream creates swarm.pem on its first start
    hold(holder, tmp_path / "locks", str(missing), "a.toml")
    link = tmp_path / "link.pem"
    link.symlink_to(missing)
    with pytest.raises(IdentityTaken):
        HostLocks(tmp_path / "locks", pid=os.getpid(), config="b.toml").claim_identity(link)


def test_another_identity_is_free(tmp_path: Path, pem: Path, holder: list[subprocess.Popen[str]]) -> None:
    hold(holder, tmp_path / "locks", str(pem), "a.toml")
    other = tmp_path / "other.pem"
    other.write_bytes(b"\x08\x00\x12" + os.urandom(64))
    locks = HostLocks(tmp_path / "locks", pid=os.getpid(), config="b.toml")
    locks.claim_identity(other)
    locks.release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path, pem: Path, holder: list[subprocess.Popen[str]]) -> None:
    first = hold(holder, tmp_path / "locks", str(pem), "a.toml")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    locks = HostLocks(tmp_path / "locks", pid=os.getpid(), config="b.toml")
    locks.claim_identity(pem)
    # ...and now we are the one a third daemon is told about.
    with pytest.raises(IdentityTaken, match=f"swarmd pid {os.getpid()} "):
        HostLocks(tmp_path / "locks", pid=1, config="c.toml").claim_identity(pem)
    locks.release()


def test_release_frees_the_identity(tmp_path: Path, pem: Path) -> None:
    first = HostLocks(tmp_path / "locks", pid=os.getpid(), config="a.toml")
    first.claim_identity(pem)
    first.release()
    second = HostLocks(tmp_path / "locks", pid=os.getpid(), config="b.toml")
    second.claim_identity(pem)
    second.release()


def test_a_followed_log_followed_by_another_daemon_names_it(
    tmp_path: Path, holder: list[subprocess.Popen[str]]
) -> None:
    log = tmp_path / "swarm_launcher.log"
    log.touch()
    first = hold(holder, tmp_path / "locks", f"follow:{log}", "/etc/swarmd/a.toml")
    locks = HostLocks(tmp_path / "locks", pid=os.getpid(), config="b.toml")
    other = locks.claim_follow(log)
    assert other is not None
    assert other.pid == first.pid
    assert other.config == "/etc/swarmd/a.toml"
    assert locks.claim_follow(tmp_path / "x.log") is None
    locks.release()

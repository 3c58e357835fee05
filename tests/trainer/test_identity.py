"""swarm.pem: created once (0600, libp2p protobuf RSA), never overwritten, corrupt files
refused with exit code 78; peer id and animal name derived as libp2p/hivemind do."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trainer.identity import (
    ADJECTIVES,
    ANIMALS,
    EXIT_IDENTITY,
    IdentityError,
    animal_name,
    load_or_create,
    peer_id_from_private,
)

REPO = Path(__file__).resolve().parents[2]


def test_missing_file_is_created_0600_as_libp2p_rsa_protobuf(tmp_path: Path) -> None:
    """A first start writes an RSA key wrapped in crypto.pb PrivateKey, readable only by us."""
    path = tmp_path / "state" / "swarm.pem"
    ident = load_or_create(path)
    data = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert data[:3] == b"\x08\x00\x12"  # key_type=RSA, then the DER bytes field
    assert 1150 < len(data) < 1250
    assert ident.peer_id.startswith("Qm")
    assert len(ident.peer_id) == 46


def test_existing_file_is_loaded_not_overwritten(tmp_path: Path) -> None:
    """A second start keeps the same bytes and therefore the same peer id."""
    path = tmp_path / "swarm.pem"
    first = load_or_create(path)
    before = path.read_bytes()
    second = load_or_create(path)
    assert path.read_bytes() == before
    assert second.peer_id == first.peer_id
    assert second.animal == first.animal


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"\x08\x00\x12\x05abc", b"\x08\x01\x12\x02ab"])
def test_corrupt_file_is_refused_and_kept(tmp_path: Path, content: bytes) -> None:
    """Garbage, truncated or non-RSA files raise IdentityError naming the file; the file stays."""
    path = tmp_path / "swarm.pem"
    path.write_bytes(content)
    with pytest.raises(IdentityError) as err:
        load_or_create(path)
    assert str(path) in str(err.value)
    assert "fix:" in str(err.value)
    assert "\n" not in str(err.value)
    assert path.read_bytes() == content


# hivemind's import runs torch.jit.script, deprecated in torch 2.13 (not our code).
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_peer_id_matches_hivemind_derivation(tmp_path: Path) -> None:
    """Our base58(sha256 multihash(pb public key)) equals hivemind's PeerID.from_identity."""
    from hivemind.p2p import PeerID

    path = tmp_path / "swarm.pem"
    ident = load_or_create(path)
    assert ident.peer_id == PeerID.from_identity(path.read_bytes()).to_base58()
    assert peer_id_from_private(path.read_bytes()) == ident.peer_id


def test_animal_name_is_deterministic_three_words() -> None:
    """md5(peer id) bytes 2,1,0 pick adjective, adjective, animal from fixed unique lists."""
    name = animal_name("QmQ2gEXoPJg6iMBSUFWGzAabS2VhnzuS782Y637hGjfsRJ")
    assert name == animal_name("QmQ2gEXoPJg6iMBSUFWGzAabS2VhnzuS782Y637hGjfsRJ")
    first, second, animal = name.split(" ")
    assert first in ADJECTIVES
    assert second in ADJECTIVES
    assert animal in ANIMALS
    assert len(set(ADJECTIVES)) == len(ADJECTIVES)
    assert len(set(ANIMALS)) == len(ANIMALS)
    assert animal_name("QmOther") != name or animal_name("QmThird") != name


def test_cli_with_corrupt_identity_exits_78_with_one_line(tmp_path: Path) -> None:
    """`python -m trainer` on a corrupt swarm.pem prints one line naming it and exits 78."""
    pem = tmp_path / "swarm.pem"
    pem.write_bytes(b"not a key")
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'state_dir = "{tmp_path}"\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "trainer", "--config", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == EXIT_IDENTITY
    assert proc.stderr.count("\n") == 1
    assert str(pem) in proc.stderr
    assert pem.read_bytes() == b"not a key"


def test_cli_with_bad_config_key_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    """A typo'd key is a one-line error with file, key and fix, exit 2, before any torch import."""
    cfg = tmp_path / "t.toml"
    cfg.write_text('state_dir = "x"\nround_secnds = 3\n', encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "trainer", "--config", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert str(cfg) in proc.stderr
    assert "round_secnds" in proc.stderr
    assert "fix:" in proc.stderr

"""Secrets never reach a log: tokens, private keys, key=value secrets, URL credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmd.redact import REDACTED, redact_bytes, redact_mapping, redact_text

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "failures"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("login with hf_A1b2C3d4E5f6G7h8I9j0K1 now", "hf_A1b2C3d4E5f6G7h8I9j0K1"),
        ("key 0x" + "ab" * 32 + " loaded", "ab" * 32),
        ("HF_TOKEN=abcdefghijklmnop", "abcdefghijklmnop"),
        ('{"api_key": "s3cr3t-value-123"}', "s3cr3t-value-123"),
        ("password: hunter2hunter2", "hunter2hunter2"),
        ("url: 'https://gensyn-testnet.g.alchemy.com/v2/Zq7KfW2mPb9XrT4nHc8VdJ3sLy6GaE1u'", "Zq7KfW2mPb9XrT4nHc8VdJ3sLy6GaE1u"),
        ("fetch https://user:pa55word@example.org/x", "pa55word"),
        ("Authorization: Bearer abcdef0123456789abcdef", "abcdef0123456789abcdef"),
    ],
)
def test_secret_shapes_are_redacted(line: str, secret: str) -> None:
    """Each known secret shape is replaced and the rest of the line kept."""
    out = redact_text(line)
    assert secret not in out
    assert REDACTED in out


def test_ordinary_lines_are_untouched() -> None:
    """Progress lines, peer ids and tx hashes shorter than a key stay as they are."""
    for line in (
        "INFO:hivemind_exp:🐝 Joining round: 12 starting at stage: 0",
        " 75%|███████▌  | 15/20 [01:23<00:27,  5.40s/it]",
        "revertData 0xe39ce02e",
        "tokens/s=123.4 keyboard interrupt",
    ):
        assert redact_text(line) == line


def test_bytes_variant_keeps_invalid_utf8() -> None:
    """Raw trainer output with invalid bytes keeps them while the token goes."""
    raw = b"\xff\xfe hf_A1b2C3d4E5f6G7h8I9j0K1 \x00\n"
    out = redact_bytes(raw)
    assert b"hf_A1b2C3d4E5f6G7h8I9j0K1" not in out
    assert out.startswith(b"\xff\xfe ")
    assert out.endswith(b" \x00\n")


def test_mapping_redacts_secret_keys_and_nested_values() -> None:
    """Event dicts: values under secret-looking keys and secrets inside strings."""
    out = redact_mapping({"hf_token": "x" * 20, "evidence": "HF_TOKEN=abcdefghijk", "n": 3, "nested": {"password": "p"}})
    assert out["hf_token"] == REDACTED
    assert "abcdefghijk" not in out["evidence"]
    assert out["n"] == 3
    assert out["nested"]["password"] == REDACTED


def test_rpc_key_in_the_modal_login_excerpt_is_redacted() -> None:
    """The corpus excerpt 030 carries an RPC URL with an API key: it must not survive."""
    path = CORPUS / "030-modal-execution-reverted.log"
    if not path.exists():
        pytest.skip(f"no failure corpus at {CORPUS}")
    text = path.read_text()
    assert "Zq7KfW2mPb9XrT4nHc8VdJ3sLy6GaE1u" in text
    assert "Zq7KfW2mPb9XrT4nHc8VdJ3sLy6GaE1u" not in redact_text(text)

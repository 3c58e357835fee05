"""Secrets never reach a log: tokens, private keys, key=value secrets, URL credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


POOL = [
    "login with hf_A1b2C3d4E5f6G7h8I9j0K1 now",
    "key 0x" + "ab" * 32 + " loaded",
    'HF_TOKEN=abcdefghijklmnop {"api_key": "s3cr3t-value-123"}',
    "url: 'https://gensyn-testnet.g.alchemy.com/v2/Zq7KfW2mPb9XrT4nHc8VdJ3sLy6GaE1u'",
    "fetch https://user:pa55word@example.org/x and Authorization: Bearer abcdef0123456789abcdef",
    "step 12 loss=0.123 tokens/s=1234.5 lr=3e-4 keyboard monkey",
    "line 7 ..........................................",
    "\u00e9t\u00e9 \udcff bytes",
    "",
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(POOL), max_size=30))
def test_a_read_of_many_lines_is_redacted_as_each_line_on_its_own(lines: list[str]) -> None:
    """Only the lines holding a gate word go through the rules, yet the read comes out
    as if every line had been redacted by itself, the other lines' bytes untouched."""
    raw = "\n".join(lines).encode("utf-8", errors="surrogateescape")
    want = "\n".join(redact_text(line) for line in lines).encode("utf-8", errors="surrogateescape")
    assert redact_bytes(raw) == want


def test_a_value_on_the_line_below_its_key_is_redacted() -> None:
    """A YAML dump puts the value under its key: the line after a key's line goes
    through the rules with it."""
    out = redact_bytes(b"line 1\napi_key:\n  sk-abcdef123456\nline 4\n")
    assert b"sk-abcdef123456" not in out
    assert out.startswith(b"line 1\napi_key:")
    assert out.endswith(b"\nline 4\n")

"""Secret redaction for everything swarmd writes (monitor.log and trainer.log).

Operators paste these logs into public issues (the failure corpus is made of such
pastes, one with a live RPC key in it), so secrets are removed before a byte reaches
disk: Hugging Face tokens, 0x-prefixed 64-hex private keys, values of keys named like
token/secret/password/key, credentials inside URLs and RPC-provider API keys in paths.

A cheap substring prefilter keeps the common case (a line with nothing secret-looking)
to one regex scan, because trainer.log sees up to ~100k lines/s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"

# Every rule below needs one of these (lower-cased) substrings; plain `in` checks on
# the lower-cased text are ~10x cheaper than one case-insensitive regex scan.
_GATES = ("hf_", "0x", "token", "secret", "passw", "key", "bearer", "://")
# trainer.log's gate, on a whole read (~12 KB at 10k lines/s): one scan of the
# lower-cased bytes for all the words is ~2x cheaper than a `in` check per word.
_GATE_B = re.compile(b"|".join(re.escape(g.encode()) for g in _GATES))

# What every match of the key = value rule holds: a scan for it is ~100x cheaper than
# the rule itself, whose `[\w.-]*` is tried at every word of the text.
_KEY_VALUE_HINT = re.compile(r"""(?i)(?:token|secret|passw|key)[\w.-]*["']?\s*[=:]""")

# (pattern, replacement, lower-case words one of which every match holds, a cheaper
# pattern every match also holds): a rule runs only on text that has both, so a line
# with "tokens/s" in it does not pay for the URL, bearer or key = value rules.
_RULES: tuple[tuple[re.Pattern[str], str, tuple[str, ...], re.Pattern[str] | None], ...] = (
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), "hf_" + REDACTED, ("hf_",), None),
    (re.compile(r"\b0x[0-9a-fA-F]{64}\b"), "0x" + REDACTED, ("0x",), None),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{12,}"), r"\1" + REDACTED, ("bearer",), None),
    # scheme://user:password@host -> scheme://<redacted>@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + REDACTED + "@", ("://",), None),
    # RPC providers put the API key in the path: https://x.g.alchemy.com/v2/<key>
    (re.compile(r"(/v[0-9]/)[A-Za-z0-9_-]{16,}"), r"\1" + REDACTED, ("/v",), None),
    # key = value / key: value / "key": "value" for names like token, secret, password, api_key
    (
        re.compile(
            r"""(?ix)
            (\b[\w.-]*(?:token|secret|passw(?:or)?d|api[_-]?key|private[_-]?key|access[_-]?key|auth[_-]?key)[\w.-]*
             ["']?\s*[=:]\s*["']?)
            (?!<redacted>)([^\s"',;}\]]{4,})"""
        ),
        r"\1" + REDACTED,
        ("token", "secret", "passw", "key"),
        _KEY_VALUE_HINT,
    ),
)

_SECRET_KEY_NAME = re.compile(r"(?i)token|secret|passw|api[_-]?key|private[_-]?key|access[_-]?key|credential")


def redact_text(text: str) -> str:
    """Return `text` with anything secret-looking replaced by `<redacted>`."""
    lower = text.lower()
    if not any(g in lower for g in _GATES):
        return text
    for pattern, repl, words, hint in _RULES:
        # No match can exist without them (and no replacement adds any).
        if any(w in lower for w in words) and (hint is None or hint.search(text) is not None):
            text = pattern.sub(repl, text)
    return text


def redact_bytes(data: bytes) -> bytes:
    """Byte-level variant for raw trainer output (a whole read of lines); non-UTF-8
    bytes pass through unchanged.

    Only the lines holding a gate word (each with the line after it, so a value on the
    line below its key, as YAML prints it, stays with its key) go through the rules:
    one line naming a key in a read of hundreds must not cost a regex pass over all."""
    lower = data.lower()
    hit = _GATE_B.search(lower)
    if hit is None:
        return data
    out: list[bytes] = []
    done = 0
    while hit is not None:
        start = max(data.rfind(b"\n", done, hit.start()) + 1, done)
        end = data.find(b"\n", hit.end())
        if end >= 0:
            end = data.find(b"\n", end + 1)
        if end < 0:
            end = len(data)
        piece = data[start:end].decode("utf-8", errors="surrogateescape")
        out += (data[done:start], redact_text(piece).encode("utf-8", errors="surrogateescape"))
        done = end
        hit = _GATE_B.search(lower, end)
    out.append(data[done:])
    return b"".join(out)


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY_NAME.search(name))


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """Redact values under secret-looking keys, and secrets inside any string value."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if is_secret_key(key) and value not in (None, ""):
            out[key] = REDACTED
        elif isinstance(value, str):
            out[key] = redact_text(value)
        elif isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif isinstance(value, list | tuple):
            out[key] = [redact_text(v) if isinstance(v, str) else v for v in value]
        else:
            out[key] = value
    return out

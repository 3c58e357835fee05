"""What a reload would change: a config as flat `section.key -> value` pairs, the
difference between two of them, and the keys that cannot change while swarmd runs.

The flat form crosses the control socket (`swarmd check-config --diff` asks the
running daemon for its config), so it holds JSON values only and never a secret: a
secret-looking env value is replaced by a short digest (a change still shows, the
value does not) and every other string goes through the log redactor.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swarmd.config import Config
from swarmd.redact import redact_text
from swarmd.toml_reader import is_secret_key

# Keys a reload names as kept, with why. Everything else applies: the parts
# reconfigure in place and the trainer restarts with its new settings.
NOT_LIVE: Mapping[str, str] = {
    "state_dir": "the single-instance lock and the trainer's pid file stay where swarmd started; restart swarmd to move them",
    "identity.path": "the host-wide identity lock is claimed once, at start; restart swarmd to claim another identity",
    "identity.lock_dir": "the host-wide identity lock is held where swarmd started; restart swarmd to move it",
}
_SECTION_NAMES = {"control_socket": "control.socket"}


def _value(key: str, value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, tuple) and all(isinstance(v, tuple) and len(v) == 2 for v in value) and value:
        return {k: _env_value(k, v) for k, v in value}  # env-style pairs
    if isinstance(value, tuple):
        return [_value(key, v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _value(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


def _env_value(name: str, value: str) -> str:
    if is_secret_key(name):
        return "<secret sha256:" + hashlib.sha256(value.encode()).hexdigest()[:12] + ">"
    return redact_text(value)


def flatten(config: Config) -> dict[str, Any]:
    """Every setting as `section.key` (TOML names) -> a JSON value."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.name == "source":
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for sub in dataclasses.fields(value):
                flat[f"{f.name}.{sub.name}"] = _value(sub.name, getattr(value, sub.name))
        else:
            flat[_SECTION_NAMES.get(f.name, f.name)] = _value(f.name, value)
    return flat


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys whose value differs (or that exist on one side only), sorted."""
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def render_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per changed key: `key: old -> new`, and why it would be kept if so."""
    lines = []
    for key in changed_keys(old, new):
        line = f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        if key in NOT_LIVE:
            line += f"  (kept until swarmd restarts: {NOT_LIVE[key]})"
        lines.append(line)
    return lines

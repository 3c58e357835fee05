"""The typed TOML reader both config files share (`monitor.toml` in swarmd/config.py,
`trainer.toml` in trainer/config.py): decoding with `file:line` errors, typed getters
that name the key, its line and the fix, and the value grammars (durations, sizes).

One copy of each rule, so both files answer a bad value the same way. Pure except
`read_config_text`; values of secret-looking keys never appear in an error.
"""

from __future__ import annotations

import datetime
import difflib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from swarmd.errors import ConfigError


def read_config_text(path: Path, default_name: str) -> str:
    """A config file's text; every failure is a one-line `ConfigError` naming the file
    (`default_name`: what a directory passed by mistake should have held)."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(name, "file not found", fix=f"create it (the swarmd checkout has a documented {default_name}) or pass the right path") from None
    except IsADirectoryError:
        raise ConfigError(name, "is a directory, not a file", fix=f"pass the file inside it, e.g. {path / default_name}") from None
    except PermissionError:
        raise ConfigError(name, "permission denied", fix="make the file readable by the user swarmd runs as") from None
    except OSError as exc:
        raise ConfigError(name, f"cannot read: {exc.strerror or exc}", fix="check the path and the disk") from None
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + 1
        raise ConfigError(name, "binary data (NUL byte), not a TOML text file", line=line, fix="point to the TOML config, not another file")
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM some editors write
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(name, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})", line=line, fix="save the file as UTF-8") from None
    return text


_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_SIZE_FACTORS = {"": 1, "b": 1}
for _power, _prefix in enumerate("kmgt", 1):
    _SIZE_FACTORS |= {_prefix: 1024**_power, f"{_prefix}b": 1000**_power, f"{_prefix}ib": 1024**_power}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as "90s", "15m", "2h", "1h30m", "250ms".

    Raises `ValueError` (`TypeError` for a non-number, non-string) whose text says
    what is expected; it never echoes the value, which may be secret.
    """
    expected = "expected seconds or a string like '90s', '15m', '2h', '1h30m'"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(expected)
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            seconds = _parse_duration_text(text, expected)
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError("must be a finite number of seconds")
    return seconds


def _parse_duration_text(text: str, expected: str) -> float:
    total, pos = 0.0, 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if match is None:
            raise ValueError(expected)
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        pos = match.end()
    if pos == 0:
        raise ValueError(expected)
    return total


def parse_size(value: object) -> int:
    """Bytes from an integer or a string such as "50MB", "1GiB", "512k".

    KB/MB/GB are decimal (SI), KiB/MiB/GiB and bare K/M/G binary, as logrotate reads
    "100M". Raises `ValueError`/`TypeError` like `parse_duration`.
    """
    expected = "expected bytes or a string like '50MB', '1GiB', '512KiB'"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(expected)
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        factor = _SIZE_FACTORS.get(match.group(2).lower(), 0) if match else 0
        if match is None or not factor:
            raise ValueError(expected)
        amount = float(match.group(1)) * factor
    else:
        amount = float(value)
    if not math.isfinite(amount) or amount != int(amount):
        raise ValueError("must be a whole number of bytes")
    return int(amount)


# ------------------------------------------------------------------------ line finding

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'))*)\s*="""
)
_KEY_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*'""")


def _key_parts(text: str) -> list[str]:
    return [part.strip("\"'") for part in _KEY_PART.findall(text)]


def _index_lines(text: str) -> dict[str, int]:
    """Map "section.key" / "rules[1].pattern" to the 1-based line that defines it.

    A line scanner, not a parser: the text already passed tomllib, so the first line
    that looks like a header or `key =` is the one; multi-line strings are skipped so
    their contents cannot shadow a real key. Lines split on "\\n" as tomllib counts.
    """
    index: dict[str, int] = {}
    prefix = ""
    arrays: dict[str, int] = {}
    in_string: str | None = None
    for number, line in enumerate(text.split("\n"), 1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        header = _HEADER.match(line)
        if header is not None:
            name = ".".join(_key_parts(header.group(2)))
            if header.group(1) == "[[":
                count = arrays.get(name, 0)
                arrays[name] = count + 1
                prefix = f"{name}[{count}]"
            else:
                prefix = name
            index.setdefault(prefix, number)
            continue
        key_line = _KEY_LINE.match(line)
        if key_line is not None:
            key = ".".join(_key_parts(key_line.group(1)))
            index.setdefault(f"{prefix}.{key}" if prefix else key, number)
        for delim in ('"""', "'''"):
            if line.count(delim) % 2 == 1:
                in_string = delim
                break
    return index


_SECRET_KEY = re.compile(r"token|secret|passw|key|credential|auth|cookie", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]))


class Context:
    """The source name and line index shared by every error of one parse."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self._text = text
        self._index: dict[str, int] | None = None

    def line_of(self, key: str) -> int | None:
        if self._index is None:
            self._index = _index_lines(self._text)
        probe = key  # "rules[1].pattern" -> "rules[1]" -> "rules"
        while probe:
            if probe in self._index:
                return self._index[probe]
            if "." in probe:
                probe = probe.rpartition(".")[0]
            elif "[" in probe:
                probe = probe.partition("[")[0]
            else:
                break
        return None

    def error(self, key: str, reason: str, fix: str = "", line: int | None = None) -> ConfigError:
        return ConfigError(self.source, reason, key=key, line=line or self.line_of(key), fix=fix)

    def show(self, key: str, value: object) -> str:
        """A value for an error message, or "<redacted>" when the key looks secret."""
        if is_secret_key(key):
            return "<redacted>"
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."


_TOML_POSITION = re.compile(r"\(at line (\d+), column \d+\)|\(at end of document\)")


def decode_toml(text: str, ctx: Context) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        line: int | None = None
        if match is not None:
            line = int(match.group(1)) if match.group(1) else text.count("\n") + 1
            message = message[: match.start()].rstrip()
        raise ConfigError(ctx.source, f"TOML syntax error: {message}", line=line, fix="see https://toml.io; strings need quotes, tables [like.this]") from None
    except (ValueError, RecursionError) as exc:  # huge integers, absurd nesting
        reason = "nesting too deep" if isinstance(exc, RecursionError) else "a number is too long"
        raise ConfigError(ctx.source, f"TOML syntax error: {reason}", fix="simplify the file") from None


# ------------------------------------------------------------------------ typed reader

_T = TypeVar("_T")


def toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, datetime.datetime):
        return "datetime"
    for kind, name in ((str, "string"), (int, "integer"), (float, "float"), (list, "array"),
                       (dict, "table"), (datetime.date, "date"), (datetime.time, "time")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


class Table:
    """One TOML table with typed getters; each getter names the key in its error."""

    def __init__(self, data: Mapping[str, object], path: str, ctx: Context) -> None:
        self.data = data
        self.prefix = path
        self.ctx = ctx

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, reason: str, fix: str = "") -> ConfigError:
        return self.ctx.error(self.key(name), reason, fix)

    def has(self, name: str) -> bool:
        return name in self.data

    def reject_unknown(self, known: Iterable[str]) -> None:
        """Unknown keys are errors, with the closest known name as the suggested fix."""
        names = sorted(known)
        for name, value in self.data.items():
            if name in names:
                continue
            what = "section" if not self.prefix and isinstance(value, dict | list) else "key"
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
            label = f"[{self.prefix}]" if self.prefix else "the top level"
            if close:
                raise self.error(name, f"unknown {what}, did you mean '{close[0]}'?", f"rename it to '{close[0]}' or remove it")
            raise self.error(name, f"unknown {what} in {label}", f"remove it; known: {', '.join(names)}")

    def _wrong_type(self, name: str, expected: str, value: object) -> ConfigError:
        return self.error(name, f"must be {expected}, got {toml_type(value)}")

    def child(self, name: str, known: Iterable[str]) -> Table:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self._wrong_type(name, f"a table [{self.key(name)}]", value)
        table = Table(value, self.key(name), self.ctx)
        table.reject_unknown(known)
        return table

    def children(self, name: str, known: Iterable[str]) -> list[Table]:
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._wrong_type(name, f"an array of tables [[{self.key(name)}]]", value)
        tables = [Table(v, f"{self.key(name)}[{i}]", self.ctx) for i, v in enumerate(value)]
        for table in tables:
            table.reject_unknown(known)
        return tables

    def _typed(self, name: str, default: _T, kind: type[_T], expected: str) -> _T:
        value = self.data.get(name, default)
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            raise self._wrong_type(name, expected, value)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        return self._typed(name, default, bool, "true or false")

    def string(self, name: str, default: str, *, choices: tuple[str, ...] = (), required: bool = False) -> str:
        if required and name not in self.data:
            raise self.error(name, "is required", f"add {name} = \"...\" to [{self.prefix}]")
        value = self._typed(name, default, str, "a string")
        if "\x00" in value:
            raise self.error(name, "contains a NUL character")
        if choices and value not in choices:
            options = ", ".join(repr(c) for c in choices)
            raise self.error(name, f"must be one of {options}, got {self.ctx.show(self.key(name), value)}")
        return value

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self._typed(name, default, int, "an integer")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise self.error(name, f"must be {bound}, got {value}")
        return value

    def number(self, name: str, default: float, *, low: float) -> float:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._wrong_type(name, "a number", value)
        if not math.isfinite(value) or value < low:
            raise self.error(name, f"must be a finite number >= {low:g}, got {value}")
        return float(value)

    def duration(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.data.get(name, default)
        try:
            seconds = parse_duration(value)
        except (TypeError, ValueError) as exc:
            raise self.error(name, f"invalid duration {self.ctx.show(self.key(name), value)}: {exc}") from None
        if seconds < 0 or (seconds == 0 and not allow_zero):
            least = "0 or more" if allow_zero else "more than 0"
            raise self.error(name, f"must be {least} seconds, got {seconds:g}")
        return seconds

    def size(self, name: str, default: int) -> int:
        value = self.data.get(name, default)
        try:
            size = parse_size(value)
        except (TypeError, ValueError) as exc:
            raise self.error(name, f"invalid size {self.ctx.show(self.key(name), value)}: {exc}") from None
        if size <= 0:
            raise self.error(name, f"must be more than 0 bytes, got {size}")
        return size

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._wrong_type(name, "an array of strings", value)
        if any("\x00" in v for v in value):
            raise self.error(name, "contains a NUL character")
        return tuple(value)

    def string_table(self, name: str) -> tuple[tuple[str, str], ...]:
        """An environment-like table: names without '=' and string values."""
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self._wrong_type(name, "a table of strings", value)
        for var, text in value.items():
            sub = f"{self.key(name)}.{var}"
            if not var or "=" in var or "\x00" in var:
                raise self.ctx.error(sub, "is not a valid environment variable name", "use letters, digits and _")
            if not isinstance(text, str):
                shown = self.ctx.show(sub, text)
                raise self.ctx.error(sub, f"must be a string, got {toml_type(text)} {shown}", f'quote it: {var} = "..."')
            if "\x00" in text:
                raise self.ctx.error(sub, "contains a NUL character")
        return tuple(value.items())

    def path(self, name: str, default: Path, base: Path) -> Path:
        if name not in self.data:
            return default
        text = self.string(name, "")
        if not text:
            raise self.error(name, "must not be empty", "give a path, or remove the key for the default")
        if text.startswith("~"):
            raise self.error(name, "'~' is not expanded", "write the absolute path")
        return base / text

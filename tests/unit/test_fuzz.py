"""Fuzzing the two parsers of untrusted text: the line classifier (whatever a trainer
prints) and the config loader (whatever an operator saves). Neither may raise anything
but, for the config, a `ConfigError` naming the problem."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmd.classify import Classifier, file_verdict
from swarmd.config import load, parse
from swarmd.domain import Signal
from swarmd.errors import ConfigError

_CLASSIFIER = Classifier()

# Pieces of real trainer output, so generated lines get past the gate regex and reach the
# rules (pure noise is rejected by the gate and would test nothing else).
_FRAGMENTS = [
    "P2PDaemonError", "Daemon failed to start in 15.0 seconds", "Joining round: ", "starting at stage: ",
    "Next check in ", "s.", "Killed", "CUDA out of memory", "Traceback (most recent call last):", "[ERROR]",
    "DHTNode bootstrap failed", "100%|", "s/it]", "it/s]", "\r", "\x1b[31m", "\x00", "\ufffd", "🐝", "AA24",
    "already finished round", "ModuleNotFoundError", "hivemind", "  File \"x.py\", line 1", "OOM", "round: 9999999999999999999999",
]
text_lines = st.one_of(
    st.binary(max_size=2000).map(lambda b: b.decode("utf-8", errors="replace")),
    st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=20)), max_size=12).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(line=text_lines)
def test_classifier_never_raises_on_any_line(line: str) -> None:
    """Any decoded byte string or glued fragments of real output: a Signal or None, never an exception."""
    sig = _CLASSIFIER.classify(line)
    assert sig is None or isinstance(sig, Signal)


@settings(max_examples=50, deadline=None)
@given(lines=st.lists(text_lines, max_size=30))
def test_file_verdict_never_raises_on_any_log(lines: list[str]) -> None:
    """A whole random 'log' through the per-file verdict used by `swarmd classify`."""
    verdict, signals = file_verdict(lines, _CLASSIFIER)
    assert (verdict is None) == (not signals)


_TOML_PIECES = [
    "[trainer]\n", "[restart]\n", "[health]\n", "[probes]\n", "[logs]\n", "[web]\n", "[control]\n", "[[rules]]\n",
    'command = ["python", "-m", "trainer"]\n', "command = 1\n", 'command = ""\n', "initial_delay = ", "max_delay = ",
    "stall_after = ", "min_peers = ", "max_bytes = ", "port = ", "jitter = ", "urls = ", "tcp = ", "pattern = ",
    'verdict = "restart"\n', 'name = "x"\n', '"15m"', '"1h30m"', '"-1s"', '"50MiB"', "1e400", "-0", "nan", "inf", "true",
    "[", "]", "{", "}", "=", '"', "'", "\n", "\\", '"(?P<x"', '["/ip4/1.2.3.4/tcp/99999"]', '["http://a b"]', "state_dir = ",
    '"~/x"', '"../.."', "\ufffd", "\x00",
]
toml_text = st.one_of(
    st.binary(max_size=1500).map(lambda b: b.decode("utf-8", errors="replace")),
    st.lists(st.one_of(st.sampled_from(_TOML_PIECES), st.text(max_size=10)), max_size=40).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(text=toml_text)
def test_config_parser_raises_only_config_errors(text: str) -> None:
    """Random bytes or TOML-ish text: a Config or a ConfigError, nothing else."""
    try:
        parse(text, "fuzz.toml", Path("/nonexistent-fuzz-base"))
    except ConfigError as err:
        message = str(err)
    else:
        message = "accepted"
    assert message, "a ConfigError must say what is wrong"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=1500))
def test_config_loader_on_raw_bytes_raises_only_config_errors(data: bytes, tmp_path: Path) -> None:
    """The file loader on raw (often invalid UTF-8) bytes: a Config or a ConfigError."""
    path = tmp_path / "monitor.toml"
    path.write_bytes(data)
    try:
        load(path)
    except ConfigError as err:
        message = str(err)
    else:
        message = "accepted monitor.toml"
    assert "monitor.toml" in message, "the error names the file"

"""`swarmd.config`: defaults, strict validation with file:line errors, units, paths,
secret redaction, the shipped configs, and a fuzz test that only `ConfigError` escapes."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmd.config import (
    DEFAULT_CONFIG_NAME,
    ChainConfig,
    Config,
    HealthConfig,
    IdentityConfig,
    LogsConfig,
    ProbesConfig,
    RestartConfig,
    RuleSpec,
    TrainerConfig,
    WebConfig,
    load,
    parse,
)
from swarmd.errors import ConfigError
from swarmd.toml_reader import parse_duration, parse_size

REPO = Path(__file__).resolve().parents[2]
BASE = Path("/srv/node")
MINIMAL = '[trainer]\ncommand = ["python", "-m", "trainer"]\n'


def parse_at_base(text: str) -> Config:
    return parse(text, "monitor.toml", BASE)


def config_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_at_base(text)
    return info.value


# ------------------------------------------------------------------------ defaults


def test_minimal_config_gets_documented_defaults() -> None:
    """Only [trainer] command is required; every other value is the dataclass default."""
    cfg = parse_at_base(MINIMAL)
    assert cfg.source == "monitor.toml"
    assert cfg.state_dir == BASE / "state"
    assert cfg.trainer == TrainerConfig(command=("python", "-m", "trainer"), cwd=BASE)
    assert cfg.logs == LogsConfig(
        dir=BASE / "logs", trainer_log=BASE / "logs/trainer.log", monitor_log=BASE / "logs/monitor.log"
    )
    assert cfg.restart == RestartConfig()
    assert cfg.health == HealthConfig(heartbeat_file=BASE / "state/trainer.json")
    assert cfg.probes == ProbesConfig()
    assert cfg.web == WebConfig()
    assert cfg.rules == ()
    assert cfg.control_socket == BASE / "state/swarmd.sock"


def test_default_config_name_is_monitor_toml() -> None:
    """The CLI looks for monitor.toml when no --config is given."""
    assert DEFAULT_CONFIG_NAME == "monitor.toml"


def test_base_dir_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without base_dir, relative paths resolve against the current directory."""
    monkeypatch.chdir(tmp_path)
    assert parse(MINIMAL).state_dir == tmp_path / "state"


def test_full_config_values_are_read() -> None:
    """Every section's keys reach the dataclasses, with units converted."""
    cfg = parse_at_base(
        """
state_dir = "/var/lib/swarmd"
[trainer]
command = "bash run_rl_swarm.sh --flag 'two words'"
cwd = "/opt/rl-swarm"
env = { A = "1", HF_HOME = "/cache" }
stdin_lines = ["N", ""]
stop_timeout = "1m"
exit_zero_is_failure = true
fatal_exit_codes = [3]
[logs]
dir = "/var/log/swarmd"
trainer_log = "/elsewhere/t.log"
max_bytes = "1GiB"
keep = 0
compress = false
follow = ["logs/swarm_launcher.log"]
console = false
[restart]
initial_delay = 0
max_delay = "1h30m"
multiplier = 1.5
jitter = 0
on_fatal = "wait"
crash_loop_max = 3
oom_fallback_env = { BATCH = "1" }
[health]
stall_after = "2h"
min_peers = 2
ready_on = "start"
[probes]
urls = ["https://gensyn-testnet.g.alchemy.com/public"]
tcp = ["/ip4/38.101.215.12/tcp/30011/p2p/QmQ2", "example.org:443", "[::1]:8080"]
dns = ["huggingface.co"]
interval = "1m"
timeout = "10s"
require_network = false
[web]
enabled = true
bind = "192.0.2.10"
allow_remote = true
port = 0
[control]
socket = "/run/swarmd.sock"
[[rules]]
name = "a"
pattern = 'x\\d+'
verdict = "reconnect_dht"
[[rules]]
name = "b"
pattern = "y"
verdict = "healthy_idle"
kind = "idle"
enabled = false
"""
    )
    assert cfg.trainer.command == ("bash", "run_rl_swarm.sh", "--flag", "two words")
    assert cfg.trainer.env == (("A", "1"), ("HF_HOME", "/cache"))
    assert cfg.trainer.stdin_lines == ("N", "")
    assert (cfg.trainer.stop_timeout, cfg.trainer.fatal_exit_codes) == (60.0, (3,))
    assert cfg.logs.trainer_log == Path("/elsewhere/t.log")
    assert cfg.logs.monitor_log == Path("/var/log/swarmd/monitor.log")
    assert (cfg.logs.max_bytes, cfg.logs.keep, cfg.logs.compress, cfg.logs.console) == (2**30, 0, False, False)
    assert cfg.logs.follow == (Path("/opt/rl-swarm/logs/swarm_launcher.log"),)
    assert cfg.restart.max_delay == 5400.0
    assert cfg.restart.oom_fallback_env == (("BATCH", "1"),)
    assert cfg.health.heartbeat_file == Path("/var/lib/swarmd/trainer.json")
    assert (cfg.health.stall_after, cfg.health.min_peers, cfg.health.ready_on) == (7200.0, 2, "start")
    assert cfg.probes.tcp[2] == "[::1]:8080"
    assert cfg.web == WebConfig(enabled=True, bind="192.0.2.10", port=0, allow_remote=True)
    assert cfg.control_socket == Path("/run/swarmd.sock")
    assert cfg.rules == (
        RuleSpec(name="a", pattern=r"x\d+", verdict="reconnect_dht"),
        RuleSpec(name="b", pattern="y", verdict="healthy_idle", kind="idle", enabled=False),
    )


# ------------------------------------------------------------------------ paths


def test_relative_paths_resolve_against_base_dir() -> None:
    """state_dir, cwd, logs.dir, heartbeat and socket are anchored at the config's directory."""
    cfg = parse_at_base(
        MINIMAL.replace("[trainer]", 'state_dir = "run/st"\n[trainer]\ncwd = "../node"')
        + '[logs]\ndir = "var/log"\n[health]\nheartbeat_file = "hb.json"\n[control]\nsocket = "s.sock"\n'
    )
    assert cfg.state_dir == BASE / "run/st"
    assert cfg.trainer.cwd == BASE / "../node"
    assert cfg.logs.dir == BASE / "var/log"
    assert cfg.logs.trainer_log == BASE / "var/log/trainer.log"
    assert cfg.health.heartbeat_file == BASE / "hb.json"
    assert cfg.control_socket == BASE / "s.sock"


def test_defaults_follow_a_moved_state_dir() -> None:
    """The heartbeat file and control socket default to inside the configured state_dir."""
    cfg = parse_at_base('state_dir = "/var/lib/x"\n' + MINIMAL)
    assert cfg.health.heartbeat_file == Path("/var/lib/x/trainer.json")
    assert cfg.control_socket == Path("/var/lib/x/swarmd.sock")


def test_follow_paths_resolve_against_trainer_cwd() -> None:
    """Followed files are the trainer's own logs, so they are relative to where it runs."""
    cfg = parse_at_base(MINIMAL + 'cwd = "rl"\n[logs]\nfollow = ["logs/yarn.log", "/abs.log"]\n')
    assert cfg.logs.follow == (BASE / "rl/logs/yarn.log", Path("/abs.log"))


def test_load_resolves_relative_to_the_file(tmp_path: Path) -> None:
    """load() anchors relative paths at the file's directory, not at the cwd."""
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "m.toml").write_text(MINIMAL, encoding="utf-8")
    cfg = load(sub / "m.toml")
    assert cfg.state_dir == sub / "state"
    assert cfg.source == str(sub / "m.toml")


# ------------------------------------------------------------------------ units


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (0.5, 0.5),
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("250ms", 0.25),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        ("45", 45.0),
        ("2H", 7200.0),
    ],
)
def test_duration_table(value: object, seconds: float) -> None:
    """Durations accept seconds or unit strings, summed across parts."""
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["15 minutes", "m", "", "1x", "-5s", True, [1], "nan", float("inf")])
def test_invalid_duration_raises_value_or_type_error(value: object) -> None:
    """Anything else is rejected with an explanation instead of a guess."""
    with pytest.raises((ValueError, TypeError)):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (1024, 1024),
        ("50MB", 50_000_000),
        ("50MiB", 50 * 2**20),
        ("50M", 50 * 2**20),
        ("1GiB", 2**30),
        ("1GB", 10**9),
        ("512k", 512 * 1024),
        ("1.5KiB", 1536),
        ("100B", 100),
        ("7", 7),
    ],
)
def test_size_table(value: object, size: int) -> None:
    """Sizes: SI for KB/MB/GB, binary for KiB/MiB/GiB and bare K/M/G."""
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["50 megabytes", "1.3B", "MB", "10xb", False, 1.5, "1e9"])
def test_invalid_size_raises_value_or_type_error(value: object) -> None:
    """Unknown units and fractional bytes are rejected."""
    with pytest.raises((ValueError, TypeError)):
        parse_size(value)


# ------------------------------------------------------------------------ errors


def test_unknown_key_error_names_file_line_key_and_suggestion() -> None:
    """A typo'd key is an error pointing at its line, with the closest known key."""
    err = config_error(MINIMAL + "[health]\nmin_peers = 1\nstal_after = 60\n")
    assert str(err) == (
        "monitor.toml:5: [health.stal_after] unknown key, did you mean 'stall_after'?;"
        " fix: rename it to 'stall_after' or remove it"
    )
    assert (err.path, err.line, err.key) == ("monitor.toml", 5, "health.stal_after")


def test_unknown_section_error_suggests_the_section() -> None:
    """A misspelt section header is reported at the header line."""
    err = config_error(MINIMAL + "\n[helth]\nstall_after = 60\n")
    assert str(err) == (
        "monitor.toml:4: [helth] unknown section, did you mean 'health'?; fix: rename it to 'health' or remove it"
    )


def test_missing_trainer_command_error() -> None:
    """A config without a command cannot supervise anything."""
    assert str(config_error("[web]\nenabled = true\n")) == (
        "monitor.toml: [trainer.command] is required: the trainer command to supervise;"
        ' fix: add to [trainer]: e.g. command = ["python", "-m", "trainer"]'
    )


def test_max_delay_below_initial_delay_error() -> None:
    """The back-off cap must not be below its start."""
    err = config_error(MINIMAL + '[restart]\ninitial_delay = "10m"\nmax_delay = "1m"\n')
    assert str(err) == (
        "monitor.toml:5: [restart.max_delay] max_delay (60s) is less than initial_delay (600s);"
        " fix: make max_delay at least initial_delay"
    )


def test_non_loopback_bind_error() -> None:
    """The status page stays on loopback unless remote access is explicit."""
    err = config_error(MINIMAL + '[web]\nenabled = true\nbind = "0.0.0.0"\n')
    assert err.line == 5
    assert err.key == "web.bind"
    assert "allow_remote = true" in err.fix


@pytest.mark.parametrize(
    ("snippet", "key", "line", "reason"),
    [
        ('[trainer]\ncommand = []\n', "trainer.command", 2, "is empty"),
        ('[trainer]\ncommand = "  "\n', "trainer.command", 2, "is empty"),
        ('[trainer]\ncommand = "python \'x"\n', "trainer.command", 2, "cannot split the command string"),
        ('[trainer]\ncommand = ["a", 1]\n', "trainer.command", 2, "must be an array of strings, got array"),
        ("[trainer]\ncommand = 5\n", "trainer.command", 2, "must be an array of strings, got integer"),
        ("trainer = 1\n", "trainer", 1, "must be a table [trainer], got integer"),
        (MINIMAL + "stop_timeout = 0\n", "trainer.stop_timeout", 3, "must be more than 0 seconds, got 0"),
        (MINIMAL + 'stop_timeout = "-5s"\n', "trainer.stop_timeout", 3, "invalid duration '-5s'"),
        (MINIMAL + "stop_timeout = -5\n", "trainer.stop_timeout", 3, "must be more than 0 seconds, got -5"),
        (MINIMAL + "stop_timeout = nan\n", "trainer.stop_timeout", 3, "must be a finite number of seconds"),
        (MINIMAL + "exit_zero_is_failure = 1\n", "trainer.exit_zero_is_failure", 3, "must be true or false, got integer"),
        (MINIMAL + "fatal_exit_codes = [300]\n", "trainer.fatal_exit_codes", 3, "between 0 and 255"),
        (MINIMAL + "fatal_exit_codes = [true]\n", "trainer.fatal_exit_codes", 3, "must be an array of integers"),
        (MINIMAL + 'stdin_lines = ["a\\nb"]\n', "trainer.stdin_lines", 3, "contains a newline"),
        (MINIMAL + 'env = { "A=B" = "x" }\n', "trainer.env.A=B", 3, "not a valid environment variable name"),
        (MINIMAL + '[logs]\ndir = ""\n', "logs.dir", 4, "must not be empty"),
        (MINIMAL + '[logs]\ndir = "~/logs"\n', "logs.dir", 4, "'~' is not expanded"),
        (MINIMAL + "[logs]\nmax_bytes = 0\n", "logs.max_bytes", 4, "must be more than 0 bytes"),
        (MINIMAL + '[logs]\nmax_bytes = "lots"\n', "logs.max_bytes", 4, "invalid size 'lots'"),
        (MINIMAL + "[logs]\nkeep = -1\n", "logs.keep", 4, "must be >= 0, got -1"),
        (MINIMAL + '[restart]\non_fatal = "stop"\n', "restart.on_fatal", 4, "must be one of 'exit', 'wait', got 'stop'"),
        (MINIMAL + "[restart]\nmultiplier = 0.5\n", "restart.multiplier", 4, "must be a finite number >= 1"),
        (MINIMAL + "[restart]\ncrash_loop_max = 0\n", "restart.crash_loop_max", 4, "must be >= 1"),
        (MINIMAL + '[restart]\ninitial_delay = "20m"\n', "restart.initial_delay", 4, "less than initial_delay"),
        (MINIMAL + '[health]\nready_on = "ready"\n', "health.ready_on", 4, "must be one of 'progress', 'start'"),
        (MINIMAL + "[health]\nmin_peers = -1\n", "health.min_peers", 4, "must be >= 0"),
        (MINIMAL + "[health]\nstall_after = 1979-05-27\n", "health.stall_after", 4, "invalid duration"),
        (MINIMAL + '[probes]\nurls = ["https://a", "ftp://x"]\n', "probes.urls", 4, "entry 2 is not an http(s) URL"),
        (MINIMAL + '[probes]\ntcp = ["host"]\n', "probes.tcp", 4, "is not host:port"),
        (MINIMAL + '[probes]\ntcp = ["h:70000"]\n', "probes.tcp", 4, "is not host:port"),
        (MINIMAL + '[probes]\ndns = ["no spaces"]\n', "probes.dns", 4, "is not a host name"),
        (MINIMAL + '[probes]\ninterval = "5s"\ntimeout = "10s"\n', "probes.timeout", 5, "longer than interval"),
        (MINIMAL + '[web]\nbind = "example.org"\n', "web.bind", 4, "is not a loopback address"),
        (MINIMAL + "[web]\nport = 70000\n", "web.port", 4, "between 0 and 65535"),
        (MINIMAL + '[control]\nsocket = "/' + "s" * 120 + '"\n', "control.socket", 4, "longer than 107 bytes"),
        (MINIMAL + "[[rules]]\nname = 'r'\nverdict = 'restart'\n", "rules[0].pattern", 3, "is required"),
        (MINIMAL + "[[rules]]\nname = 'r'\nexception = 'No Module'\nverdict = 'restart'\n", "rules[0].exception", 5, "is not an exception class name"),
        (MINIMAL + "[[rules]]\nname = 'r'\npattern = '('\nverdict = 'restart'\n", "rules[0].pattern", 5, "invalid regular expression"),
        (MINIMAL + "[[rules]]\nname = 'r'\npattern = 'x'\nverdict = 'restrat'\n", "rules[0].verdict", 6, "unknown verdict 'restrat'"),
        (MINIMAL + "[[rules]]\nname = ''\npattern = 'x'\nverdict = 'restart'\n", "rules[0].name", 4, "must not be empty"),
        (MINIMAL + "[[rules]]\nname = 'r'\npattern = 'x'\nverdict = 'restart'\nprio = 1\n", "rules[0].prio", 7, "unknown key in [rules[0]]"),
        ("rules = 'x'\n" + MINIMAL, "rules", 1, "must be an array of tables [[rules]]"),
        ('state_dir = 3\n' + MINIMAL, "state_dir", 1, "must be a string, got integer"),
    ],
)
def test_invalid_value_error_names_key_line_and_reason(snippet: str, key: str, line: int, reason: str) -> None:
    """Each invalid value is one ConfigError naming the key, its line and why."""
    err = config_error(snippet)
    assert (err.key, err.line) == (key, line), str(err)
    assert reason in err.reason, str(err)
    assert "\n" not in str(err)
    assert str(err).startswith(f"monitor.toml:{line}: [{key}] ")


def test_error_in_second_rule_points_at_its_own_line() -> None:
    """Keys inside the n-th [[rules]] table are located in that table, not the first."""
    rule = "[[rules]]\nname = '{n}'\npattern = 'x'\nverdict = '{v}'\n"
    text = MINIMAL + rule.format(n="a", v="restart") + rule.format(n="b", v="nope")
    err = config_error(text)
    assert (err.key, err.line) == ("rules[1].verdict", 10)


def test_duplicate_rule_names_are_rejected() -> None:
    """Two user rules with one name would make replacement ambiguous."""
    rule = "[[rules]]\nname = 'a'\npattern = 'x'\nverdict = 'restart'\n"
    err = config_error(MINIMAL + rule + rule)
    assert (err.key, err.line, err.reason) == ("rules[1].name", 8, "duplicate rule name 'a'")


def test_bad_verdict_fix_lists_valid_verdicts() -> None:
    """The fix for a bad verdict suggests the near miss and lists every valid value."""
    err = config_error(MINIMAL + "[[rules]]\nname = 'r'\npattern = 'x'\nverdict = 'restrat'\n")
    assert err.fix.startswith("did you mean 'restart'? one of: healthy_progress, ")
    assert "give_up_fatal" in err.fix


def test_key_in_multiline_string_does_not_shadow_the_real_key() -> None:
    """Text inside a multi-line string that looks like `key =` is not taken as the key."""
    text = MINIMAL + 'cwd = """\nstop_timeout = 1\n"""\nstop_timeout = -1\n'
    err = config_error(text)
    assert (err.key, err.line) == ("trainer.stop_timeout", 6)


def test_toml_syntax_error_reports_its_line() -> None:
    """tomllib's position becomes the error's line; the text is one line."""
    err = config_error(MINIMAL + "[web]\nenabled = yes\n")
    assert err.line == 4
    assert str(err).startswith("monitor.toml:4: TOML syntax error: Invalid value")


def test_toml_error_at_end_of_document_reports_last_line() -> None:
    """An unterminated value is reported at the last line rather than without a line."""
    err = config_error(MINIMAL + 'cwd = "unterminated\n')
    assert err.line == 3


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 5000,
        "a = " + "1" * 5000,
    ],
)
def test_pathological_toml_is_a_config_error(text: str) -> None:
    """Deep nesting and giant integers end in ConfigError, not RecursionError/ValueError."""
    config_error(text)


# ------------------------------------------------------------------------ secrets


def test_secret_env_value_is_redacted_in_errors() -> None:
    """A token given with the wrong type is not echoed into the error line."""
    err = config_error(MINIMAL + "env = { HF_TOKEN = 12345678 }\n")
    assert "12345678" not in str(err)
    assert "<redacted>" in str(err)
    assert err.key == "trainer.env.HF_TOKEN"


def test_unknown_secret_key_value_never_appears() -> None:
    """An unknown key holding a secret is reported by name only."""
    err = config_error(MINIMAL + 'hf_token = "hf_SECRETVALUE"\n')
    assert "hf_SECRETVALUE" not in str(err)
    assert err.key == "trainer.hf_token"


def test_invalid_url_is_not_echoed() -> None:
    """A malformed probe URL may carry an API key in its path, so it is not repeated."""
    err = config_error(MINIMAL + '[probes]\nurls = ["htps://rpc.example/v2/KEY123"]\n')
    assert "KEY123" not in str(err)


def test_plain_values_are_shown_in_errors() -> None:
    """Non-secret values are echoed, so the operator sees what was wrong."""
    assert "'15 minutes'" in str(config_error(MINIMAL + '[health]\nstall_after = "15 minutes"\n'))


# ------------------------------------------------------------------------ load()


def test_missing_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    """A missing file names itself and the fix."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "nope.toml")
    assert str(info.value).startswith(f"{tmp_path / 'nope.toml'}: file not found; fix: ")


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    """Passing a directory says so instead of raising IsADirectoryError."""
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path)


def test_binary_garbage_file_is_a_config_error(tmp_path: Path) -> None:
    """A binary file gives a one-line error, not a traceback."""
    path = tmp_path / "garbage.toml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert "binary data" in info.value.reason
    assert "\n" not in str(info.value)


def test_non_utf8_file_reports_line_of_bad_byte(tmp_path: Path) -> None:
    """Latin-1 bytes are reported as not UTF-8, with their line."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL.encode() + b'cwd = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert (info.value.line, info.value.reason) == (3, "not valid UTF-8 (byte 0xe9 at offset 58)")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    """A BOM written by some editors does not make the file unreadable."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load(path).trainer.command[0] == "python"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read a mode-000 file")
def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """Permission denied is a config error with a fix."""
    path = tmp_path / "secret.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    path.chmod(0)
    with pytest.raises(ConfigError, match="permission denied"):
        load(path)


# ------------------------------------------------------------------------ shipped files


def test_repo_monitor_toml_parses_to_the_demo() -> None:
    """The demo config runs the local trainer with the web page on loopback:9464."""
    cfg = load(REPO / "monitor.toml")
    assert cfg.trainer.command == (".venv/bin/python", "-m", "trainer", "--config", "trainer.toml")
    assert cfg.trainer.cwd == REPO
    assert (cfg.web.enabled, cfg.web.bind, cfg.web.port) == (True, "127.0.0.1", 9464)
    assert cfg.health.min_peers == 0


def test_repo_monitor_toml_documents_every_key() -> None:
    """monitor.toml is the operator's reference, so it sets every known key explicitly."""
    data = tomllib.loads((REPO / "monitor.toml").read_text(encoding="utf-8"))
    sections = {
        "trainer": TrainerConfig, "logs": LogsConfig, "restart": RestartConfig,
        "health": HealthConfig, "probes": ProbesConfig, "web": WebConfig,
        "identity": IdentityConfig, "chain": ChainConfig,
    }
    for name, cls in sections.items():
        missing = {f.name for f in dataclasses.fields(cls)} - set(data[name])
        assert not missing, f"[{name}] lacks {sorted(missing)}"
    assert set(data["rules"][0]) == {f.name for f in dataclasses.fields(RuleSpec)}
    assert "state_dir" in data
    assert "socket" in data["control"]


def test_upstream_example_parses_with_upstream_quirks() -> None:
    """The upstream example treats exit 0 as failure and tolerates 900 s silences."""
    cfg = load(REPO / "examples/upstream-rl-swarm.toml")
    assert cfg.trainer.command == ("bash", "run_rl_swarm.sh")
    assert cfg.trainer.exit_zero_is_failure is True
    assert cfg.health.stall_after > 900 * 2
    assert cfg.health.reconnect_attempts == 0
    assert cfg.health.reconnect == "restart"  # upstream has no SIGUSR1 handler
    assert cfg.chain.rpc_url.startswith("https://")
    assert not any("TOKEN" in name for name, _ in cfg.trainer.env)
    assert Path("/home/gensyn/rl-swarm/logs/swarm_launcher.log") in cfg.logs.follow


# ------------------------------------------------------------------------ fuzz


def parse_or_error(text: str) -> Config | ConfigError:
    """parse(), with ConfigError returned; any other exception propagates and fails."""
    try:
        return parse(text, "fuzz.toml", BASE)
    except ConfigError as err:
        return err


_KNOWN_KEYS = sorted(
    {f"{section}.{f.name}" for section, cls in [
        ("trainer", TrainerConfig), ("logs", LogsConfig), ("restart", RestartConfig),
        ("health", HealthConfig), ("probes", ProbesConfig), ("web", WebConfig),
    ] for f in dataclasses.fields(cls)}
)
_TOML_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True).map(repr),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(['"15m"', '"1h30m"', '"50MB"', "[]", '["a"]', "[1, 2]", "{}", '{ A = "b" }', "1979-05-27", '"0.0.0.0"']),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_raises_only_config_error(text: str) -> None:
    """Whatever text is given, parse() returns a Config or raises ConfigError."""
    result = parse_or_error(text)
    assert isinstance(result, Config) or "\n" not in str(result)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_config_error(data: bytes) -> None:
    """Decoded binary garbage is handled like any other bad text."""
    result = parse_or_error(data.decode("latin-1"))
    assert isinstance(result, Config | ConfigError)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_KNOWN_KEYS), _TOML_VALUES), max_size=8, unique_by=lambda kv: kv[0]))
def test_random_known_keys_raise_only_config_error(pairs: list[tuple[str, str]]) -> None:
    """Known keys with values of random types and ranges never escape as other errors."""
    by_section: dict[str, list[str]] = {}
    for key, value in pairs:
        section, name = key.split(".")
        by_section.setdefault(section, []).append(f"{name} = {value}")
    text = "\n".join(f"[{s}]\n" + "\n".join(lines) for s, lines in by_section.items())
    result = parse_or_error(text)
    assert isinstance(result, Config) or result.key or result.line is not None, str(result)


def test_min_interval_above_max_delay_is_rejected() -> None:
    """The cap and the minimum start interval cannot both hold when min_interval > max_delay."""
    with pytest.raises(ConfigError) as err:
        parse('[trainer]\ncommand = ["x"]\n[restart]\ninitial_delay = 1\nmax_delay = 2\nmin_interval = 5\n', "m.toml", Path("/"))
    assert str(err.value).startswith("m.toml:6: [restart.min_interval] min_interval (5s) is more than max_delay (2s)")


def test_rule_may_name_a_final_exception_instead_of_a_pattern(tmp_path: Path) -> None:
    """`exception = "ModuleNotFoundError"` is a rule on its own (no pattern needed)."""
    path = tmp_path / "monitor.toml"
    path.write_text(MINIMAL + "[[rules]]\nname = 'no-hydra'\nexception = 'ModuleNotFoundError'\nverdict = 'give_up_fatal'\n")
    cfg = load(path)
    assert cfg.rules == (RuleSpec(name="no-hydra", pattern="", verdict="give_up_fatal", exception="ModuleNotFoundError"),)


# ------------------------------------------------------------- reconnect, identity, chain


def test_reconnect_mode_defaults_to_signal_and_knows_restart() -> None:
    assert parse(MINIMAL, "m.toml", BASE).health.reconnect == "signal"
    assert parse(MINIMAL + '[health]\nreconnect = "restart"\n', "m.toml", BASE).health.reconnect == "restart"
    err = config_error(MINIMAL + '[health]\nreconnect = "sigusr1"\n')
    assert err.key == "health.reconnect"
    assert "must be one of 'signal', 'restart'" in str(err)


def test_identity_path_is_the_nodes_relative_to_trainer_cwd() -> None:
    text = MINIMAL.replace("[trainer]\n", '[trainer]\ncwd = "/opt/other"\n') + '[identity]\npath = "keys/swarm.pem"\n'
    cfg = parse(text, "m.toml", BASE)
    assert cfg.identity == IdentityConfig(path=Path("/opt/other/keys/swarm.pem"), lock_dir=None)
    assert parse(MINIMAL, "m.toml", BASE).identity == IdentityConfig()


def test_chain_settings_parse_and_default_to_no_probe() -> None:
    assert parse(MINIMAL, "m.toml", BASE).chain == ChainConfig()
    text = MINIMAL + '[chain]\nrpc_url = "http://127.0.0.1:8545"\ncontract = "0x' + "ab" * 20 + '"\ninterval = "15s"\nround_length = "2m"\n'
    chain = parse(text, "m.toml", BASE).chain
    assert (chain.rpc_url, chain.interval, chain.round_length, chain.stall_rounds) == ("http://127.0.0.1:8545", 15.0, 120.0, 3.0)


def test_a_bad_rpc_url_is_refused_without_echoing_it() -> None:
    err = config_error(MINIMAL + '[chain]\nrpc_url = "ftp://u:SeCrEt@rpc/v2/KEY"\n')
    assert err.key == "chain.rpc_url"
    assert "SeCrEt" not in str(err)
    assert "KEY" not in str(err)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[chain]\ncontract = "0x123"\n', "chain.contract", "not a 0x-prefixed 20-byte address"),
        ('[chain]\ninterval = "5s"\ntimeout = "10s"\n', "chain.timeout", "longer than interval"),
        ("[chain]\nstall_rounds = 0.5\n", "chain.stall_rounds", "must be a finite number >= 1"),
    ],
)
def test_bad_chain_settings_name_the_key(text: str, key: str, reason: str) -> None:
    err = config_error(MINIMAL + text)
    assert err.key == key
    assert reason in str(err)

"""`trainer.toml` -> typed, validated, frozen node settings (same style as swarmd's).

`parse(text, source, base_dir, overrides)` is pure; `load(path, overrides)` adds the
file read. Every error is a `swarmd.errors.ConfigError` naming `file:key`, the reason and
the fix, on one line. Relative paths resolve against the file's directory, so the node
behaves the same under swarmd (cwd anywhere) as from a shell in the checkout.

All keys live in one flat table so `--override key=value` needs no dotted paths. The
Hugging Face token is deliberately NOT a key: it is read from HF_TOKEN or
HUGGINGFACE_ACCESS_TOKEN in the environment, so it never sits in a file that gets
copied into bug reports (a `hf_token` key is rejected with that advice).

The TOML reading and the typed getters are swarmd's (`swarmd.toml_reader`): both config
files answer a bad value with the same `file:line` error. Imports only the standard
library, swarmd.errors and swarmd.toml_reader: `python -m trainer --help` and a
config error come back in milliseconds, without torch.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from swarmd.errors import ConfigError
from swarmd.toml_reader import Context, Table, decode_toml, read_config_text

DEVICES = ("cpu", "cuda", "mps", "auto")
DTYPES = ("fp32", "bf16", "fp16")
COMPAT_LANES = ("", "genrl-0.3")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    # identity and files
    identity_path: Path
    state_dir: Path
    checkpoint_dir: Path
    heartbeat_path: Path
    # model / training (passed to trainer.train.TrainSettings)
    model: str = "tiny"
    device: str = "cpu"
    dtype: str = "fp32"
    families: tuple[str, ...] = ("local_arith",)
    gsm8k_path: Path | None = None
    num_generations: int = 4
    max_new_tokens: int = 32
    prompts_per_round: int = 4
    learning_rate: float = 5e-4
    max_grad_norm: float = 1.0
    beta: float = 0.0
    seed: int = 0
    checkpoint_keep: int = 3
    checkpoint_every: int = 1  # rounds between checkpoints (also saved on SIGTERM)
    hf_push_repo: str | None = None
    hf_push_every: int = 0
    hf_token: str | None = field(default=None, repr=False)  # from the environment only
    # network
    host_maddrs: tuple[str, ...] = ("/ip4/127.0.0.1/tcp/0",)
    announce_maddrs: tuple[str, ...] = ()
    initial_peers: tuple[str, ...] = ()
    initial_peers_file: Path | None = None
    namespace: str = "swarmd-demo"
    dht_startup_timeout: float = 30.0
    dht_start_attempts: int = 5
    reconnect_after_no_peers: float = 60.0  # s with 0 visible peers -> reconnect; 0 = never
    # rounds and exchange
    round_seconds: float = 30.0
    stages: int = 1
    max_rounds: int = 0  # rounds to train before exiting 0; 0 = forever
    max_external: int = 8  # K: peers' rollouts trained on per round
    rollout_ttl: float = 600.0
    max_record_bytes: int = 256 * 1024
    gather_timeout: float = 10.0
    local_swarm_peers: int = 0  # extra helper peers this process spawns (local demo)
    # "" (our own signed format) or "genrl-0.3": share rounds with unmodified gensyn-genrl
    # 0.3.0 nodes in their format (trainer.genrl_compat): unsigned, bare round keys.
    compat: str = ""
    # chain (empty chain_rpc_url: the off-chain DHT clock)
    chain_rpc_url: str = ""
    chain_contract: str = ""
    chain_id: int = 685685
    chain_key_path: Path | None = None  # default <state_dir>/chain.key, created on first start
    chain_rpc_timeout: float = 10.0
    chain_poll_seconds: float = 1.0
    chain_queue_max: int = 10_000


_PATHS = {"identity_path", "state_dir", "checkpoint_dir", "heartbeat_path", "gsm8k_path", "initial_peers_file",
          "chain_key_path"}
_LISTS = {"families", "host_maddrs", "announce_maddrs", "initial_peers"}
_OPTIONAL = {"gsm8k_path", "initial_peers_file", "hf_push_repo", "chain_key_path"}
_SECRET_KEYS = {"hf_token", "huggingface_access_token", "token"}


def load(path: Path, overrides: tuple[str, ...] = (), env: dict[str, str] | None = None) -> NodeConfig:
    return parse(read_config_text(path, "trainer.toml"), str(path), path.resolve().parent, overrides, env)


def parse(
    text: str,
    source: str,
    base_dir: Path,
    overrides: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> NodeConfig:
    ctx = Context(source, text)
    raw = decode_toml(text, ctx)
    for item in overrides:
        key, value = _override(item, source)
        raw[key] = value
    env = dict(os.environ) if env is None else env
    return _build(Table(raw, "", ctx), source, base_dir, env)


def _override(item: str, source: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(source, f"bad --override {item!r}", key=key, fix="use --override key=value")
    try:
        return key, tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value  # a bare word: take it as a string


def _build(t: Table, source: str, base_dir: Path, env: dict[str, str]) -> NodeConfig:
    known = {f.name: f for f in fields(NodeConfig)}
    for key in t.data:
        if key.lower() in _SECRET_KEYS:
            raise t.error(key, "tokens do not belong in the config file", "remove it and export HF_TOKEN in the environment")
    t.reject_unknown(known)
    values = {key: _typed(t, key, known[key].type, base_dir) for key in t.data}
    state_dir = values.setdefault("state_dir", base_dir / "state")
    values.setdefault("identity_path", state_dir / "swarm.pem")
    values.setdefault("checkpoint_dir", state_dir / "checkpoints")
    values.setdefault("heartbeat_path", state_dir / "trainer.json")
    if values.get("chain_key_path") is None:
        values["chain_key_path"] = state_dir / "chain.key"
    values["hf_token"] = env.get("HF_TOKEN") or env.get("HUGGINGFACE_ACCESS_TOKEN") or None
    cfg = NodeConfig(**values)
    _validate(cfg, source)
    return cfg


def _typed(t: Table, key: str, annotation: object, base_dir: Path) -> Any:
    """One key through the shared typed getters; ranges are `_validate`'s."""
    text = str(annotation)
    if key in _OPTIONAL and t.data[key] in ("", None):
        return None
    if key in _PATHS:
        return t.path(key, base_dir, base_dir)
    if key in _LISTS:
        return t.strings(key)
    if text.startswith("int"):
        return t.integer(key, 0, low=-(2**63))
    if text.startswith("float"):
        return t.number(key, 0.0, low=float("-inf"))
    return t.string(key, "")


def _validate(cfg: NodeConfig, source: str) -> None:
    def bad(key: str, reason: str, fix: str) -> ConfigError:
        return ConfigError(source, reason, key=key, fix=fix)

    if cfg.device not in DEVICES:
        raise bad("device", f"unknown device {cfg.device!r}", f"one of {', '.join(DEVICES)}")
    if cfg.dtype not in DTYPES:
        raise bad("dtype", f"unknown dtype {cfg.dtype!r}", f"one of {', '.join(DTYPES)}")
    for key in ("num_generations", "max_new_tokens", "prompts_per_round", "checkpoint_keep",
                "checkpoint_every", "stages", "dht_start_attempts", "max_record_bytes"):
        if getattr(cfg, key) < 1:
            raise bad(key, "must be at least 1", f"{key} = 1")
    for key in ("max_rounds", "max_external", "hf_push_every", "local_swarm_peers", "seed"):
        if getattr(cfg, key) < 0:
            raise bad(key, "must not be negative", f"{key} = 0")
    for key in ("round_seconds", "rollout_ttl", "dht_startup_timeout", "learning_rate"):
        if getattr(cfg, key) <= 0:
            raise bad(key, "must be positive", f"{key} = 1.0")
    for key in ("gather_timeout", "reconnect_after_no_peers", "beta", "max_grad_norm"):
        if getattr(cfg, key) < 0:
            raise bad(key, "must not be negative", f"{key} = 0")
    if cfg.gather_timeout >= cfg.round_seconds:
        raise bad("gather_timeout", "must be shorter than round_seconds (else every round is missed)",
                  f"gather_timeout = {cfg.round_seconds / 3:g}")
    if not cfg.host_maddrs:
        raise bad("host_maddrs", "needs at least one address", 'host_maddrs = ["/ip4/127.0.0.1/tcp/0"]')
    for key in ("host_maddrs", "announce_maddrs", "initial_peers"):
        for addr in getattr(cfg, key):
            if not addr.startswith("/"):
                raise bad(key, f"{addr!r} is not a multiaddr", f'{key} = ["/ip4/1.2.3.4/tcp/31337/p2p/Qm..."]')
    if not cfg.namespace or ":" in cfg.namespace:
        raise bad("namespace", "must be non-empty and contain no ':'", 'namespace = "my-swarm"')
    if cfg.compat not in COMPAT_LANES:
        raise bad("compat", f"unknown compatibility lane {cfg.compat!r}", 'compat = "genrl-0.3" (or remove the key)')
    if not cfg.families:
        raise bad("families", "needs at least one task family", 'families = ["local_arith"]')
    if cfg.chain_rpc_url:
        if not cfg.chain_rpc_url.startswith(("http://", "https://")):
            raise bad("chain_rpc_url", "must be an http(s):// JSON-RPC URL", 'chain_rpc_url = "http://127.0.0.1:8545"')
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", cfg.chain_contract):
            raise bad("chain_contract", "must be the contract's 0x address (40 hex digits) when chain_rpc_url is set",
                      'chain_contract = "0x..." (printed by python -m trainer.coordinator.deploy)')
    for key in ("chain_id", "chain_queue_max"):
        if getattr(cfg, key) < 1:
            raise bad(key, "must be at least 1", f"{key} = 1")
    for key in ("chain_rpc_timeout", "chain_poll_seconds"):
        if getattr(cfg, key) <= 0:
            raise bad(key, "must be positive", f"{key} = 1.0")
    if cfg.hf_push_repo and cfg.hf_push_every and not cfg.hf_token:
        raise bad("hf_push_repo", "pushing needs a token", "export HF_TOKEN (never put it in the file)")

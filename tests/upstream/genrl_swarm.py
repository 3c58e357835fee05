"""Everything an unmodified gensyn-genrl 0.3.0 node needs to run offline on loopback.

The node is genrl's own launcher, `python -m genrl.runner.hivemind_launcher`, started
with a hydra config written here (no genrl file is edited; hivemind 1.1.12's missing
top-level names come from scripts/genrl_hivemind_shim.py, installed by setup.sh):
a tiny random Qwen2 and its tokenizer saved to a local directory (trainer.model, no
download), a local jsonl dataset folder (genrl's `load_dataset(name)` loads a local
directory), `BaseGameManager` + `HivemindBackend` + `DefaultRewardManager` (a real
reward function) + `GRPOLanguageTrainerModule` + `SimpleTextDataManager`, no chain.
`GenrlNode(game="codezero")` writes genrl's CodeZero game instead (CODEZERO_CONFIG), the
one whose data manager trains on peers' rollouts (the mixed swarm's upstream side).

The launcher's own traps, measured (../shared/reference/upstream-offline.md):
- the master is the node whose `socket.getfqdn()` equals MASTER_ADDR, so the second
  node on this host gets another MASTER_ADDR; both get LAMBDA=1 and one MASTER_FILE (a
  torch FileStore through which the master hands its addresses to the other node);
- `communication` is set explicitly (unset, genrl passes `inspect._empty` to P2P);
- HIVEMIND_WORLD_SIZE=2 makes every gather wait for both nodes.

genrl's round key is a per-process counter (`HivemindBackend.step_`), not a shared
clock: a restarted node starts again at key "0", replays the older rounds from the
peers' records still on the DHT and meets the peer again once it reaches the peer's key;
the peer waits meanwhile. Records expire after genrl's `timeout` (600 s by default): a
node restarted later than that never meets its peer again (a limit of genrl without a
chain, whose round would be the key), so the test pair keeps them an hour. And a restarted MASTER starts a DHT of
its own on a new random port and knows no peer; the second node reads the FileStore only
at start, so it meets the new master by restarting (tests/upstream/supervised.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = ("-m", "genrl.runner.hivemind_launcher")
# genrl's game manager, once per round, and its complaint when the swarm fails it.
ROUND = re.compile(r"Starting round: (\d+)/\d+")
SWARM_ERROR = "Error with swarm payloads"

QUESTIONS = [(f"What is {a} + {b}?", str(a + b)) for a, b in [(2, 3), (4, 1), (7, 5), (6, 6), (9, 2), (8, 3)]]

HYDRA_CONFIG = """\
# An unmodified genrl 0.3.0 node, offline: written by tests/upstream/genrl_swarm.py.
log_dir: {log_dir}
game_manager:
  _target_: genrl.game.BaseGameManager
  max_stage: 1
  max_round: {max_round}
  game_state:
    _target_: genrl.state.GameState
    round: 0
    stage: 0
  reward_manager:
    _target_: genrl.rewards.DefaultRewardManager
    reward_fn_store:
      _target_: genrl.rewards.RewardFnStore
      max_rounds: {max_round}
      reward_fn_stores:
        - _target_: genrl.rewards.RoundRewardFnStore
          num_stages: 1
          reward_fns:
            - _target_: genrl.examples.multistage_math.rewards.Stage0Rewards
  trainer:
    _target_: genrl.trainer.grpo_trainer.GRPOLanguageTrainerModule
    models:
      - _target_: transformers.AutoModelForCausalLM.from_pretrained
        pretrained_model_name_or_path: {model_dir}
    config:
      _target_: genrl.trainer.grpo_trainer.GRPOTrainerConfig
      max_new_tokens: 8
      num_generations: 2
      minibatch_size: 2
      learning_rate: 1.0e-5
      enable_gradient_checkpointing: false
    log_dir: {log_dir}
  data_manager:
    _target_: genrl.data.text_data_managers.SimpleTextDataManager
    train_dataset: {data_dir}
    num_train_samples: 1
    seed: {seed}
    batch_item_id_column: question
    system_prompt: "Answer with 'Answer: <number>'."
  communication:
    _target_: genrl.communication.hivemind.hivemind_backend.HivemindBackend
    initial_peers: {initial_peers}
    timeout: {timeout}
    identity_path: {identity}
    startup_timeout: 60
"""

# The game that takes peers' rollouts into training: genrl 0.3.0's CodeZero pieces (the
# game Gensyn's current rl-swarm runs). Its data manager transplants up to
# `num_transplant_trees` of the swarm's trees (Payloads from other agents with exactly
# `num_generations` completions) into the game state its GRPO trainer then trains on.
# genrl 0.3.0's ReasoningGymDataManager cannot: its transplant_trees indexes the
# msgpack-decoded `Payload` dataclass as a dict (`payload["actions"]`), a TypeError on
# every peer payload, logged "Error with swarm payloads" each round.
# Data: `load_dataset("google-research-datasets/mbpp"/"deepmind/code_contests",
# streaming=True)` loads folders of those names in the working directory (the node's
# root); `build_codezero_datasets` writes them. Rewards: genrl's CodeGenerationRewards
# score a completion -1.0 unless it holds a ```python fence (only then is the Ollama
# judge asked), ±0.2 for ending before `solver_token_lim` tokens; with 8 new tokens no
# fence fits, so the judge, a service outside the node, is never called.
CODEZERO_CONFIG = """\
# An unmodified genrl 0.3.0 CodeZero node, offline: written by tests/upstream/genrl_swarm.py.
log_dir: {log_dir}
game_manager:
  _target_: genrl.examples.code_generation.solver_manager.CodeGenerationGameManager
  max_stage: 1
  max_round: {max_round}
  log_dir: {log_dir}
  game_state:
    _target_: genrl.state.GameState
    round: 0
    stage: 0
  reward_manager:
    _target_: genrl.rewards.DefaultRewardManager
    reward_fn_store:
      _target_: genrl.rewards.RewardFnStore
      max_rounds: {max_round}
      reward_fn_stores:
        - _target_: genrl.rewards.RoundRewardFnStore
          num_stages: 1
          reward_fns:
            - _target_: genrl.examples.code_generation.solver_rewards.CodeGenerationRewards
              solver_tokenizer_path: {model_dir}
              solver_token_lim: {max_new_tokens}
  trainer:
    _target_: genrl.trainer.grpo_trainer.GRPOLanguageTrainerModule
    models:
      - _target_: transformers.AutoModelForCausalLM.from_pretrained
        pretrained_model_name_or_path: {model_dir}
    config:
      _target_: genrl.trainer.grpo_trainer.GRPOTrainerConfig
      max_new_tokens: {max_new_tokens}
      num_generations: {num_generations}
      minibatch_size: 2
      learning_rate: 1.0e-5
      enable_gradient_checkpointing: false
    log_dir: {log_dir}
  data_manager:
    _target_: genrl.examples.code_generation.solver_data.CodeGenerationDataManager
    system_prompt: solver
    batch_size: 1
    local_batch_size: 1
    proposer_batch_size: 0
    num_generations: {num_generations}
    num_transplant_trees: {num_transplant_trees}
  communication:
    _target_: genrl.communication.hivemind.hivemind_backend.HivemindBackend
    initial_peers: {initial_peers}
    timeout: {timeout}
    identity_path: {identity}
    startup_timeout: 60
"""
# The dataset folder names CodeGenerationDataManager loads, relative to its cwd.
CODEZERO_DATASETS = ("google-research-datasets/mbpp", "deepmind/code_contests")
# CodeZero's transplant takes a peer's tree only with exactly NUM_GENERATIONS completions,
# so a peer of ours in that swarm must generate as many.
NUM_GENERATIONS = 2
MAX_NEW_TOKENS = 8  # too few for a ```python fence: the judge is never asked


def build_model_dir(path: Path) -> Path:
    """A random tiny Qwen2 plus its tokenizer, saved where `from_pretrained` finds both."""
    from trainer.model import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_dataset_dir(path: Path, questions: list[tuple[str, str]] = QUESTIONS) -> Path:
    """A local dataset folder with a `question`/`answer` jsonl train split."""
    path.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"question": q, "answer": a}) for q, a in questions]
    (path / "train.jsonl").write_text("\n".join(lines) + "\n")
    return path


def build_codezero_datasets(path: Path, questions: list[tuple[str, str]] = QUESTIONS) -> Path:
    """The two folders CodeGenerationDataManager streams, under `path`: every question
    as a code_contests row (whose question is the description verbatim, so a peer that
    knows the question can score it) and one MBPP row (its loader needs the folder)."""
    mbpp, contests = (path / name for name in CODEZERO_DATASETS)
    for folder in (mbpp, contests):
        folder.mkdir(parents=True, exist_ok=True)
    rows = [{"description": q, "public_tests": {"input": [], "output": [a]}} for q, a in questions]
    (contests / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    mbpp_row = {"text": "Write a function add(a, b) that returns a + b.", "test_setup_code": "",
                "test_list": ["assert add(2, 3) == 5"]}
    (mbpp / "train.jsonl").write_text(json.dumps(mbpp_row) + "\n")
    return path


@dataclass(frozen=True)
class GenrlNode:
    """One upstream node's directory, config and environment (it runs nothing itself)."""

    root: Path  # the node's working directory
    name: str
    master: bool
    master_file: Path
    model_dir: Path
    data_dir: Path
    seed: int = 0
    timeout: int = 600  # genrl's gather timeout and record expiry (its default)
    world_size: int = 2  # HIVEMIND_WORLD_SIZE: records each gather waits for
    # Bootstrap addresses in the hydra config; when set, the rendezvous file is unused.
    initial_peers: tuple[str, ...] = ()
    # "text" (HYDRA_CONFIG, SimpleTextDataManager on data_dir's jsonl) or "codezero"
    # (CODEZERO_CONFIG; data_dir holds build_codezero_datasets' folders).
    game: str = "text"
    num_transplant_trees: int = 1  # codezero: peers' trees taken into training per round

    @property
    def identity(self) -> Path:
        return self.root / "swarm.pem"

    @property
    def log_dir(self) -> Path:
        return self.root / "genrl-logs"

    @property
    def config_dir(self) -> Path:
        return self.root / "hydra"

    def write(self, max_round: int = 1_000_000) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        template = {"text": HYDRA_CONFIG, "codezero": CODEZERO_CONFIG}[self.game]
        if self.game == "codezero":
            self._link_codezero_datasets()
        (self.config_dir / "node.yaml").write_text(template.format(
            log_dir=self.log_dir, max_round=max_round, model_dir=self.model_dir, data_dir=self.data_dir,
            seed=self.seed, timeout=self.timeout, identity=self.identity,
            initial_peers=json.dumps(list(self.initial_peers)) if self.initial_peers else "null",
            max_new_tokens=MAX_NEW_TOKENS, num_generations=NUM_GENERATIONS,
            num_transplant_trees=self.num_transplant_trees))

    def _link_codezero_datasets(self) -> None:
        """The dataset folders where CodeGenerationDataManager looks: its working
        directory, the node's root (hydra 1.3 with genrl's `version_base=None` does not
        chdir into hydra.run.dir)."""
        for name in CODEZERO_DATASETS:
            link = self.root / name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(self.data_dir / name, target_is_directory=True)

    def argv(self) -> list[str]:
        return [sys.executable, *LAUNCHER, "--config-path", str(self.config_dir), "--config-name", "node",
                f"hydra.run.dir={self.root / 'hydra-run'}"]

    def env(self) -> dict[str, str]:
        """The launcher's environment: offline, one thread, the rendezvous variables."""
        fqdn = socket.getfqdn()
        rendezvous = {} if self.initial_peers else {"LAMBDA": "1", "MASTER_FILE": str(self.master_file)}
        return {
            "MASTER_ADDR": fqdn if self.master else f"not-{fqdn}",
            **rendezvous,
            "HIVEMIND_WORLD_SIZE": str(self.world_size),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(self.root.parent / "hf-home"),
            "WANDB_MODE": "disabled",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            "HYDRA_FULL_ERROR": "1",
        }


def make_pair(root: Path, model_dir: Path, data_dir: Path) -> tuple[GenrlNode, GenrlNode]:
    """The master ("a") and the second node ("b") of a two-node swarm under `root`.
    Records live an hour instead of genrl's 600 s: a restarted node meets its peer only
    by replaying from round 0 (see the module docstring), which fails for good once the
    early rounds' records have expired, and a loaded test run can pass 600 s."""
    master_file = root / "rendezvous.filestore"
    nodes = tuple(GenrlNode(root / name, name, name == "a", master_file, model_dir, data_dir, seed=i,
                            timeout=3600)
                  for i, name in enumerate(("a", "b")))
    for node in nodes:
        node.write()
    return nodes[0], nodes[1]


def rounds(text: str) -> list[int]:
    return [int(m) for m in ROUND.findall(text)]


def tree_parts(root_pid: int, identity: Path) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(DHT children, p2pd daemons) of this node's tree: p2pd is the process whose
    command line holds `-id=<identity>`, its parent is hivemind's forked DHT process."""
    try:
        procs = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return [], []
    flag = f"-id={identity}"
    p2pds = [p for p in procs if flag in _cmdline(p)]
    dhts = []
    for p in p2pds:
        try:
            parent = p.parent()
        except psutil.NoSuchProcess:
            continue
        if parent is not None and parent.pid != root_pid:
            dhts.append(parent)
    return dhts, p2pds


def identity_processes(identity: Path) -> list[psutil.Process]:
    """Every p2pd on the host serving this identity (two means two trees of one key)."""
    flag = f"-id={identity}"
    return [p for p in psutil.process_iter(["name"]) if p.info.get("name") == "p2pd" and flag in _cmdline(p)]


def p2pd_sockets(proc: psutil.Process) -> list[Path]:
    """The unix sockets a p2pd listens on (hivemind removes them only on a clean stop)."""
    return [Path(a.removeprefix("-listen=/unix")) for a in _cmdline(proc) if a.startswith("-listen=/unix/")]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def start_unsupervised(node: GenrlNode, log: Path) -> subprocess.Popen[bytes]:
    """The launcher in its own session, output to `log` (as swarmd would run it)."""
    with log.open("ab") as out:
        return subprocess.Popen(node.argv(), cwd=node.root, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **node.env()},
                                start_new_session=True)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the node's process group, SIGKILL what is left after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue

"""The log classifier against the public failure corpus, its traps, and odd input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmd.classify import Classifier, _trie_pattern, file_verdict
from swarmd.config import RuleSpec
from swarmd.domain import Signal, Verdict
from swarmd.rules import OOM_KINDS, Rule, default_rules
from swarmd.user_rules import build_rules

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "failures"
HEADERS = ("# source:", "# class:", "# expect:")
V = Verdict


def read_corpus_file(path: Path) -> tuple[str, list[str]]:
    """The `# expect:` value and the log lines (headers removed), as a reader sees them."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = re.split(r"\r|\n", text)
    expect = next(ln for ln in lines if ln.startswith("# expect:"))
    body = [ln for ln in lines if not ln.startswith(HEADERS)]
    return expect.split(":", 1)[1].strip(), body


def corpus_params() -> list[object]:
    files = sorted(CORPUS.glob("*.log")) if CORPUS.is_dir() else []
    if not files:
        reason = f"failure corpus not found at {CORPUS} (expected beside the checkout)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="absent")]
    return [pytest.param(p, id=p.stem) for p in files]


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier()


def sig(clf: Classifier, line: str) -> Signal:
    result = clf.classify(line)
    assert result is not None, f"no rule matched {line!r}"
    return result


@pytest.mark.parametrize("path", corpus_params())
def test_corpus_file_yields_expected_verdict(path: Path, clf: Classifier) -> None:
    """Each corpus excerpt gets the verdict its `# expect:` header names."""
    expect, lines = read_corpus_file(path)
    verdict, signals = file_verdict(lines, clf)
    got = None if verdict is None else verdict.value
    assert got == expect, [(s.rule, s.line[:100]) for s in signals]


# --- rule families, including the variants nodes print in the wild ----------------

# fmt: off
FAULTS = [
    # p2pd startup timeout: any number, hydra repr form, bare one-liner, genrl prefix
    ("hivemind.p2p.p2p_daemon_bindings.utils.P2PDaemonError: Daemon failed to start in 15.0 seconds", "p2pd_startup_timeout", V.RESTART),
    ("P2PDaemonError: Daemon failed to start in 30.0 seconds", "p2pd_startup_timeout", V.RESTART),
    ("P2PDaemonError: Daemon failed to start in 120 seconds", "p2pd_startup_timeout", V.RESTART),
    ("P2PDaemonError('Daemon failed to start in 15.0 seconds')", "p2pd_startup_timeout", V.RESTART),
    ("[2025-07-01 10:00:00,001][genrl.logging_utils.global_defs][ERROR] - P2PDaemonError('Daemon failed to start in 120.0 seconds')", "p2pd_startup_timeout", V.RESTART),
    ("P2PDaemonError: Daemon failed to start: 2025/05/05 05:11:19 failed to connect to bootstrap peers", "p2pd_bootstrap_unreachable", V.RESTART),
    ("P2PDaemonError: Daemon failed to start: exit status 1", "p2pd_daemon_error", V.RESTART),
    ("RuntimeError: DHTNode bootstrap failed: none of the initial_peers responded to a ping. (set ensure_bootstrap_success=False to ignore)", "dht_bootstrap_failed", V.RESTART),
    ("hydra.errors.InstantiationException: Error in call to target 'x.CodeZero': RuntimeError('DHTNode bootstrap failed: none of the initial_peers responded to a ping.')", "dht_bootstrap_failed", V.RESTART),
    # stale p2pd state from a previous run
    ("Failed to connect to UNIX socket at /tmp/hivemind-p2pd-i12aq_D1-4U.sock", "p2pd_stale_socket", V.RESTART_AFTER_CLEANUP),
    ("OSError: [Errno 98] Address already in use", "address_in_use", V.RESTART_AFTER_CLEANUP),
    ("Error: listen EADDRINUSE: address already in use :::3000", "address_in_use", V.RESTART_AFTER_CLEANUP),
    # Another node runs with this swarm.pem: a cleanup of our own tree cannot fix that (#9).
    ("P2PDaemonError: Identity from `/root/swarm.pem` is already taken by another peer", "p2pd_identity_taken", V.GIVE_UP_FATAL),
    # DHT child crash: hivemind format, no timestamp, pipe errors, child banner
    ("Jun 27 04:10:43.681 [ERROR] [hivemind.dht.dht._run:130] [Errno 11] Resource temporarily unavailable", "dht_child_error", V.RESTART),
    (" [ERROR] [hivemind.dht.dht._run:131] [Errno 11] Resource temporarily unavailable", "dht_child_error", V.RESTART),
    ("BlockingIOError: [Errno 11] Resource temporarily unavailable", "dht_pipe_blocking", V.RESTART),
    ("EOFError: Ran out of input", "dht_pipe_eof", V.RESTART),
    ("EOFError", "dht_pipe_eof", V.RESTART),
    ("Process DHT-1:", "dht_process_died", V.RESTART),
    ("Oct 26 23:33:49.827 [ERROR] [hivemind.dht.dht._run_coroutine:267] Caught an exception when running a coroutine:", "dht_coroutine_error", V.RECONNECT_DHT),
    ("TypeError: cannot unpack non-iterable NoneType object", "dht_get_none", V.RESTART),
    ("[2025-09-26 04:13:37,948][genrl.logging_utils.global_defs][ERROR] - Exception occurred during game run.", "train_loop_exception", V.RESTART),
    # memory
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 11.72 GiB", "cuda_oom", V.RESTART),
    ("torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "cuda_oom", V.RESTART),
    ("RuntimeError: MPS backend out of memory (MPS allocated: 15.05 GB, other allocations: 11.91 GB, max allowed: 27.20 GB).", "mps_oom", V.RESTART),
    ("./run_rl_swarm.sh: line 266: 33498 Killed: 9               python -m hivemind_exp.gsm8k.train_single_gpu", "os_oom_killed", V.RESTART_AFTER_CLEANUP),
    ("./run_rl_swarm.sh: line 649:  9746 Killed  python -m rgym_exp.runner.swarm_launcher", "os_oom_killed", V.RESTART_AFTER_CLEANUP),
    ("Killed", "os_oom_killed", V.RESTART_AFTER_CLEANUP),
    ("Killed: 9", "os_oom_killed", V.RESTART_AFTER_CLEANUP),
    ("[1]+  Killed                  python train.py", "os_oom_killed", V.RESTART_AFTER_CLEANUP),
    ("zsh: killed     python -m rgym_exp.runner.swarm_launcher", "os_oom_killed", V.RESTART_AFTER_CLEANUP),
    ("[rank0]:     self._initialize_kv_caches()", "vllm_kv_cache_oom", V.GIVE_UP_FATAL),
    ("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.", "vllm_kv_cache_oom", V.GIVE_UP_FATAL),
    # broken install or credentials: a restart fails the same way
    ("ModuleNotFoundError: No module named 'hivemind'", "import_error", V.GIVE_UP_FATAL),
    ("ImportError: cannot import name 'is_torch_version' from 'transformers.utils'", "import_error", V.GIVE_UP_FATAL),
    ("P2PDaemonError: p2pd binary not found", "p2pd_binary_missing", V.GIVE_UP_FATAL),
    ("FileNotFoundError(2, 'No such file or directory')", "backend_file_missing", V.GIVE_UP_FATAL),
    ("Smart contract account reverted with error: AA24 signature error", "auth_signature_error", V.GIVE_UP_FATAL),
    ("xdg-open: no method available for opening 'http://localhost:3000'", "login_browser_unavailable", V.GIVE_UP_FATAL),
    # training loop
    ("UnboundLocalError: cannot access local variable 'current_batch' where it is not associated with a value", "accelerate_current_batch", V.RESTART),
    ("UnboundLocalError: local variable 'current_batch' referenced before assignment", "accelerate_current_batch", V.RESTART),
    ("ERROR:hivemind_exp.trainer.hivemind_grpo_trainer:freckled thriving nightingale:Encountered error during training!", "train_loop_exception", V.RESTART),
    ("Exception: Failed to connect to Gensyn Testnet", "testnet_rpc_unreachable", V.RESTART),
    # reward submission: counted, never a restart
    ("[2025-08-01 02:47:31,433][genrl.logging_utils.global_defs][ERROR] - Failed to submit to chain.", "reward_submit_failed", V.TRANSIENT_IGNORE),
    ("requests.exceptions.HTTPError: 400 Client Error: Bad Request for url: http://localhost:3000/api/submit-reward", "reward_submit_http", V.TRANSIENT_IGNORE),
    (" POST /api/submit-reward 500 in 2143ms", "reward_submit_http", V.TRANSIENT_IGNORE),
    ('Details: {"code":-32521,"message":"execution reverted","data":{"revertData":"0xe39ce02e"}}', "execution_reverted", V.TRANSIENT_IGNORE),
    ("Failed to call registerPeer: PeerIdAlreadyRegistered", "peer_already_registered", V.TRANSIENT_IGNORE),
    ("Failed to call submitReward: InvalidRoundNumber", "invalid_round_number", V.TRANSIENT_IGNORE),
]
# fmt: on


@pytest.mark.parametrize(("line", "rule", "verdict"), FAULTS, ids=lambda x: str(x)[:40])
def test_known_line_matches_its_rule(
    clf: Classifier, line: str, rule: str, verdict: Verdict
) -> None:
    """Each known cause, in every wording seen, maps to its rule and verdict."""
    result = sig(clf, line)
    assert (result.rule, result.verdict) == (rule, verdict)
    assert result.line == line.rstrip()


TRAPS_NONE = [
    "Traceback (most recent call last):",
    "Stack (most recent call last):",
    "[2025-08-01 02:47:31,433][genrl.logging_utils.global_defs][ERROR] - ",
    "Oct 26 23:33:49.827 [ERROR] [hivemind.utils.something:12] oops",
    "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
    "export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
    "Sliding Window Attention is enabled but not implemented for `sdpa`; unexpected results may be encountered.",
    "WARN:huggingface_hub._login:Token has not been saved to git credential helper.",
    "You might have to re-authenticate when pushing to the Hugging Face Hub.",
    "wandb: Tracking run with wandb version 0.20.1",
    "wandb: W&B syncing is set to `offline` in this directory.",
    "Terminated",
    ">> Shutting down trainer...",
    "zsh: terminated  ./run_rl_swarm.sh",
    "Apr 06 13:19:21.850 [WARN] [hivemind.p2p.p2p_daemon_bindings.control.open_connection:62] zx-p2p path /tmp/hivemind-p2pd-i12aq_D1-4U.sock",
    "If you encounter this error, please report it to Gensyn by",
    "INFO:hivemind_exp.gsm8k.stage_utils:x:Could not retrieve local outputs for round 33 stage 1",
    "UserWarning: resource_tracker: There appear to be 5 leaked semaphore objects to clean up at shutdown",
    "",
    "   ",
]


@pytest.mark.parametrize("line", TRAPS_NONE, ids=lambda x: x[:40] or "empty")
def test_loud_but_causeless_line_gives_no_signal(clf: Classifier, line: str) -> None:
    """Tracebacks, bare [ERROR] tags, advice text, wandb/WARN and exit noise say nothing."""
    assert clf.classify(line) is None


def test_identity_check_line_is_healthy_startup(clf: Classifier) -> None:
    """hivemind's identity check is startup progress, not an identity conflict."""
    line = "May 16 20:05:00.339 [INFO] Checking that identity from `/root/swarm.pem` is not used by other peers"
    result = sig(clf, line)
    assert (result.verdict, result.kind) == (V.HEALTHY_PROGRESS, "startup")


def test_cuda_oom_advice_is_not_what_matches(clf: Classifier) -> None:
    """The OOM line is matched on the OOM text, the same line's env advice is incidental."""
    line = "torch.OutOfMemoryError: CUDA out of memory. ... try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
    assert sig(clf, line).kind == "cuda_oom"
    assert "cuda_oom" in OOM_KINDS


@pytest.mark.parametrize("rate", ["335.12s/it", "583.49s/it", "860.00s/it"])
def test_slow_cpu_step_is_progress(clf: Classifier, rate: str) -> None:
    """Steps of 300-860 s on CPU are progress with their step time, not a stall."""
    result = sig(clf, f" 75%|███████▌  | 15/20 [1:58:20<48:37, {rate}]")
    assert result.verdict is V.HEALTHY_PROGRESS
    assert result.step_seconds == pytest.approx(float(rate.removesuffix("s/it")))


# --- glued lines, \r frames, escapes ---------------------------------------------


def test_error_glued_after_tqdm_bar_is_found(clf: Classifier) -> None:
    """A hivemind [ERROR] on the same physical line as a bar is still a DHT crash."""
    line = (
        "Map: 100%|██████████| 2/2 [00:00<00:00, 147.93 examples/s]"
        "Jun 27 04:10:43.681 [ERROR] [hivemind.dht.dht._run:130] [Errno 11] Resource temporarily unavailable"
    )
    assert sig(clf, line).rule == "dht_child_error"


def test_killed_glued_after_tqdm_bar_is_oom(clf: Classifier) -> None:
    """bash's 'Killed: 9' glued after '583.49s/it]' wins over the bar it follows."""
    line = (
        " 75%|███████▌  | 15/20 [1:58:20<48:37, 583.49s/it]./run_rl_swarm.sh: line 142: "
        '33551 Killed: 9               python -m hivemind_exp.gsm8k.train_single_gpu --config "$CONFIG_PATH"'
    )
    result = sig(clf, line)
    assert (result.kind, result.verdict) == ("os_oom_killed", V.RESTART_AFTER_CLEANUP)


def test_bare_killed_glued_to_bar_is_oom(clf: Classifier) -> None:
    """A bare 'Killed' right after a bar's closing bracket is the shell's kill notice."""
    assert (
        sig(clf, " 50%|█████     | 5/10 [00:10<00:10, 2.00s/it]Killed").kind
        == "os_oom_killed"
    )


def test_carriage_return_frames_report_the_latest_step(clf: Classifier) -> None:
    """Of several \\r tqdm frames on one line, the last frame's step time is reported."""
    line = "\r 25%|██▌       | 1/4 [00:01<00:03, 1.50s/it]\r 50%|█████     | 2/4 [00:02<00:02, 1.25s/it]\r"
    result = sig(clf, line)
    assert result.step_seconds == pytest.approx(1.25)
    assert "\r" not in result.line


def test_error_after_carriage_return_frames_wins(clf: Classifier) -> None:
    """An error in a later \\r frame outranks the progress frames before it."""
    line = " 25%|██▌       | 1/4 [00:01<00:03, 1.50s/it]\rtorch.OutOfMemoryError: CUDA out of memory."
    assert sig(clf, line).kind == "cuda_oom"


def test_thousands_of_frames_still_show_the_glued_kill(clf: Classifier) -> None:
    """A line of 10k bar frames ending in a shell kill notice is an OOM kill."""
    frames = "".join(
        f"\r{i % 100:3d}%|█    | {i}/10000 [00:01<00:01, 2.00s/it]"
        for i in range(10_000)
    )
    line = frames + "./run_rl_swarm.sh: line 9: 123 Killed: 9   python -m trainer"
    assert sig(clf, line).kind == "os_oom_killed"
    assert sig(clf, frames).step_seconds == pytest.approx(2.0)


def test_ansi_escapes_are_stripped_before_matching(clf: Classifier) -> None:
    """Colour codes inside a message neither hide the match nor reach the evidence."""
    line = "\x1b[31mP2PDaemonError\x1b[0m: Daemon failed to \x1b[1mstart\x1b[0m in 15.0 seconds\x1b]0;title\x07"
    result = sig(clf, line)
    assert result.rule == "p2pd_startup_timeout"
    assert "\x1b" not in result.line


def test_nul_bytes_are_ignored(clf: Classifier) -> None:
    """NULs inside a line (binary writers) do not break a match."""
    assert sig(clf, "Process\x00 DHT-1:").rule == "dht_process_died"


# --- extraction ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "round_", "stage"),
    [
        (
            "INFO:hivemind_exp.trainer.hivemind_grpo_trainer:long scampering elephant:🐝 Joining round: 331 starting at stage: 1",
            331,
            1,
        ),
        ("🐝 Joining round: 12 starting at stage: 0", 12, 0),
        (
            "[2025-10-26 23:30:27,842][genrl.logging_utils.global_defs][INFO] - 🐝 Joining round: 39512",
            39512,
            None,
        ),
        ("📈 Training round: 46 stage: 2", 46, 2),
        ("INFO:x:y:📉 Finished training round: 329 stage: 2", 329, 2),
        (
            "[2025-10-26 23:30:27,852][genrl.logging_utils.global_defs][INFO] - Starting round: 39512/1000000.",
            39512,
            None,
        ),
        ("🏆 Submitting winners for round 329: ['Qm']", 329, None),
    ],
)
def test_round_line_yields_round_and_stage(
    clf: Classifier, line: str, round_: int, stage: int | None
) -> None:
    """Join/training/finished/start lines are progress and carry round and stage."""
    result = sig(clf, line)
    assert (result.verdict, result.kind) == (V.HEALTHY_PROGRESS, "round")
    assert (result.round, result.stage) == (round_, stage)


@pytest.mark.parametrize(
    ("line", "round_", "wait"),
    [
        (
            "INFO:hivemind_exp.trainer.hivemind_grpo_trainer:robust eager dinosaur:Already finished round: 113. Next check in 5.0s.",
            113,
            5.0,
        ),
        ("Already finished round: 12. Next check in 300.0s.", 12, 300.0),
        (
            "[2025-10-26 23:29:57,660][genrl.logging_utils.global_defs][INFO] - Already finished round: 39511. Next check in 900s.",
            39511,
            900.0,
        ),
        (
            "INFO:hivemind_exp.trainer.hivemind_grpo_trainer:[F-a314cc76] Already finished round: 24. Skipping.",
            24,
            None,
        ),
    ],
)
def test_wait_line_is_idle_with_its_backoff(
    clf: Classifier, line: str, round_: int, wait: float | None
) -> None:
    """'Already finished round' is healthy idling and carries the trainer's back-off."""
    result = sig(clf, line)
    assert (result.verdict, result.kind) == (V.HEALTHY_IDLE, "round_wait")
    assert (result.round, result.wait_seconds) == (round_, wait)


def test_round_fetch_retry_is_idle_whatever_error_it_quotes(clf: Classifier) -> None:
    """The wait loop's own retry line is idle even when its quoted error sounds fatal."""
    line = "Could not fetch round and stage: OSError(98, 'Address already in use'). Next check in 5.0s."
    result = sig(clf, line)
    assert (result.verdict, result.wait_seconds) == (V.HEALTHY_IDLE, 5.0)


@pytest.mark.parametrize(
    ("rate", "seconds"),
    [
        ("9.20s/it", 9.2),
        ("2.50it/s", 0.4),
        ("?it/s", None),
    ],
)
def test_tqdm_rate_gives_step_seconds(
    clf: Classifier, rate: str, seconds: float | None
) -> None:
    """s/it is taken as is, it/s is inverted, and rates of other units give nothing."""
    result = sig(clf, f"train:  45%|████▌     | 9/20 [01:23<01:41, {rate}]")
    assert (result.kind, result.verdict) == ("step", V.HEALTHY_PROGRESS)
    if seconds is None:
        assert result.step_seconds is None
    else:
        assert result.step_seconds == pytest.approx(seconds)


def test_metrics_dict_is_progress(clf: Classifier) -> None:
    """GRPO metric dicts (loss 0.0, negative rewards) are normal step progress."""
    line = "{'loss': 0.0, 'grad_norm': 4.01, 'rewards/xmlcount_reward_func': -0.0168, 'epoch': 0.01}"
    assert sig(clf, line).verdict is V.HEALTHY_PROGRESS


# --- user rules ------------------------------------------------------------------


def test_user_rule_is_tried_before_builtins() -> None:
    """A user rule decides a line that a built-in would also match."""
    rules = build_rules(
        [RuleSpec("my_timeout", r"Daemon failed to start in", "give_up_fatal")]
    )
    assert rules[0].name == "my_timeout"
    result = sig(
        Classifier(rules), "P2PDaemonError: Daemon failed to start in 15.0 seconds"
    )
    assert (result.rule, result.kind, result.verdict) == (
        "my_timeout",
        "my_timeout",
        V.GIVE_UP_FATAL,
    )


def test_user_rule_with_builtin_name_replaces_it() -> None:
    """A spec named like a built-in replaces it: one rule of that name, the new verdict."""
    rules = build_rules(
        [RuleSpec("dht_coroutine_error", r"Caught an exception", "restart", kind="dht")]
    )
    assert [r.name for r in rules].count("dht_coroutine_error") == 1
    result = sig(
        Classifier(rules), "[ERROR] Caught an exception when running a coroutine:"
    )
    assert (result.verdict, result.kind) == (V.RESTART, "dht")


def test_disabled_spec_removes_builtin() -> None:
    """`enabled = false` switches a built-in off, and its pattern is not even checked."""
    rules = build_rules([RuleSpec("os_oom_killed", "(", "nonsense", enabled=False)])
    assert "os_oom_killed" not in {r.name for r in rules}
    assert Classifier(rules).classify("Killed: 9") is None


def test_user_rule_named_groups_are_extracted() -> None:
    """A user pattern's round/stage/its/wait_seconds groups fill the signal."""
    spec = RuleSpec(
        "mine",
        r"R(?P<round>\d+)S(?P<stage>\d+) (?P<its>[\d.]+)it/s w(?P<wait_seconds>\d+)",
        "healthy_progress",
    )
    result = sig(Classifier(build_rules([spec])), "R7S1 4.0it/s w30")
    assert (result.round, result.stage, result.step_seconds, result.wait_seconds) == (
        7,
        1,
        0.25,
        30.0,
    )


def test_unparsable_user_group_is_dropped() -> None:
    """A huge or non-numeric capture becomes None instead of raising."""
    spec = RuleSpec(
        "mine", r"round (?P<round>\S+) step (?P<its>\S+)", "healthy_progress"
    )
    result = sig(Classifier(build_rules([spec])), f"round {'9' * 5000} step abc")
    assert (result.round, result.step_seconds) == (None, None)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (RuleSpec("bad_re", "(unclosed", "restart"), "bad pattern"),
        (RuleSpec("bad_verdict", "x", "reboot"), "unknown verdict"),
        (RuleSpec("catch_all", "x*", "restart"), "matches every line"),
    ],
)
def test_invalid_user_rule_raises_value_error_naming_it(
    spec: RuleSpec, reason: str
) -> None:
    """A bad regex, verdict or match-everything pattern is refused with the rule's name."""
    with pytest.raises(ValueError, match=rf"^rule {spec.name!r}: .*{reason}"):
        build_rules([spec])


def test_duplicate_user_rule_name_is_refused() -> None:
    """Two specs with one name are ambiguous and refused."""
    specs = [RuleSpec("a", "x", "restart"), RuleSpec("a", "y", "restart")]
    with pytest.raises(ValueError, match=r"^rule 'a': defined twice"):
        build_rules(specs)


def test_no_specs_gives_default_rules() -> None:
    """With no [[rules]] the built-ins are used unchanged and in order."""
    assert build_rules([]) == default_rules()
    assert len({r.name for r in default_rules()}) == len(default_rules())


def test_empty_rule_list_matches_nothing() -> None:
    """A classifier with no rules has no opinion on anything."""
    assert (
        Classifier([]).classify(
            "P2PDaemonError: Daemon failed to start in 15.0 seconds"
        )
        is None
    )


@pytest.mark.parametrize(
    "line",
    [
        "train:  45%|████▌     | 9/20 [01:23<01:41, 590.21 examples/s]",
        "Map: 100%|██████████| 2/2 [00:00<00:00, 265.85 examples/s]",
        "Loading checkpoint shards: 100%|██████████| 2/2 [00:03<00:00,  1.60s/it]",
        "model.safetensors: 100%|██████████| 988M/988M [00:09<00:00, 104MB/s]",
        "Generating train split: 100%|██████████| 7473/7473 [00:00<00:00, 86411.25 examples/s]",
    ],
)
def test_loading_and_data_bars_are_startup_not_steps(clf: Classifier, line: str) -> None:
    """Model loading, dataset mapping and download bars prove no training (#9, #10):
    they are startup, so they neither mark READY nor reset the stall clock."""
    assert sig(clf, line).kind == "startup"


def test_launcher_error_line_alone_is_a_restart_but_never_hides_the_cause(clf: Classifier) -> None:
    """The upstream launcher's "An error was detected" follows every trainer death: alone
    it says "restart"; after a real cause the cause decides (most severe wins)."""
    launcher = ">> An error was detected while running rl-swarm. See /root/rl-swarm/logs for full logs."
    assert file_verdict([launcher], clf)[0] is V.RESTART
    verdict, signals = file_verdict(["./run_rl_swarm.sh: line 270: python: command not found", launcher], clf)
    assert verdict is V.GIVE_UP_FATAL
    assert signals[0].rule == "command_not_found"


def test_reward_banner_alone_is_transient(clf: Classifier) -> None:
    """genrl's own "most likely transient" banner (the excerpt may start after the
    "Failed to submit" line) is reward-submission noise."""
    assert sig(clf, "This is most likely transient and will recover.").verdict is V.TRANSIENT_IGNORE


# --- file verdict ----------------------------------------------------------------


def test_file_verdict_is_most_severe_with_its_signals(clf: Classifier) -> None:
    """The worst verdict wins and only the signals of that verdict are returned."""
    lines = [
        "🐝 Joining round: 5 starting at stage: 0",
        "Failed to submit to chain.",
        "Process DHT-1:",
        "EOFError: Ran out of input",
        "Already finished round: 5. Next check in 5.0s.",
    ]
    verdict, signals = file_verdict(lines, clf)
    assert verdict is V.RESTART
    assert [s.rule for s in signals] == ["dht_process_died", "dht_pipe_eof"]


def test_file_verdict_of_unknown_lines_is_none(clf: Classifier) -> None:
    """A log no rule knows has no verdict (not 'healthy'). (A log that ENDS on a
    traceback header is a cut crash: see test_analyze.)"""
    assert file_verdict(["hello world", "Traceback (most recent call last):", "hello again"], clf) == (
        None,
        [],
    )


# --- robustness and the prefilter --------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_never_raises(text: str) -> None:
    """Arbitrary unicode, control characters included, classifies without raising."""
    result = Classifier().classify(text)
    assert result is None or isinstance(result, Signal)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_binary_garbage_never_raises(data: bytes) -> None:
    """Bytes decoded with replacement characters classify without raising."""
    line = data.decode("utf-8", errors="replace")
    result = Classifier().classify(line)
    assert result is None or isinstance(result, Signal)


def test_very_long_line_keeps_head_and_tail(clf: Classifier) -> None:
    """A megabyte line is classified (the error at its end is found) and not slowly."""
    line = "%|" * 300_000 + " [ERROR] [hivemind.dht.dht._run:130] [Errno 11]"
    assert sig(clf, line).rule == "dht_child_error"
    assert len(sig(clf, line).line) < 20_000


def _unfiltered(rules: tuple[Rule, ...]) -> Classifier:
    # The same rules under patterns the token table does not know: always tried.
    return Classifier(
        [
            Rule(
                r.name,
                re.compile(f"(?:{r.pattern.pattern})", r.pattern.flags),
                r.verdict,
                r.kind,
            )
            for r in rules
        ]
    )


# fmt: off
FRAGMENTS = [
    "Killed", "Killed: 9", " 12 ", "[1]+ ", "%|", "█", "| 3/4 [00:01<00:02, ", "1.5s/it]", "2it/s]",
    "P2PDaemonError", "Daemon failed to start", " in 15.0 seconds", ": x failed to connect to bootstrap peers",
    "Already finished round: 3", ". Next check in 5.0s.", "Joining round: 4", " starting at stage: 1",
    "Could not fetch round and stage: ", "EOFError", "Process DHT-1:", "[hivemind.dht.dht._run:1]",
    "CUDA out of memory", "ImportError: x", "\r", "\x1b[31m", "Hello 🐈 [a b c] 🦮 [Qm]!", "AA24 signature error",
    "{'loss': ", "Checking that identity from x is not used by other peers", "Address already in use", " ",
]
# fmt: on


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=8
    ).map("".join)
)
def test_token_prefilter_never_changes_the_answer(line: str) -> None:
    """Skipping rules whose tokens are absent gives the same signal as trying them all."""
    assert Classifier().classify(line) == _unfiltered(default_rules()).classify(line)


def test_token_prefilter_agrees_on_corpus_lines() -> None:
    """On every corpus line the prefiltered and the exhaustive classifier agree."""
    if not CORPUS.is_dir():
        pytest.skip(f"failure corpus not found at {CORPUS}")
    fast, slow = Classifier(), _unfiltered(default_rules())
    for path in sorted(CORPUS.glob("*.log")):
        for line in read_corpus_file(path)[1]:
            assert fast.classify(line) == slow.classify(line), (path.name, line)


def test_many_boring_lines_give_no_signal(clf: Classifier) -> None:
    """A stream of ordinary INFO lines (the hot path) yields nothing at all."""
    lines = [
        f"[2025-06-28 13:08:{i % 60:02d},566][genrl.logging_utils.global_defs][INFO] - Train samples: {i}, Eval samples: 0"
        for i in range(20_000)
    ]
    assert [s for s in map(clf.classify, lines) if s is not None] == []


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("INFO:trainer.dht:DHT start attempt 1/5 failed (P2PDaemonError: Daemon failed to start in 15.0 seconds); retrying in 2.0s", "dht_retry"),
        ("INFO:trainer.dht:Reconnecting DHT in place (same identity)", "dht_reconnect"),
        ("INFO:trainer.node:idle earnest leopard:SIGUSR1: reconnecting the DHT in place", "dht_reconnect"),
        ("INFO:trainer.dht:DHT reconnected", "dht_reconnect"),
    ],
)
def test_trainer_own_dht_recovery_lines_are_noted_not_acted_on(line: str, kind: str) -> None:
    """The trainer retries and reconnects by itself: its retry lines never trigger a restart, even quoting P2PDaemonError."""
    sig = Classifier().classify(line)
    assert sig is not None
    assert (sig.kind, sig.verdict) == (kind, Verdict.TRANSIENT_IGNORE)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.text(alphabet="ab] [/", min_size=1, max_size=4), min_size=1, max_size=8),
    st.text(alphabet="ab] [/x", max_size=20),
)
def test_trie_gate_matches_exactly_where_some_word_occurs(words: list[str], line: str) -> None:
    """The prefix-trie gate is the plain alternation, only faster: same yes/no on any line."""
    trie = re.compile(_trie_pattern(words))
    assert (trie.search(line) is not None) == any(w in line for w in words)


"""Whole-stream judgement: tracebacks by their final exception, caught vs crashed,
operator loops, startup vs progress."""

from __future__ import annotations

import pytest

from swarmd.analyze import LogAnalyzer, judge_lines
from swarmd.classify import Classifier
from swarmd.domain import Signal, Verdict
from swarmd.rules import is_progress
from swarmd.taxonomy import cause_of_text

V = Verdict


@pytest.fixture(scope="module")
def clf() -> Classifier:
    return Classifier()


def crash(final: str, *extra: str) -> list[str]:
    return [
        ">> Good luck in the swarm!",
        "Traceback (most recent call last):",
        '  File "/x/swarm_launcher.py", line 3, in <module>',
        "    main()",
        final,
        *extra,
        ">> Shutting down trainer...",
    ]


# fmt: off
TAXONOMY = [
    ("ModuleNotFoundError: No module named 'hydra'", V.GIVE_UP_FATAL, "dependency_missing"),
    ("ImportError: cannot import name 'get_dht_time' from 'hivemind'", V.GIVE_UP_FATAL, "dependency_missing"),
    ("  SyntaxError: invalid syntax", V.GIVE_UP_FATAL, "code_broken"),
    ("omegaconf.errors.ConfigAttributeError: Key 'game' is not in struct", V.GIVE_UP_FATAL, "config_error"),
    ("FileNotFoundError: [Errno 2] No such file or directory: '/opt/node/bin/p2pd'", V.GIVE_UP_FATAL, "dependency_missing"),
    ("FileNotFoundError: [Errno 2] No such file or directory: 'configs/grpo.yaml'", V.GIVE_UP_FATAL, "missing_file"),
    ("RuntimeError: CUDA error: no kernel image is available for execution on the device", V.GIVE_UP_FATAL, "gpu_unsupported"),
    ("ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0.", V.GIVE_UP_FATAL, "gpu_dtype_unsupported"),
    ("ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored in KV cache (1000).", V.GIVE_UP_FATAL, "vllm_kv_cache_oom"),
    ("ConnectionRefusedError: [Errno 111] Connection refused", V.RESTART, "network_error"),
    ("requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='x', port=443): Read timed out.", V.RESTART, "network_error"),
    ("requests.exceptions.HTTPError: 502 Server Error: Bad Gateway for url: https://x/api", V.RESTART, "http_error"),
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", V.RESTART, "cuda_oom"),
    ("RuntimeError: MPS backend out of memory (MPS allocated: 9.00 GB)", V.RESTART, "mps_oom"),
    ("MemoryError", V.RESTART, "host_memory_error"),
    ("hivemind.p2p.p2p_daemon_bindings.control.P2PDaemonError: Daemon failed to start in 15.0 seconds", V.RESTART, "p2pd_startup_timeout"),
    ("P2PDaemonError: Identity from `/root/swarm.pem` is already taken by another peer", V.GIVE_UP_FATAL, "identity_taken"),
    ("ZeroDivisionError: division by zero", V.RESTART, "uncaught_exception"),
]
# fmt: on


@pytest.mark.parametrize(("final", "verdict", "kind"), TAXONOMY, ids=lambda x: str(x)[:30])
def test_crash_is_judged_by_its_final_exception(clf: Classifier, final: str, verdict: Verdict, kind: str) -> None:
    judged = judge_lines(crash(final.strip()), clf)
    assert (judged.verdict, judged.deciding[0].kind) == (verdict, kind)
    assert judged.deciding[0].block, "the deciding signal carries its traceback"


def test_fatal_causes_carry_the_fix_in_words(clf: Classifier) -> None:
    judged = judge_lines(crash("ModuleNotFoundError: No module named 'hydra'"), clf)
    assert "'hydra'" in judged.deciding[0].fix


def test_hydra_wrapper_is_judged_by_the_exception_it_quotes() -> None:
    cause = cause_of_text("InstantiationException", "Error in call to target 'x': ModuleNotFoundError(\"No module named 'vllm'\")")
    assert cause.verdict is V.GIVE_UP_FATAL


def test_warn_level_traceback_in_a_library_that_goes_on_is_not_a_crash(clf: Classifier) -> None:
    lines = [
        "Jul 19 09:22:42.251 [WARN] [petals.server.reachability.check:148] Reachability check failed",
        "Traceback (most recent call last):",
        '  File "/x/reachability.py", line 40, in check',
        "ConnectionRefusedError: [Errno 111] Connection refused",
        "Jul 19 09:22:43.000 [INFO] Announced that blocks range(2, 3) are online",
    ]
    assert judge_lines(lines, clf).verdict is V.TRANSIENT_IGNORE


def test_reward_submission_traceback_stays_transient(clf: Classifier) -> None:
    lines = [
        "[2025-07-27 16:27:55,431][genrl.logging_utils.global_defs][ERROR] - Failed to submit to chain.",
        "This is most likely transient and will recover.",
        "Traceback (most recent call last):",
        '  File "/x/manager.py", line 141, in _try_submit_to_chain',
        "requests.exceptions.ConnectionError: HTTPConnectionPool(host='localhost', port=3000): Max retries exceeded",
    ]
    assert judge_lines(lines, clf).verdict is V.TRANSIENT_IGNORE


def test_generic_crash_the_node_survived_does_not_decide(clf: Classifier) -> None:
    lines = [*crash("ValueError: weird")[1:-1], "🐝 Joining round: 7 starting at stage: 0"]
    assert judge_lines(lines, clf).verdict is V.HEALTHY_PROGRESS


def test_fatal_cause_is_not_hidden_by_later_progress_or_launcher_line(clf: Classifier) -> None:
    lines = [*crash("ModuleNotFoundError: No module named 'hydra'"), ">> An error was detected while running rl-swarm."]
    assert judge_lines(lines, clf).verdict is V.GIVE_UP_FATAL


def test_dht_bootstrap_warning_while_running_is_reconnect(clf: Classifier) -> None:
    line = (
        "Oct 26 23:33:49.827 [WARN] [hivemind.dht.node.create:214] DHTNode bootstrap failed: none of the "
        "initial_peers responded to a ping. (set ensure_bootstrap_success=False to ignore)"
    )
    assert judge_lines([line], clf).verdict is V.RECONNECT_DHT


@pytest.mark.parametrize(
    "line",
    [
        "🐱 Hello 🐈 [quick bold cat] 🦮 [QmPeer]!",
        ">> Good luck in the swarm!",
        "Checking that identity from `/x/swarm.pem` is not used by other peers",
        "Loading checkpoint shards: 100%|██████████| 2/2 [00:03<00:00,  1.60s/it]",
        "Map: 100%|██████████| 2/2 [00:00<00:00, 265.85 examples/s]",
    ],
)
def test_greetings_and_loading_are_startup_not_progress(clf: Classifier, line: str) -> None:
    sig = clf.classify(line)
    assert sig is not None
    assert sig.verdict is V.HEALTHY_PROGRESS  # the excerpt label: alive and starting
    assert not is_progress(sig)


@pytest.mark.parametrize(
    "line",
    [
        "🐝 Joining round: 5 starting at stage: 0",
        "  45%|████▌     | 9/20 [01:23<01:41,  9.20s/it]",
        "{'loss': 0.01, 'reward': 0.5, 'epoch': 0.1}",
        "loss = 2.080: 303it [00:02, 114.72it/s]",
    ],
)
def test_rounds_steps_and_metrics_are_progress(clf: Classifier, line: str) -> None:
    sig = clf.classify(line)
    assert sig is not None
    assert is_progress(sig)


def test_api_key_loop_needs_the_operator_once(clf: Classifier) -> None:
    an = LogAnalyzer(clf)
    out: list[Signal] = []
    for i in range(10):
        out.extend(an.feed("Waiting for API key to be activated...", float(i * 5)))
    needed = [s for s in out if s.verdict is V.OPERATOR_NEEDED]
    assert len(needed) == 1
    assert "log in" in needed[0].fix


def test_missing_display_gives_the_tunnel_fix(clf: Classifier) -> None:
    lines = [
        "Waiting for API key to be activated...",
        "[316009:316009:0403/081622.169322:ERROR:ozone_platform_x11.cc(245)] Missing X server or $DISPLAY",
        "Waiting for API key to be activated...",
        "Waiting for API key to be activated...",
    ]
    judged = judge_lines(lines, clf)
    assert judged.verdict is V.OPERATOR_NEEDED
    assert "ssh -L" in judged.deciding[0].fix


def test_login_wait_that_ends_is_not_operator_needed(clf: Classifier) -> None:
    lines = [
        "Waiting for API key to become activated...",
        "API key is activated! Proceeding...",
        "🐝 Joining round: 1 starting at stage: 0",
    ]
    assert judge_lines(lines, clf).verdict is V.HEALTHY_PROGRESS


def test_kernel_oom_lines_pasted_into_a_log(clf: Classifier) -> None:
    for line in [
        "[597411.196310] p2pd invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0",
        "[597411.197000] Out of memory: Killed process 4242 (python) total-vm:12345kB, anon-rss:999kB",
    ]:
        judged = judge_lines([line], clf)
        assert (judged.verdict, judged.deciding[0].kind) == (V.RESTART_AFTER_CLEANUP, "kernel_oom")


def test_healthy_excerpt_takes_its_latest_state(clf: Classifier) -> None:
    lines = [
        "Already finished round: 5. Next check in 5.0s.",
        "🐝 Joining round: 6 starting at stage: 0",
    ]
    assert judge_lines(lines, clf).verdict is V.HEALTHY_PROGRESS
    assert judge_lines(lines[::-1], clf).verdict is V.HEALTHY_IDLE


def test_last_crash_is_remembered_for_the_exit_context(clf: Classifier) -> None:
    an = LogAnalyzer(clf)
    for line in crash("ModuleNotFoundError: No module named 'hydra'")[:-1]:
        an.feed(line)
    assert an.last_crash is None  # the block is still open
    an.flush()
    assert an.last_crash is not None
    assert an.last_crash.verdict is V.GIVE_UP_FATAL


def test_user_rule_may_match_a_tracebacks_final_exception_type() -> None:
    """`exception = "ZeroDivisionError"` judges the block, and never a bare line."""
    from swarmd.config import RuleSpec
    from swarmd.user_rules import build_rules

    rules = build_rules([RuleSpec(name="div", pattern="", verdict="give_up_fatal", kind="math", exception="ZeroDivisionError")])
    clf = Classifier(rules)
    judged = judge_lines(crash("ZeroDivisionError: division by zero"), clf)
    assert (judged.verdict, judged.deciding[0].rule) == (V.GIVE_UP_FATAL, "div")
    assert clf.classify("ZeroDivisionError: division by zero") is None


def test_exception_rule_with_pattern_needs_both() -> None:
    from swarmd.config import RuleSpec
    from swarmd.user_rules import build_rules

    spec = RuleSpec(name="oom-big", pattern="Tried to allocate [0-9.]+ GiB", verdict="give_up_fatal", exception="OutOfMemoryError")
    clf = Classifier(build_rules([spec]))
    assert judge_lines(crash("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"), clf).verdict is V.GIVE_UP_FATAL
    assert judge_lines(crash("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB"), clf).verdict is V.RESTART


@pytest.mark.parametrize(
    "final",
    [
        "AttributeError: 'GRPOConfig' object has no attribute 'top_p'",
        "AttributeError: module 'hivemind' has no attribute 'get_dht_time'",
        "TypeError: __init__() got an unexpected keyword argument 'use_vllm'",
        "hydra.errors.InstantiationException: Error in call to target 'x.Trainer': AttributeError(\"'GRPOConfig' object has no attribute 'top_p'\")",
    ],
)
def test_api_of_another_package_version_is_fatal(clf: Classifier, final: str) -> None:
    judged = judge_lines(crash(final), clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.GIVE_UP_FATAL, "dependency_version_mismatch")


def test_native_abort_is_fatal(clf: Classifier) -> None:
    lines = ["free(): double free detected in tcache 2", "./run_rl_swarm.sh: line 221: 15150 Aborted                 (core dumped) python -m x"]
    assert judge_lines(lines, clf).verdict is V.GIVE_UP_FATAL


def test_retyped_traceback_that_reached_the_game_loop_restarts(clf: Classifier) -> None:
    """A reward error that escaped to genrl's run_game ends the game, unlike the same
    error caught by the submit wrapper (indentation lost in a retyped copy)."""
    lines = [
        'File "/x/genrl/game/game_manager.py", line 169, in run_game',
        "self.run_game_round() # Loops through stages",
        'File "/x/genrl/blockchain/connections.py", line 17, in send_via_api',
        "response.raise_for_status()",
        "requests. exceptions.HTTPError: 400 Client Error: Bad Request for url: http://localhost:3000/api/submit-reward",
        "Stack (most recent call last):",
        'File "<frozen runpy>", line 198, in _run_module_as_main',
    ]
    judged = judge_lines(lines, clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.RESTART, "game_loop_exception")


def test_login_wait_that_ends_in_the_launcher_shutting_down_is_fatal(clf: Classifier) -> None:
    lines = ["./run_rl_swarm.sh: line 101: open: command not found", ">> Shutting down trainer...", "Terminated"]
    assert judge_lines(lines, clf).verdict is V.GIVE_UP_FATAL
    assert judge_lines([lines[0], "Waiting for modal userData.json to be created..."], clf).verdict is V.OPERATOR_NEEDED


def test_a_frames_source_line_is_code_not_an_event(clf: Classifier) -> None:
    """`raise P2PDaemonError("Daemon failed to start ...")` in a frame is hivemind's source,
    printed in every traceback through that function; only the final exception counts."""
    an = LogAnalyzer(clf)
    lines = [
        "Traceback (most recent call last):",
        '  File "/x/hivemind/p2p/p2p_daemon.py", line 263, in _ping_daemon',
        '    raise P2PDaemonError(f"Daemon failed to start in {timeout} seconds")',
    ]
    assert [s for line in lines for s in an.feed(line)] == []
    final = an.feed("hivemind.p2p.p2p_daemon_bindings.utils.P2PDaemonError: Daemon failed to start in 15.0 seconds")
    assert [s.rule for s in final] == ["p2pd_startup_timeout"]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("UserWarning: NVIDIA GeForce RTX 5090 with CUDA capability sm_120 is not compatible with the current PyTorch installation.", "gpu_unsupported"),
        ("AssertionError: Torch not compiled with CUDA enabled", "gpu_unsupported"),
        ("OSError: [Errno 28] No space left on device: '/root/.cache/huggingface'", "disk_full"),
    ],
)
def test_host_mismatches_are_fatal_with_a_fix(clf: Classifier, line: str, kind: str) -> None:
    judged = judge_lines([line], clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.GIVE_UP_FATAL, kind)
    assert judged.deciding[0].fix


def test_lone_final_exception_line_is_judged_like_its_traceback(clf: Classifier) -> None:
    """A reporter kept only the last line: it still names the kind."""
    line = "ValueError: The global train batch size (1 x 1) must be evenly divisible by the number of generations per prompt (8)."
    judged = judge_lines([">> Good luck in the swarm!", line], clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.GIVE_UP_FATAL, "config_error")
    assert judge_lines(["FutureWarning: `x` is deprecated"], clf).verdict is None  # warnings are not crashes


def test_excerpt_ending_at_an_unanswered_prompt_needs_the_operator(clf: Classifier) -> None:
    prompt = ">> Would you like to push models you train in the RL swarm to the Hugging Face Hub? [y/N]"
    judged = judge_lines([">> Done!", prompt], clf)
    assert judged.verdict is V.OPERATOR_NEEDED
    assert "stdin_lines" in judged.deciding[0].fix
    assert judge_lines([prompt, ">> Using default model from config"], clf).verdict is not V.OPERATOR_NEEDED


def test_slow_wait_loop_escalates_by_time(clf: Classifier) -> None:
    """Two wait lines 130 s apart (fewer than the repeat count) are a loop by time."""
    an = LogAnalyzer(clf)
    first = an.feed("Waiting for API key to be activated...", 0.0)
    later = an.feed("Waiting for API key to be activated...", 130.0)
    assert [s.verdict for s in first] == [V.HEALTHY_IDLE]
    assert [s.verdict for s in later] == [V.HEALTHY_IDLE, V.OPERATOR_NEEDED]


@pytest.mark.parametrize(
    "line",
    [
        "RuntimeError: CUDA driver version is insufficient for CUDA runtime version",
        "ERROR: Package 'rl-swarm' requires a different Python: 3.9.6 not in '>=3.10'",
        "Error: Cannot find module 'next/dist/bin/next'",
    ],
)
def test_install_and_driver_mismatch_lines_are_fatal(clf: Classifier, line: str) -> None:
    assert judge_lines([line], clf).verdict is V.GIVE_UP_FATAL


def test_cut_traceback_inside_the_kv_cache_allocation_is_fatal(clf: Classifier) -> None:
    lines = [
        "[rank0]: Traceback (most recent call last):",
        '[rank0]:   File "/v/vllm/engine/llm_engine.py", line 276, in __init__',
        "[rank0]:     self._initialize_kv_caches()",
        '[rank0]:   File "/v/vllm/engine/llm_engine.py", line 434, in _initialize_kv_caches',
        "[rank0]:     self.model_executor.initialize_cache(num_gpu_blocks, num_cpu_blocks)",
    ]
    judged = judge_lines(lines, clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.GIVE_UP_FATAL, "vllm_kv_cache_oom")


def test_output_ending_on_a_traceback_header_is_a_crash_not_a_greeting(clf: Classifier) -> None:
    """Startup greetings, then the header of an escaping exception and nothing more:
    the greetings must not make the node look healthy."""
    lines = [
        "[2025-08-01 10:00:00,000][genrl.logging_utils.global_defs][INFO] - Using Model: Qwen/Qwen3-0.6B",
        "Aug 01 10:00:01.000 [INFO] Checking that identity from `/x/swarm.pem` is not used by other peers",
        "Traceback (most recent call last):",
    ]
    judged = judge_lines(lines, clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.RESTART, "uncaught_exception")
    an = LogAnalyzer(clf)
    for line in lines:
        an.feed(line)
    crash = an.crash_now()  # the child exited on that line: the exit context sees it
    assert crash is not None
    assert crash.verdict is V.RESTART


def test_exception_line_wrapped_in_markdown_backticks_is_still_judged(clf: Classifier) -> None:
    """No line rule knows this one: only the final-exception reading can judge it."""
    judged = judge_lines(["`TypeError: GRPOConfig.__init__() got an unexpected keyword argument 'vllm_mode'`"], clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.GIVE_UP_FATAL, "dependency_version_mismatch")
    assert "`" not in judged.deciding[0].line


@pytest.mark.parametrize(
    "final",
    [
        "RuntimeError: Triton only supports Linux",
        "OSError: flash-attn is not supported on macOS",
        "NotImplementedError: fork() does not support Windows",
    ],
)
def test_a_dependency_refusing_the_platform_is_fatal(clf: Classifier, final: str) -> None:
    judged = judge_lines(crash(final), clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.GIVE_UP_FATAL, "platform_unsupported")
    assert "WSL2" in judged.deciding[0].fix


def test_hub_refusing_the_model_is_fatal_but_an_unreachable_hub_is_not(clf: Classifier) -> None:
    gated = judge_lines(["OSError: You are trying to access a gated repo."], clf)
    assert (gated.verdict, gated.deciding[0].kind) == (V.GIVE_UP_FATAL, "hub_access_denied")
    offline = (
        "OSError: We couldn't connect to 'https://huggingface.co' to load this file, couldn't find it in the "
        "cached files and it looks like Gensyn/Qwen2.5-0.5B-Instruct is not the path to a directory containing "
        "a file named config.json."
    )
    assert judge_lines([offline], clf).verdict is V.RESTART


def building(final: str, *inner: str) -> list[str]:
    """A traceback from the program's entry into a constructor, then `inner` frames."""
    return [
        "Traceback (most recent call last):",
        '  File "/v/lib/python3.11/runpy.py", line 198, in _run_module_as_main',
        '  File "/v/site-packages/hivemind/hivemind_cli/run_server.py", line 104, in main',
        "    server = Server.create(**args)",
        '  File "/v/site-packages/hivemind/moe/server/server.py", line 120, in __init__',
        "    self.dht = DHT(initial_peers=initial_peers, start=True)",
        *inner,
        final,
    ]


def test_program_error_while_the_node_is_built_is_fatal(clf: Classifier) -> None:
    """Raised on the way from the entry point into a constructor, with no round, step
    or game frame: the next start builds the same node from the same arguments."""
    judged = judge_lines(building("ValueError: invalid multiaddr '/ip4/1.2.3.4/tcp/x'"), clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.GIVE_UP_FATAL, "startup_error")
    assert judged.deciding[0].fix


def test_same_error_under_the_work_loop_or_from_the_network_still_restarts(clf: Classifier) -> None:
    in_loop = building(
        "ValueError: invalid multiaddr '/ip4/1.2.3.4/tcp/x'",
        '  File "/v/site-packages/genrl/game/game_manager.py", line 169, in run_game_round',
        "    self.trainer.train(self.state)",
    )
    assert judge_lines(in_loop, clf).verdict is V.RESTART
    rejoining = building(
        "ValueError: invalid multiaddr '/ip4/1.2.3.4/tcp/x'",
        '  File "/v/trainer/node.py", line 290, in _maybe_reconnect',
        "    self.dht = make_dht(self.settings)",
    )
    assert judge_lines(rejoining, clf).verdict is V.RESTART  # a running node re-building its DHT
    refused = building("ConnectionRefusedError: [Errno 111] Connection refused")
    assert judge_lines(refused, clf).deciding[0].kind == "network_error"
    assert judge_lines(building("RuntimeError: peer went away"), clf).verdict is V.RESTART


def test_login_servers_failing_api_key_routes_need_the_operator(clf: Classifier) -> None:
    judged = judge_lines([" GET /api/get-api-key-status?orgId=0f1e 500 in 41ms"], clf)
    assert (judged.verdict, judged.deciding[0].kind) == (V.OPERATOR_NEEDED, "login_server_error")
    assert judged.deciding[0].fix
    assert judge_lines([" POST /api/submit-reward 500 in 2143ms"], clf).verdict is V.TRANSIENT_IGNORE


def test_javascript_errors_in_the_shared_terminal_are_not_the_trainers_crash(clf: Classifier) -> None:
    assert judge_lines(["TypeError: Cannot read properties of null (reading 'orgId')"], clf).verdict is None
    assert judge_lines(["ReferenceError: window is not defined"], clf).verdict is None
    python = judge_lines(["TypeError: 'NoneType' object is not subscriptable"], clf)
    assert python.verdict is V.RESTART


def test_a_finalizer_error_python_ignored_is_not_a_crash(clf: Classifier) -> None:
    """`Exception ignored in: <... __del__ ...>` is Python saying it swallowed the error;
    the same block without that intro escaped and is a crash."""
    block = [
        "Traceback (most recent call last):",
        '  File "/venv/lib/python3.11/site-packages/torch/utils/data/dataloader.py", line 1479, in __del__',
        "    self._shutdown_workers()",
        "AttributeError: 'NoneType' object has no attribute 'python_exit_status'",
    ]
    intro = "Exception ignored in: <function _MultiProcessingDataLoaderIter.__del__ at 0x7f3a2c1e5a60>"
    assert judge_lines([intro, *block], clf).verdict is V.TRANSIENT_IGNORE
    assert judge_lines(block, clf).verdict is V.RESTART

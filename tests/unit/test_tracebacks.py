"""Traceback blocks: assembled whole from a line stream, final exception extracted."""

from __future__ import annotations

import pytest

from swarmd.tracebacks import Traceback, TracebackAssembler


def assemble(lines: list[str]) -> list[Traceback]:
    asm = TracebackAssembler()
    out = [tb for tb in map(asm.feed, lines) if tb is not None]
    last = asm.flush()
    return out + ([last] if last is not None else [])


PY310 = [
    "Traceback (most recent call last):",
    '  File "/usr/lib/python3.10/runpy.py", line 196, in _run_module_as_main',
    "    return _run_code(code, main_globals, None,",
    '  File "/home/u/rl-swarm/hivemind_exp/gsm8k/train_single_gpu.py", line 44, in <module>',
    "    main()",
    "ModuleNotFoundError: No module named 'trl'",
]

PY312_CARETS = [
    "Traceback (most recent call last):",
    '  File "/x/debug_utils.py", line 26, in print_system_info',
    '    print(f"  Max Frequency: {cpu_freq.max:.2f} Mhz")',
    "                              ^^^^^^^^^^^^",
    '  File "/x/data.py", line 297, in transplant_trees',
    "    for batch_id in swarm_states[agent]:",
    "                    ~~~~~~~~~~~~^^^^^^^",
    "AttributeError: 'NoneType' object has no attribute 'max'",
]


@pytest.mark.parametrize("lines", [PY310, PY312_CARETS], ids=["3.10-no-carets", "3.12-carets"])
def test_final_exception_is_extracted_with_or_without_carets(lines: list[str]) -> None:
    [tb] = assemble([*lines, ">> Shutting down trainer..."])
    assert tb.final_line == lines[-1]
    assert tb.lines == tuple(lines)
    assert not tb.caught


def test_chained_traceback_reports_the_last_exception() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "a.py", line 1, in f',
        "KeyError: 'x'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        '  File "a.py", line 3, in g',
        "RuntimeError: DHTNode bootstrap failed: none of the initial_peers responded to a ping.",
    ]
    [tb] = assemble(lines)
    assert (tb.short_type, tb.chained) == ("RuntimeError", 1)
    assert tb.message.startswith("DHTNode bootstrap failed")


def test_direct_cause_chain_is_one_block() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "a.py", line 1, in f',
        "OSError: [Errno 98] Address already in use",
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "Traceback (most recent call last):",
        '  File "b.py", line 2, in g',
        "hivemind.p2p.p2p_daemon_bindings.control.P2PDaemonError: Daemon failed to start in 15.0 seconds",
    ]
    [tb] = assemble(lines)
    assert tb.exc_type == "hivemind.p2p.p2p_daemon_bindings.control.P2PDaemonError"


def test_rank_prefixed_frames_are_one_block() -> None:
    lines = [
        "[rank0]: Traceback (most recent call last):",
        '[rank0]:   File "/v/vllm/worker.py", line 1028, in load',
        "[rank0]:     llm = LLM(**engine_args)",
        "[rank0]:           ^^^^^^^^^^^^^^^^^^",
        "[rank0]: ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`.",
    ]
    [tb] = assemble(lines)
    assert tb.short_type == "ValueError"
    assert "cache blocks" in tb.message


def test_hydra_error_executing_job_with_wrapped_cause() -> None:
    lines = [
        "Error executing job with overrides: []",
        "hydra.errors.InstantiationException: Error in call to target 'genrl.communication.hivemind.HivemindBackend':",
        "P2PDaemonError('Daemon failed to start in 15.0 seconds')",
        "full_key: game_manager.communication",
        "",
        "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.",
        ">> Shutting down trainer...",
    ]
    [tb] = assemble(lines)
    assert tb.short_type == "InstantiationException"
    assert "P2PDaemonError('Daemon failed to start" in tb.message


def test_logger_stack_after_the_exception_keeps_the_exception() -> None:
    """A logger's stack_info (`Stack (most recent call last):`) follows the exception it
    logs; the block's exception is still that one, not the last frame."""
    lines = [
        '  File "/x/data.py", line 297, in transplant_trees',
        "    for batch_id in swarm_states[agent]:",
        "TypeError: 'NoneType' object is not iterable",
        "Stack (most recent call last):",
        '  File "<frozen runpy>", line 198, in _run_module_as_main',
        '  File "/x/swarm_launcher.py", line 29, in <module>',
        "    main()",
        "[2025-08-01 02:47:31,433][genrl.logging_utils.global_defs][INFO] - Joining round: 5",
    ]
    [tb] = assemble(lines)
    assert tb.final_line == "TypeError: 'NoneType' object is not iterable"
    assert tb.chained == 1


def test_garbled_header_still_opens_a_block() -> None:
    [tb] = assemble([" eback (most recent call last):", '  File "a.py", line 1, in f', "EOFError: Ran out of input"])
    assert tb.short_type == "EOFError"


def test_soft_wrapped_frame_does_not_end_the_block() -> None:
    lines = [
        "Traceback (most recent call last):",
        '  File "/home/user/rl-swarm/.venv/lib/python3.12/site-packages/genrl/communication/hivemind/hivemind_b',
        'ackend.py", line 80, in __init__',
        "    self.dht = DHT(start=True, **kwargs)",
        "FileNotFoundError: [Errno 2] No such file or directory: '/x/hivemind_cli/p2pd'",
    ]
    [tb] = assemble(lines)
    assert tb.short_type == "FileNotFoundError"


@pytest.mark.parametrize(
    "before",
    [
        "Jul 19 09:22:42.251 [WARN] [petals.server.reachability._serve_with_probe:148] Reachability check failed",
        "[2025-07-27 16:27:55,431][genrl.logging_utils.global_defs][WARNING] - Could not reach peer",
        "WARNING:hivemind_exp.runner:probe failed",
        "Failed to load state from peers: list index out of range, retrying ...",
    ],
)
def test_warn_level_or_retrying_record_marks_the_block_caught(before: str) -> None:
    [tb] = assemble([before, "Traceback (most recent call last):", '  File "a.py", line 1', "ConnectionRefusedError: x"])
    assert tb.caught


def test_uncaught_after_an_info_line_is_not_caught() -> None:
    info = "May 16 01:28:00.176 [INFO] Checking that identity from `/x/swarm.pem` is not used by other peers"
    [tb] = assemble([info, "Traceback (most recent call last):", '  File "a.py", line 1', "RuntimeError: boom"])
    assert not tb.caught


def test_cut_excerpt_gives_a_block_without_exception() -> None:
    [tb] = assemble(["Traceback (most recent call last):", '  File "a.py", line 1, in f', "    f()"])
    assert tb.exc_type == ""
    assert "cut" in tb.final_line


def test_output_ending_on_a_lone_header_is_a_cut_crash_but_a_header_followed_by_a_log_line_is_not() -> None:
    """Python prints the header only while an exception escapes: at the end of the
    output it is a crash whose frames are missing. Mid-stream, a header that a log
    record follows at once is another writer's interleaving, not a block."""
    [tb] = assemble(["[INFO] - Using Model: Qwen/Qwen3-0.6B", "Traceback (most recent call last):"])
    assert (tb.exc_type, tb.lines) == ("", ("Traceback (most recent call last):",))
    assert assemble(["Traceback (most recent call last):", "INFO:root:still running", "INFO:root:more"]) == []
    asm = TracebackAssembler()
    asm.feed("Error executing job with overrides: []")
    assert asm.peek() is not None  # the writer exited right after hydra's own line


def test_markdown_backticks_around_an_exception_line_are_not_part_of_it() -> None:
    [tb] = assemble(['Traceback (most recent call last):', '  File "s.py", line 9, in __init__', "`KeyError: 'model_name'`"])
    assert (tb.short_type, tb.message) == ("KeyError", "'model_name'")


def test_line_after_block_is_not_swallowed_and_may_open_the_next() -> None:
    asm = TracebackAssembler()
    for line in PY310:
        assert asm.feed(line) is None
    assert asm.feed("") is None  # a blank line may precede a chained block
    first = asm.feed("Traceback (most recent call last): ")
    assert first is None  # ... and a header right after it is a chained one
    assert asm.feed('  File "b.py", line 2, in g') is None
    assert asm.feed("ValueError: second") is None
    first = asm.feed("INFO:root:a log line closes the block")
    assert first is not None
    assert asm.feed("Traceback (most recent call last):") is None
    assert (first.short_type, first.chained) == ("ValueError", 1)
    assert asm.in_block


def test_assembly_carries_no_history_between_blocks() -> None:
    """O(lines), shown without a stopwatch: whatever came before, each block the
    assembler hands out holds only its own lines, so the work per line never grows
    with the log's history (and `test_huge_block_is_bounded` caps one block)."""
    asm = TracebackAssembler()
    blocks = []
    for _ in range(2000):
        for line in ["INFO noise line that says nothing", *PY312_CARETS]:
            tb = asm.feed(line)
            if tb is not None:
                blocks.append(tb)
    assert len(blocks) == 1999  # each block is closed by the next noise line
    assert all(tb.lines == blocks[0].lines for tb in blocks)
    assert len(blocks[0].lines) <= len(PY312_CARETS)


def test_huge_block_is_bounded() -> None:
    lines = ["Traceback (most recent call last):"] + ['  File "r.py", line 1, in f'] * 10_000 + ["RecursionError: x"]
    [tb] = assemble(lines)
    assert len(tb.lines) <= 400
    assert tb.short_type == "RecursionError"


@pytest.mark.parametrize(
    "intro",
    [
        "Exception ignored in: <function _MultiProcessingDataLoaderIter.__del__ at 0x7f3a2c1e5a60>",
        "Exception ignored on calling ctypes callback function: <function cb at 0x7f00>",
        "Error in atexit._run_exitfuncs:",
    ],
)
def test_an_exception_python_reports_as_ignored_is_caught(intro: str) -> None:
    """Python prints finalizer and atexit errors itself and carries on (the unraisable
    hook): the traceback after its own intro line did not interrupt the program."""
    block = [
        "Traceback (most recent call last):",
        '  File "/usr/lib/python3.11/multiprocessing/util.py", line 224, in __call__',
        "AssertionError: can only test a child process",
    ]
    [tb] = assemble([intro, *block])
    assert tb.caught
    [tb] = assemble(["INFO:root:shutting down", *block])
    assert not tb.caught

"""The built-in rule table: what each known cause
looks like, which verdict and kind it gives, and which kinds count as progress.

A rule names one known cause, matches anywhere in the line (never anchored at the start),
and the first rule that matches decides (the engine that applies them is `classify`).

Order of the built-in rules (first match wins): the trainer's own wait lines, then
faults from the most severe verdict down (so `P2PDaemonError: p2pd binary not found`
is fatal before the generic `P2PDaemonError` restart rule sees it), then transient
reward-submission noise, then progress. User rules from `monitor.toml` `[[rules]]` come
before all built-ins; a user rule named like a built-in replaces it (and moves to the
front with the other user rules), and `enabled = false` removes it (`user_rules`).

Named groups a pattern may use, built-in or user (anything unparsable is dropped):
`round`, `stage` (ints), `step_seconds` (seconds per step), `its` (steps per second,
turned into `step_seconds`), `wait_seconds` (the trainer's own back-off).

Kinds the built-ins emit (the policy may key on them; `OOM_KINDS` lists the memory ones,
`NOT_PROGRESS_KINDS` those that prove no training):
progress: round_wait, round, step; alive but not progress: startup, operator_wait, prompt;
noise: reward_submit, caught_exception, asyncio_noise, p2pd_warning, dht_retry,
dht_reconnect; DHT: dht_rpc_error, dht_bootstrap_warning, p2pd_startup_timeout,
p2pd_bootstrap_unreachable, p2pd_error, dht_bootstrap_failed, dht_child_crash,
dht_get_none, p2pd_stale, address_in_use; memory: cuda_oom, mps_oom, os_oom_killed
(a shell's `Killed`: SIGKILL, not proof of OOM), kernel_oom (the kernel's own record);
crashes: accelerate_current_batch, train_loop_exception, trainer_exited,
testnet_rpc_unreachable, download_failed; fatal: auth_signature, vllm_kv_cache_oom,
dependency_missing, identity_taken, config_error, gpu_unsupported, gpu_dtype_unsupported,
binary_incompatible, native_crash, launcher_script_error, network_config,
hub_access_denied, disk_full, login_browser_unavailable; login_server_error needs the
operator. Whole tracebacks are judged in `analyze` (kinds from `taxonomy`).

Lines OUR trainer (`trainer/node.py`) should print so the built-ins understand it
(the upstream hivemind_exp / genrl wording, so one rule set serves both):

    🐱 Hello 🐈 [<three word name>] 🦮 [<peer id>]!            -> startup
    🐝 Joining round: <R> starting at stage: <S>               -> round (round, stage)
    📈 Training round: <R> stage: <S>                          -> round (round, stage)
    <desc>: 45%|████▌     | 9/20 [01:23<01:41,  9.20s/it]     -> step (step_seconds)
        (plain tqdm; `it/s` works too; `\\r` frames are fine)
    {'loss': 0.01, 'reward': 0.5, ...}                          -> step (metrics dict)
    📉 Finished training round: <R> stage: <S>                 -> round
    Already finished round: <R>. Next check in <W>s.           -> round_wait (wait_seconds)
    Could not fetch round and stage: <error>. Next check in <W>s.  -> round_wait
    Failed to submit reward for round <R>: <error>             -> reward_submit (ignored)

Faults need no special wording: hivemind's own exceptions (P2PDaemonError, DHTNode
bootstrap failed, ...) and torch's OOM errors are matched as they are.

Each built-in rule carries a few lower-case tokens, one of which must occur in any line
it matches (`tokens_of`): the classifier tries a rule only when one of its tokens occurs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from swarmd.domain import Signal, Verdict

__all__ = [
    "NOT_PROGRESS_KINDS",
    "OOM_KINDS",
    "Rule",
    "default_rules",
    "is_progress",
    "tokens_of",
]

OOM_KINDS = frozenset({"cuda_oom", "mps_oom", "os_oom_killed", "kernel_oom", "vllm_kv_cache_oom"})
# Signals that say the node is alive but prove no training: never READY, never reset
# the stall clock (a node can greet, load and map data for ever without training).
NOT_PROGRESS_KINDS = frozenset({"startup", "operator_wait", "prompt"})


def is_progress(sig: Signal) -> bool:
    """Real progress (a round joined or advanced, a training step, a reward, or the
    trainer's own announced round wait), as READY, /health and stall detection need."""
    return sig.verdict in (Verdict.HEALTHY_PROGRESS, Verdict.HEALTHY_IDLE) and sig.kind not in NOT_PROGRESS_KINDS


@dataclass(frozen=True, slots=True)
class Rule:
    """One known cause: a regex searched anywhere in the cleaned line."""

    name: str
    pattern: re.Pattern[str]
    verdict: Verdict
    kind: str
    # Set: the rule judges a traceback whose final exception has this type (short or
    # dotted name), its pattern (if any) searched in that final line; it never
    # matches a line on its own.
    exception: str = ""

    def matches_exception(self, exc_type: str, final_line: str) -> bool:
        if not self.exception or not exc_type:
            return False
        want = self.exception
        if exc_type != want and exc_type.rsplit(".", 1)[-1] != want and not exc_type.endswith("." + want):
            return False
        return self.pattern.pattern == "" or self.pattern.search(final_line) is not None


# (name, pattern, verdict, kind, tokens). Tokens are lower-case substrings of which at
# least one occurs in every line the pattern matches (a test checks this holds).
_NUM = r"\d+(?:\.\d+)?"
_INT = r"\d+"
_V = Verdict
# fmt: off
_BUILTINS: tuple[tuple[str, str, Verdict, str, tuple[str, ...]], ...] = (
    # --- the trainer's own wait loop: before the faults, because the `<error>` it
    # quotes is already handled by the loop (it retries), whatever it says.
    ("already_finished_round",
     rf"Already finished round:?\s*(?P<round>{_INT})\b(?:.{{0,200}}?Next check in\s*(?P<wait_seconds>{_NUM})\s*s)?",
     _V.HEALTHY_IDLE, "round_wait", ("already finished round",)),
    # Our trainer's own DHT recovery (trainer/dht.py): it retries and reconnects in
    # place by itself, so these are noted, not acted on; only the error after the last
    # retry (hivemind's own exception) is a fault.
    ("dht_start_retry",
     rf"DHT start attempt {_INT}/{_INT} failed\b.{{0,2000}}?retrying in",
     _V.TRANSIENT_IGNORE, "dht_retry", ("dht start attempt",)),
    ("dht_reconnect_in_place",
     r"Reconnecting DHT in place|reconnecting the DHT in place|\bDHT reconnected\b",
     _V.TRANSIENT_IGNORE, "dht_reconnect", ("reconnecting dht", "reconnecting the dht", "dht reconnected")),
    ("round_fetch_retry",
     rf"Could not fetch round and stage\b.{{0,2000}}?Next check in\s*(?P<wait_seconds>{_NUM})\s*s",
     _V.HEALTHY_IDLE, "round_wait", ("could not fetch round",)),
    # --- give up: operator action needed; a restart would fail the same way.
    ("auth_signature_error", r"\bAA24 signature error",
     _V.GIVE_UP_FATAL, "auth_signature", ("aa24",)),
    ("vllm_kv_cache_oom",
     r"_initialize_kv_caches|_allocate_kv_cache|No available memory for the cache blocks"
     r"|larger than the maximum number of tokens that can be stored in KV cache",
     _V.GIVE_UP_FATAL, "vllm_kv_cache_oom", ("kv_cache", "cache blocks", "kv cache")),
    ("p2pd_identity_taken", r"is already taken by another peer",
     _V.GIVE_UP_FATAL, "identity_taken", ("already taken",)),
    # The launcher cannot open a browser for the login page: a person must open it.
    ("browser_opener_missing",
     r"\b(?:xdg-open|open|sensible-browser|x-www-browser|gnome-open|wslview): (?:command )?not found",
     _V.HEALTHY_IDLE, "operator_wait", ("not found",)),
    ("command_not_found", r"\bcommand not found\b",
     _V.GIVE_UP_FATAL, "dependency_missing", ("command not found",)),
    ("argument_error",
     r"\S: error: (?:unrecognized arguments|the following arguments are required|argument \S+: )",
     _V.GIVE_UP_FATAL, "config_error", (": error: ",)),
    ("gpu_no_kernel_image", r"no kernel image is available for execution on the device",
     _V.GIVE_UP_FATAL, "gpu_unsupported", ("kernel image",)),
    ("gpu_bf16_unsupported",
     r"(?=.*(?:GPU|gpu|CUDA|cuda|[Cc]ompute [Cc]apability|setup))"
     r"(?i:(?:bf16|bfloat16)\b.{0,160}?(?:not supported|only supported|does(?:n't| not) support|unsupported)"
     r"|(?:does(?:n't| not) support|unsupported).{0,60}?(?:bf16|bfloat16))",
     _V.GIVE_UP_FATAL, "gpu_dtype_unsupported", ("bf16", "bfloat16")),
    ("gpu_capability_unsupported",
     r"(?i:with CUDA capability sm_\d+ is not compatible with the current PyTorch installation"
     r"|compute capability .{0,80}?(?:is not supported|not compatible|requires at least|is too (?:low|old))"
     r"|Torch not compiled with CUDA enabled)",
     _V.GIVE_UP_FATAL, "gpu_unsupported", ("capability", "not compiled with cuda")),
    ("gpu_driver",
     r"CUDA driver version is insufficient|Found no NVIDIA driver|NVIDIA driver on your system is too old"
     r"|no CUDA-capable device is detected",
     _V.GIVE_UP_FATAL, "gpu_unsupported", ("driver", "cuda-capable")),
    ("python_version_unsupported",
     r"requires a different Python: |Python \d\.\d+(?:\.\d+)? is not supported|requires Python (?:>=|version )",
     _V.GIVE_UP_FATAL, "dependency_missing", ("different python", "is not supported", "requires python")),
    ("node_module_missing", r"Error: Cannot find module '",
     _V.GIVE_UP_FATAL, "dependency_missing", ("cannot find module",)),
    ("disk_full", r"No space left on device|\bENOSPC\b",
     _V.GIVE_UP_FATAL, "disk_full", ("no space left", "enospc")),
    ("binary_incompatible", r"cannot execute binary file|\bExec format error\b",
     _V.GIVE_UP_FATAL, "binary_incompatible", ("execute binary", "exec format")),
    ("cuda_setup_failed",
     r"CUDA SETUP: (?:CUDA detection failed|Required library version not found)"
     r"|CUDA Setup failed despite GPU being available",
     _V.GIVE_UP_FATAL, "gpu_unsupported", ("cuda setup",)),
    ("unreachable_from_internet",
     r"is not reachable from the Internet|fix your port forwarding",
     _V.GIVE_UP_FATAL, "network_config", ("not reachable from the internet", "port forwarding")),
    ("hub_token_missing",
     r"hugging ?face token was not found|(?:HF|Hugging ?Face) token (?:is )?(?:invalid|not valid|required)",
     _V.GIVE_UP_FATAL, "hub_access_denied", ("token",)),
    # glibc/C-extension aborts: memory corruption in a native library, the same at every start.
    ("native_abort",
     r"\bAborted\s+\(core dumped\)|double free detected|free\(\): invalid pointer|corrupted size vs\. prev_size",
     _V.GIVE_UP_FATAL, "native_crash", ("aborted", "double free", "free(): invalid", "corrupted size")),
    # The launcher script itself references a file that is not there.
    ("launcher_script_missing_file", r"^\S+\.sh: line \d+: [^:]{1,300}: No such file or directory",
     _V.GIVE_UP_FATAL, "launcher_script_error", ("no such file",)),
    ("p2pd_binary_missing", r"p2pd binary not found",
     _V.GIVE_UP_FATAL, "dependency_missing", ("p2pd binary",)),
    ("backend_file_missing",
     r"FileNotFoundError\(2, 'No such file or directory'\)"
     r"|FileNotFoundError: \[Errno 2\] No such file or directory: '[^']*p2pd'",
     _V.GIVE_UP_FATAL, "dependency_missing", ("filenotfounderror",)),
    ("import_error", r"\b(?:ModuleNotFoundError|ImportError): \S",
     _V.GIVE_UP_FATAL, "dependency_missing", ("modulenotfounderror", "importerror")),
    ("login_browser_unavailable", r"xdg-open: no method available for opening",
     _V.GIVE_UP_FATAL, "login_browser_unavailable", ("xdg-open",)),
    # --- restart after cleanup: something of the old run (p2pd, its sockets, the
    # port) is still there and would make the next start fail the same way.
    ("p2pd_stale_socket", r"Failed to connect to UNIX socket at\b",
     _V.RESTART_AFTER_CLEANUP, "p2pd_stale", ("unix socket",)),
    ("address_in_use", r"(?i:address already in use)|\bEADDRINUSE\b",
     _V.RESTART_AFTER_CLEANUP, "address_in_use", ("already in use", "eaddrinuse")),
    # The kernel's own OOM-killer records (journald/dmesg lines pasted into a log, or
    # fed by `kernel_log`): memory really ran out.
    ("kernel_oom",
     r"invoked oom-killer|Out of memory: Kill(?:ed)? process|\boom-kill:|Memory cgroup out of memory",
     _V.RESTART_AFTER_CLEANUP, "kernel_oom", ("oom-kill", "out of memory")),
    # The task table the OOM killer prints before it picks a victim.
    ("kernel_oom_task_table",
     r"^\[\s*\d+\.\d+\] (?:\[\s*\d+\](?:\s+-?\d+){8,9}\s+\S|\s*oom_kill_process\+0x"
     r"|Tasks state \(memory values in pages\))",
     _V.RESTART_AFTER_CLEANUP, "kernel_oom", ("] [", "oom_kill_process", "tasks state")),
    ("os_oom_killed",
     # bash job-control lines ("./run_rl_swarm.sh: line 266: 33498 Killed: 9  python")
     # and the bare forms; never anchored, since they follow tqdm bars on one line.
     r"\b\d+\s+Killed(?::\s*9)?(?:\s|$)|\[\d+\][+-]?\s+Killed\b|^\s*Killed(?::\s*9)?\s*$"
     r"|(?:s/it|it/s)\]\s*Killed\b|\bzsh: killed\s",
     _V.RESTART_AFTER_CLEANUP, "os_oom_killed", ("killed",)),
    # --- restart: the trainer died or its DHT cannot be used again in place.
    ("download_failed",
     r"git clone .{0,600}? did not run successfully|\bCould not fetch URL\b"
     r"|We couldn't connect to 'https://huggingface\.co'",
     _V.RESTART, "download_failed", ("did not run successfully", "could not fetch url", "couldn't connect")),
    ("p2pd_startup_timeout", rf"Daemon failed to start in {_NUM} seconds",
     _V.RESTART, "p2pd_startup_timeout", ("daemon failed",)),
    ("p2pd_bootstrap_unreachable",
     r"Daemon failed to start:.{0,300}failed to connect to bootstrap peers",
     _V.RESTART, "p2pd_bootstrap_unreachable", ("daemon failed",)),
    ("p2pd_daemon_error", r"\bP2PDaemonError\b|Daemon failed to start\b",
     _V.RESTART, "p2pd_error", ("p2pdaemonerror", "daemon failed")),
    # hivemind with ensure_bootstrap_success=False only warns and runs alone: re-join.
    ("dht_bootstrap_warning",
     r"\[WARN(?:ING)?\].{0,300}?(?:DHTNode bootstrap failed|none of the initial_peers responded)",
     _V.RECONNECT_DHT, "dht_bootstrap_warning", ("bootstrap failed", "initial_peers")),
    ("dht_bootstrap_failed", r"DHTNode bootstrap failed",
     _V.RESTART, "dht_bootstrap_failed", ("bootstrap failed",)),
    ("dht_child_error", r"\[hivemind\.dht\.dht\._run:\d+\]",
     _V.RESTART, "dht_child_crash", ("dht._run:",)),
    ("dht_pipe_blocking", r"\bBlockingIOError: \[Errno 11\]",
     _V.RESTART, "dht_child_crash", ("blockingioerror",)),
    ("dht_pipe_eof", r"\bEOFError: Ran out of input|^\s*EOFError\s*$",
     _V.RESTART, "dht_child_crash", ("eoferror",)),
    ("dht_process_died", r"\bProcess DHT-\d+:",
     _V.RESTART, "dht_child_crash", ("process dht-",)),
    ("dht_get_none", r"cannot unpack non-iterable NoneType object",
     _V.RESTART, "dht_get_none", ("nonetype",)),
    ("cuda_oom", r"\bOutOfMemoryError\b|CUDA out of memory",
     _V.RESTART, "cuda_oom", ("outofmemoryerror", "out of memory")),
    ("mps_oom", r"MPS backend out of memory",
     _V.RESTART, "mps_oom", ("out of memory",)),
    ("accelerate_current_batch",
     r"local variable 'current_batch' (?:where it is not associated|referenced before)",
     _V.RESTART, "accelerate_current_batch", ("current_batch",)),
    # The upstream launcher's own line after its trainer died: a restart, unless the
    # cause before it (most severe wins) says more.
    ("launcher_error_detected", r">> An error was detected while running",
     _V.RESTART, "trainer_exited", ("error was detected",)),
    ("train_loop_exception",
     r"Encountered error during training!|\bException during training\b"
     r"|Exception occurred during game run",
     _V.RESTART, "train_loop_exception", ("during training", "during game run")),
    ("testnet_rpc_unreachable", r"Failed to connect to Gensyn Testnet",
     _V.RESTART, "testnet_rpc_unreachable", ("failed to connect to gensyn",)),
    # --- reconnect: hivemind caught it and the DHT process still runs.
    ("dht_coroutine_error", r"Caught an exception when running a coroutine",
     _V.RECONNECT_DHT, "dht_rpc_error", ("coroutine",)),
    # --- transient: reward submission fails and the node carries on (the genrl
    # banner says so itself); the policy counts these.
    # A library that says at WARN level it caught something and goes on.
    ("warn_caught_retry",
     r"\[WARN(?:ING)?\].{0,300}?(?:[Cc]aught (?:an )?exception|[Rr]etrying\b|will retry)",
     _V.TRANSIENT_IGNORE, "caught_exception", ("caught", "retr")),
    # asyncio's complaints about tasks of a loop that goes on (or is shutting down).
    ("asyncio_noise",
     r"Task was destroyed but it is pending|(?:Task|Future) exception was never retrieved|Event loop is closed",
     _V.TRANSIENT_IGNORE, "asyncio_noise", ("task was destroyed", "never retrieved", "event loop is closed")),
    # hivemind's p2pd client warns about a daemon reply it did not expect and goes on.
    ("p2pd_control_warning",
     r"\[WARN(?:ING)?\]\s?\[[\w.]*p2p_daemon_bindings[\w.]*:\d+\].{0,200}?(?:unexpected response|daemonError)",
     _V.TRANSIENT_IGNORE, "p2pd_warning", ("p2p_daemon_bindings",)),
    ("reward_submit_banner", r"most likely transient and will recover",
     _V.TRANSIENT_IGNORE, "reward_submit", ("transient",)),
    ("reward_submit_failed", r"Failed to submit (?:to chain|reward)",
     _V.TRANSIENT_IGNORE, "reward_submit", ("failed to submit",)),
    ("reward_submit_http",
     r"Error: .{0,300}for url: \S{0,300}/api/submit-reward|POST /api/submit-reward [45]\d\d\b",
     _V.TRANSIENT_IGNORE, "reward_submit", ("submit-reward",)),
    ("execution_reverted", r"\bexecution reverted\b",
     _V.TRANSIENT_IGNORE, "reward_submit", ("reverted",)),
    ("peer_already_registered", r"\bPeerIdAlreadyRegistered\b",
     _V.TRANSIENT_IGNORE, "reward_submit", ("peeridalreadyregistered",)),
    ("invalid_round_number", r"\bInvalidRoundNumber\b",
     _V.TRANSIENT_IGNORE, "reward_submit", ("invalidroundnumber",)),
    # --- progress: round/stage lines (hivemind_exp, genrl, our trainer).
    ("round_join",
     rf"Joining round:\s*(?P<round>{_INT})(?:\s+starting at stage:\s*(?P<stage>{_INT}))?",
     _V.HEALTHY_PROGRESS, "round", ("joining round",)),
    ("round_training", rf"Training round:\s*(?P<round>{_INT})\s+stage:\s*(?P<stage>{_INT})",
     _V.HEALTHY_PROGRESS, "round", ("training round",)),
    ("round_finished",
     rf"Finished training round:\s*(?P<round>{_INT})\s+stage:\s*(?P<stage>{_INT})",
     _V.HEALTHY_PROGRESS, "round", ("training round",)),
    ("round_start", rf"Starting round:\s*(?P<round>{_INT})(?:/\d+)?",
     _V.HEALTHY_PROGRESS, "round", ("starting round",)),
    ("winners_submitted", rf"Submitting winners for round\s*(?P<round>{_INT})",
     _V.HEALTHY_PROGRESS, "round", ("submitting winners",)),
    ("training_start", r"Starting training \S+ \S+ for [\d.]+ epochs",
     _V.HEALTHY_PROGRESS, "round", ("starting training",)),
    # Loading, mapping and downloading bars are startup, not training steps: a node can
    # print `Map:` bars every round while it trains alone or not at all.
    ("loading_bar",
     r"(?:Loading (?:checkpoint shards|weights|dataset shards)|\bMap(?: \(num_proc=\d+\))?|\bFilter"
     r"|Generating \w+ split|Download\w*[^:|]{0,80}|Fetching \d+ files|Resolving data files|Saving the dataset[^:|]{0,80}"
     r"|[\w.-]{1,200}\.(?:safetensors|bin|json|model|txt|py|gguf|parquet|arrow|jsonl|msgpack|h5|pt))"
     r":\s{0,4}\d{1,3}%\|"
     r"|\d{1,3}%\|[^|]{0,1000}\|[^\[]{0,200}\[[^\]]{0,200}?(?:[kMGT]?i?B/s|examples/s)\]",
     _V.HEALTHY_PROGRESS, "startup", ("%|",)),
    # tqdm: "75%|███▊ | 15/20 [1:58:20<48:37, 583.49s/it]"; the rate is optional
    # (`?it/s`, `examples/s`, `MB/s` give no step time).
    ("tqdm_progress",
     rf"\d{{1,3}}%\|[^|]{{0,1000}}\|[^\[]{{0,200}}\[[^\]]{{0,200}}?(?:(?<![\d.])(?:(?P<step_seconds>{_NUM})s/it"
     rf"|(?P<its>{_NUM})it/s))?\]",
     _V.HEALTHY_PROGRESS, "step", ("%|",)),
    # tqdm without a total ("loss = 2.080: 303it [00:02, 114.72it/s]").
    ("tqdm_count",
     rf"\b\d+it \[[\d:]+(?:<[^,\]]*)?,\s*(?:(?P<its>{_NUM})it/s|(?P<step_seconds>{_NUM})s/it)\]",
     _V.HEALTHY_PROGRESS, "step", ("it [",)),
    ("train_metrics", r"\{'(?:loss|train_runtime)': ",
     _V.HEALTHY_PROGRESS, "step", ("'loss'", "'train_runtime'")),
    # --- startup: alive, not yet training (the identity check is NOT a conflict).
    ("identity_check", r"Checking that identity from .{0,500} is not used by other peers"
     r"|Generating new identity (?:\(|to be saved)",
     _V.HEALTHY_PROGRESS, "startup", ("identity",)),
    ("testnet_connected", r"Connected to Gensyn Testnet",
     _V.HEALTHY_PROGRESS, "startup", ("connected to gensyn",)),
    ("launcher_ready", r">> Good luck in the swarm!",
     _V.HEALTHY_PROGRESS, "startup", ("good luck",)),
    ("node_hello", r"\bHello\b[^\[]{0,40}\[[^\]]{1,200}\][^\[]{0,40}\[[^\]]{1,200}\]",
     _V.HEALTHY_PROGRESS, "startup", ("hello",)),
    ("data_manager_ready", r"Data Manager initialized",
     _V.HEALTHY_PROGRESS, "startup", ("manager initialized",)),
    ("login_done", r"API key is activated|Found userData\.json|userData\.json found",
     _V.HEALTHY_PROGRESS, "startup", ("activated", "userdata.json")),
    # --- waiting for a person: alive, not progress; `operator.OperatorWatch` turns a
    # loop of these into `operator_needed`.
    ("login_server_error", r"^\s+at \S.{0,300}/modal-login/node_modules/",
     _V.OPERATOR_NEEDED, "login_server_error", ("modal-login",)),
    # The login server's own request log: the API-key routes the launcher polls fail,
    # so no login can complete until a person repairs modal-login.
    ("login_api_failing", r"\b(?:GET|POST) /api/(?:get-api-key-status|get-api-key|set-api-key-activated|get-user-apikey)\S* 5\d\d\b",
     _V.OPERATOR_NEEDED, "login_server_error", ("api-key", "apikey")),
    ("api_key_wait", r"Waiting for API key to (?:be|become) activated",
     _V.HEALTHY_IDLE, "operator_wait", ("waiting for api key",)),
    ("login_wait", r"Waiting for (?:modal )?userData\.json to be created",
     _V.HEALTHY_IDLE, "operator_wait", ("userdata.json",)),
    ("login_display_missing",
     r"Missing X server or \$DISPLAY|cannot open display|Failed to open (?:the )?(?:browser|http://localhost)",
     _V.HEALTHY_IDLE, "operator_wait", ("display", "failed to open")),
    ("prompt_unanswered", r"\[(?:[yY]/[nN]|yes/no)\]:?\s*$",
     _V.HEALTHY_IDLE, "prompt", ("/n]", "yes/no]")),
)
# fmt: on


def _compile_builtins() -> tuple[tuple[Rule, ...], dict[Rule, tuple[str, ...]]]:
    rules: list[Rule] = []
    tokens: dict[Rule, tuple[str, ...]] = {}
    for name, pattern, verdict, kind, toks in _BUILTINS:
        rule = Rule(name, re.compile(pattern), verdict, kind)
        rules.append(rule)
        tokens[rule] = toks
    return tuple(rules), tokens


_DEFAULT_RULES, _TOKENS = _compile_builtins()

def default_rules() -> tuple[Rule, ...]:
    """The shipped rules, in the order they are tried."""
    return _DEFAULT_RULES




def tokens_of(rule: Rule) -> tuple[str, ...] | None:
    """The gate tokens of an unchanged built-in rule; `None` for any other rule (always tried)."""
    return _TOKENS.get(rule)

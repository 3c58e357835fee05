"""A traceback's final exception -> what it calls for, with the fix in words.

Why a taxonomy and not more line rules: the nodes we supervise die of a few KINDS of
cause, whatever the exact wording. Each kind has one right answer:
- the install or the config is broken (a module, a binary, a command, a file is
  missing; the code or the config does not parse): every restart fails the same way,
  so give up at once and say what to fix;
- the hardware cannot run this build or setting (no kernel image for the GPU, bf16 on
  a GPU without it, an inference engine's KV cache that does not fit), a dependency
  refuses the operating system, or the Hub refuses the model to these credentials:
  the same;
- a program error (TypeError, ValueError, ...) raised while the node is being built,
  on the way from its entry point into a constructor and through no round, step or
  game: the next start builds the same node from the same arguments, so the same;
- the network or a remote service failed (refused, reset, time-outs, 5xx, failed
  downloads): a restart after back-off is the cure;
- memory ran out: restart (the policy and `oom_fallback_env` take it from there).
Anything else that escapes uncaught is a crash: restart. p2pd/DHT causes are known by
the line rules in `classify`, which are asked first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from swarmd.domain import Signal, Verdict
from swarmd.tracebacks import Traceback

__all__ = ["Cause", "cause_of", "cause_of_text", "with_fix"]


@dataclass(frozen=True, slots=True)
class Cause:
    verdict: Verdict
    kind: str
    fix: str = ""


_FATAL = Verdict.GIVE_UP_FATAL
_RESTART = Verdict.RESTART

_MODULE = re.compile(r"No module named '?([\w.]+)")
_ERRNO_PATH = re.compile(r"No such file or directory: '([^']+)'")
_INNER_REPR = re.compile(r"\b((?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Timeout))\((['\"])(.*)")
# An API the code calls is not there: a package of another version than the code wants.
_VERSION_MISMATCH = re.compile(
    r"module '[\w.]+' has no attribute|got an unexpected keyword argument|"
    r"'\w*(?:Config|Args|Arguments|Settings)' object has no attribute|takes \d+ positional arguments? but \d+ (?:were|was) given"
)
# A setting checked at start-up ("batch size must be divisible by ..."): the config.
_SETTING_CHECK = re.compile(r"\bmust be (?:evenly )?divisible\b|\bmust be one of\b|\bis not a valid (?:choice|value|option)\b|\binvalid choice\b")
_HTTP_5XX = re.compile(r"\b5\d\d\b (?:Server Error|Bad Gateway|Service Unavailable|Gateway Time-?out)|\b50[234]\b|Bad Gateway")
_HTTP_AUTH = re.compile(r"\b40[13]\b (?:Client Error|Unauthorized|Forbidden)|GatedRepoError|RepositoryNotFoundError")
# The Hub answered, but not with this model for these credentials (transformers words it
# as an OSError): a wrong name, a private or gated repo, a missing token.
_HUB_DENIED = re.compile(
    r"is not a valid model identifier|(?:Cannot|trying to) access (?:a )?gated repo|is a gated repo"
    r"|pass a token having permission to this repo|Repository Not Found for url"
)
# A dependency refuses this operating system or CPU: no restart changes the host.
_PLATFORM = re.compile(
    r"(?i)\b(?:does not|doesn't|do not|cannot) (?:yet )?(?:support|run on) (?:Windows|win32|macOS|Mac ?OS|Darwin|Linux"
    r"|this (?:platform|operating system|OS|architecture)|your (?:platform|operating system|OS|architecture)|ARM|arm64|aarch64)"
    r"|\bunsupported (?:platform|operating system|OS|architecture|machine)\b"
    r"|\b(?:is )?not supported on (?:Windows|win32|macOS|Darwin|this (?:platform|OS|architecture)|your (?:platform|OS))"
    r"|\bonly (?:supports?|supported on|available on|works on|runs on) (?:Linux|macOS|x86(?:_64)?|amd64|64-bit)"
)

# (types, message pattern or None, cause). First hit wins; types are short names.
_NETWORK_TYPES = frozenset({
    "ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError",
    "BrokenPipeError", "TimeoutError", "ReadTimeout", "ConnectTimeout", "ReadTimeoutError",
    "ConnectTimeoutError", "MaxRetryError", "NewConnectionError", "ProxyError", "SSLError",
    "RemoteDisconnected", "ChunkedEncodingError", "IncompleteRead", "ProtocolError", "gaierror",
    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ConnectError",
    "ReadError", "RemoteProtocolError", "ProviderConnectionError", "LocalEntryNotFoundError",
    "TimeExhausted", "URLError",
})
_CONFIG_TYPES = frozenset({
    "ConfigCompositionException", "MissingConfigException", "OverrideParseException",
    "ConfigAttributeError", "ConfigKeyError", "ConfigTypeError", "InterpolationResolutionError",
    "InterpolationKeyError", "MissingMandatoryValue", "ValidationError", "ArgumentError",
    "ArgumentTypeError", "YAMLError", "ScannerError", "ParserError", "TOMLDecodeError",
})
_HARDWARE = (
    (re.compile(r"no kernel image is available for execution on the device"
                r"|is not compatible with the current PyTorch installation"),
     Cause(_FATAL, "gpu_unsupported",
           "this PyTorch build has no kernels for the GPU's compute capability: install a torch "
           "build that supports it (or run on a supported GPU)")),
    (re.compile(r"(?i)bf16|bfloat16"),
     Cause(_FATAL, "gpu_dtype_unsupported",
           "the GPU cannot run bfloat16: set the dtype to float16 (fp16) or float32 in the node's "
           "config, or use a GPU with compute capability >= 8.0")),
    (re.compile(r"(?i)kv[ _]cache|cache blocks|gpu_memory_utilization|max_model_len"),
     Cause(_FATAL, "vllm_kv_cache_oom",
           "the inference engine's KV cache does not fit: lower max_model_len or raise "
           "gpu_memory_utilization, or use a smaller model")),
    (re.compile(r"INTERNAL ASSERT FAILED|Found no NVIDIA driver|CUDA driver version is insufficient"
                r"|no CUDA-capable device is detected|NVIDIA driver on your system is too old"
                r"|Torch not compiled with CUDA enabled"),
     Cause(_FATAL, "gpu_driver",
           "PyTorch and the GPU driver/runtime do not work together: install a torch build that "
           "matches the driver (or update the driver)")),
)
_MEMORY = (
    (re.compile(r"MPS backend out of memory"), Cause(_RESTART, "mps_oom")),
    (re.compile(r"CUDA out of memory|OutOfMemoryError|out of memory"), Cause(_RESTART, "cuda_oom")),
)


def cause_of(tb: Traceback) -> Cause:
    """The cause of an uncaught traceback (callers treat `tb.caught` first)."""
    if not tb.exc_type:
        return _cut_cause(tb.lines)
    cause = cause_of_text(tb.short_type, tb.message)
    if cause.kind == "uncaught_exception" and tb.short_type in _PROGRAM_ERRORS and _raised_while_building(tb.lines):
        return Cause(_FATAL, "startup_error",
                     "the node fails while it is being set up, before any training, so every start fails the "
                     "same way: fix the argument, config value or file the error is about")
    return cause


# Exceptions that say "this value is wrong", not "the world failed just now".
_PROGRAM_ERRORS = frozenset({
    "TypeError", "ValueError", "AssertionError", "AttributeError", "KeyError", "IndexError", "LookupError",
    "NameError", "UnboundLocalError", "NotImplementedError",
})
_FRAME_FUNC = re.compile(r'File "[^"]*", line \d+, in (\S+)')
# Where a program starts: an entry frame, hydra instantiating the configured objects.
_ENTRY_FUNCS = frozenset({"<module>", "main", "_run_module_as_main", "_run_code", "decorated_main", "_call_target"})
# Frames of the work loop, or of the upkeep a running node does (re-joining, polling):
# an exception raised under one of these came from a round, a step, a peer's data or
# the network, which the next start need not meet again.
_LOOP_FUNC = re.compile(
    r"(?:^|_)(?:train|training|step|steps|stage|stages|round|game|loop|epoch|fit|forward|backward|generate|rollout"
    r"|infer|inference|evaluate|run_game|gather|serve|handle|rpc"
    r"|reconnect|rejoin|recover|retry|restart|refresh|poll|wait|monitor|update)(?:_|$)"
)


def _raised_while_building(lines: tuple[str, ...]) -> bool:
    """The block runs from the program's entry into an object's constructor and never
    through the work loop: the exception came from building the node (its arguments,
    config, files), which the next start repeats exactly."""
    funcs = [m.group(1) for m in map(_FRAME_FUNC.search, lines) if m is not None]
    if "__init__" not in funcs or not any(f in _ENTRY_FUNCS for f in funcs):
        return False
    return not any(_LOOP_FUNC.search(f) for f in funcs)


def cause_of_text(exc_type: str, message: str) -> Cause:
    """Type (short name) + message -> cause; a wrapper (hydra's InstantiationException,
    a RuntimeError quoting another) is judged by the exception it quotes."""
    inner = _INNER_REPR.search(message)
    if inner is not None and inner.group(1).rsplit(".", 1)[-1] != exc_type:
        return cause_of_text(inner.group(1).rsplit(".", 1)[-1], inner.group(3))
    for rx, cause in _HARDWARE:
        if rx.search(message):
            if cause.kind == "gpu_dtype_unsupported" and not re.search(r"(?i)support|capabilit|compute", message):
                continue  # a bf16 word in an unrelated message
            return cause
    for rx, cause in _MEMORY:
        if exc_type in ("OutOfMemoryError", "MemoryError") or rx.search(message):
            if exc_type == "MemoryError":
                return Cause(_RESTART, "host_memory_error")
            return cause if rx.search(message) else Cause(_RESTART, "cuda_oom")
    if _PLATFORM.search(message):
        return Cause(_FATAL, "platform_unsupported",
                     "a dependency does not run on this operating system or CPU: run the node where it is "
                     "supported (on Windows inside WSL2 or Docker)")
    if _HUB_DENIED.search(message):
        return Cause(_FATAL, "hub_access_denied",
                     "the model or dataset is not reachable with these credentials: check its name, request "
                     "access to a gated repo, and log in (huggingface-cli login) or set the token")
    if exc_type in ("ModuleNotFoundError", "ImportError"):
        mod = _MODULE.search(message)
        what = f"the Python module {mod.group(1)!r}" if mod else "a Python module"
        return Cause(_FATAL, "dependency_missing",
                     f"{what} is not installed in the node's environment: re-run the node's installer "
                     "(or pip install it into its venv)")
    if exc_type in ("SyntaxError", "IndentationError", "TabError"):
        return Cause(_FATAL, "code_broken",
                     "the node's code does not parse: restore the file (git status / a clean clone) or "
                     "use the Python version the node supports")
    if exc_type in _CONFIG_TYPES or exc_type.startswith("Config") or (
        exc_type == "ValueError" and _SETTING_CHECK.search(message)
    ):
        return Cause(_FATAL, "config_error", "the node's config or arguments are invalid: fix the key the message names")
    if exc_type in ("FileNotFoundError", "PermissionError"):
        return _missing_file(exc_type, message)
    if exc_type in ("HTTPError", "HfHubHTTPError", "GatedRepoError", "RepositoryNotFoundError"):
        if _HTTP_AUTH.search(message) or exc_type in ("GatedRepoError", "RepositoryNotFoundError"):
            return Cause(_FATAL, "hub_access_denied",
                         "the model or dataset is not reachable with these credentials: check its name "
                         "and the Hugging Face token")
        return Cause(_RESTART, "http_error")
    if exc_type in _NETWORK_TYPES or _HTTP_5XX.search(message) or "Temporary failure in name resolution" in message:
        return Cause(_RESTART, "network_error")
    if _VERSION_MISMATCH.search(message) and exc_type in ("AttributeError", "TypeError", "ImportError"):
        return Cause(_FATAL, "dependency_version_mismatch",
                     "installed package versions do not match what the node's code expects: reinstall the "
                     "node's pinned requirements in a clean venv (or use the release that matches them)")
    if exc_type == "KeyboardInterrupt":
        return Cause(Verdict.TRANSIENT_IGNORE, "interrupted")
    return Cause(_RESTART, "uncaught_exception")


# Where a previous run leaves sockets and temp files (a path prefix, never written here).
_RUNTIME_DIRS = ("/tmp/", "/dev/shm/", "/run/")  # noqa: S108


_CONFIG_FRAME = re.compile(r"\bparse_args\w*\(|hydra/_internal/config_loader|\bcompose\(|OmegaConf\.load\(")
_KV_CACHE_FRAME = re.compile(r"in _initialize_kv_caches\b|in _allocate_kv_cache\b|in determine_num_available_blocks\b")
_ENGINE_INIT_FRAME = re.compile(r"\bLLM\(|vllm/engine/\w+\.py\", line \d+, in (?:__init__|from_engine_args)")


def _cut_cause(lines: tuple[str, ...]) -> Cause:
    """An excerpt cut before the final exception: where it stopped still tells the kind
    when that place runs once per start (argument parsing, building the inference
    engine), so the same start fails the same way."""
    if any(_KV_CACHE_FRAME.search(line) for line in lines):
        return Cause(_FATAL, "vllm_kv_cache_oom", _HARDWARE[2][1].fix)
    text = "\n".join(lines[-6:])
    if _CONFIG_FRAME.search(text):
        return Cause(_FATAL, "config_error", "the node's arguments or config do not parse: fix the key the error names")
    if _ENGINE_INIT_FRAME.search(text):
        return Cause(_FATAL, "inference_engine_init",
                     "the inference engine (vLLM) cannot start with this GPU and config: lower max_model_len "
                     "or gpu_memory_utilization, use a smaller model, or turn vLLM off")
    return Cause(_RESTART, "uncaught_exception")


# The fix for causes a line rule knows (the taxonomy's own causes carry theirs).
_KIND_FIXES = {
    "dependency_missing": "a program or module the node needs is missing: re-run the node's installer "
    "(or install what the line names into its environment)",
    "identity_taken": "another node uses this swarm.pem: stop the other node, or give this one its own "
    "identity file",
    "config_error": "the node's command line or config is invalid: fix the argument the line names",
    "gpu_unsupported": _HARDWARE[0][1].fix,
    "gpu_dtype_unsupported": _HARDWARE[1][1].fix,
    "vllm_kv_cache_oom": _HARDWARE[2][1].fix,
    "binary_incompatible": "a bundled binary (p2pd) is built for another OS or CPU: reinstall hivemind "
    "for this platform (pip install --force-reinstall hivemind)",
    "network_config": "this host is not reachable from the Internet: open or forward the node's port, "
    "or announce a reachable address",
    "disk_full": "the disk is full: free space (old checkpoints, logs, the Hugging Face cache) and "
    "restart swarmd",
    "auth_signature": "the login session is no longer valid: log in again at the node's login page",
    "login_browser_unavailable": "no browser can open the login page here: open it from another "
    "machine through an SSH tunnel (ssh -L 3000:localhost:3000 user@host)",
    "login_server_error": "the login server (modal-login) failed: read its error above, then reinstall "
    "its packages (remove modal-login/node_modules and restart the node)",
}


def with_fix(sig: Signal) -> Signal:
    """The signal with the fix for its kind filled in, where one is known."""
    if sig.fix:
        return sig
    fix = _KIND_FIXES.get(sig.kind)
    return replace(sig, fix=fix) if fix else sig


def _missing_file(exc_type: str, message: str) -> Cause:
    m = _ERRNO_PATH.search(message)
    path = m.group(1) if m else ""
    if ".sock" in path or path.startswith(_RUNTIME_DIRS):
        # A socket or temp file of the previous run: cleanup and restart, not the install.
        return Cause(Verdict.RESTART_AFTER_CLEANUP, "stale_runtime_file")
    if exc_type == "PermissionError":
        return Cause(_FATAL, "permission_denied",
                     f"the node may not open {path or 'a file it needs'}: fix its owner or mode")
    name = path.rsplit("/", 1)[-1]
    if path and "." not in name:
        return Cause(_FATAL, "dependency_missing",
                     f"the program {path!r} is missing: install it (or re-run the node's installer)")
    return Cause(_FATAL, "missing_file",
                 f"{path or 'a file the node needs'} does not exist: restore it or fix the path in the config")

"""Checkpoint directories on disk: atomic writes, hash manifests, resume, retention.

Why this shape: a node is killed at any moment (SIGKILL after `stop_timeout`, power,
OOM), so a checkpoint is written to a tmp dir, fsynced, then renamed into
`round-XXXXXX` in one step; a manifest holds each file's SHA-256, and resume takes the
newest directory whose manifest verifies, skipping torn or foreign ones. The learner
(`trainer.train`) decides when to save; this module owns how.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import structlog
import torch

log = structlog.get_logger(__name__)

CKPT_PREFIX, TMP_PREFIX, MANIFEST = "round-", ".tmp-", "manifest.json"
CKPT_FILES = ("model.safetensors", "optimizer.pt", "rng.pt")

__all__ = ["CKPT_FILES", "checkpoints", "load_latest", "save", "verify"]


def save(root: Path, *, round: int, stage: int, model_name: str, model: Any,
         optimizer: torch.optim.Optimizer, rng: dict[str, Any], keep: int) -> Path:
    """Write to a tmp dir, fsync, then os.replace into round-XXXXXX; keep the last `keep`.
    `rng` holds the torch (and CUDA) states; Python's own is added here."""
    from safetensors.torch import save_model

    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{CKPT_PREFIX}{round:06d}"
    tmp = root / f"{TMP_PREFIX}{final.name}-{os.getpid()}-{random.getrandbits(32):08x}"
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({**rng, "python": random.getstate()}, tmp / "rng.pt")
    manifest = {
        "version": 1, "round": round, "stage": stage, "model": model_name,
        "files": {name: _sha256(tmp / name) for name in CKPT_FILES},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    for name in (*CKPT_FILES, MANIFEST):
        _fsync(tmp / name)
    _fsync(tmp)
    if final.exists():  # same round saved again (a later stage): retire the old one
        old = root / f"{TMP_PREFIX}old-{final.name}-{os.getpid()}"
        final.replace(old)
        shutil.rmtree(old)
    tmp.replace(final)
    _fsync(root)
    for stale in checkpoints(root)[keep:]:
        shutil.rmtree(stale, ignore_errors=True)
    log.info("checkpoint_saved", path=str(final), round=round, stage=stage)
    return final


def load_latest(root: Path, *, model_name: str, model: Any, optimizer: torch.optim.Optimizer,
                device: torch.device) -> tuple[int, int, dict[str, Any]] | None:
    """Restore the newest checkpoint whose manifest verifies into `model` and
    `optimizer` (and Python's RNG); skip torn ones. Returns (round, stage, torch RNG states)."""
    if not root.is_dir():
        return None
    for tmp in root.glob(f"{TMP_PREFIX}*"):
        log.warning("checkpoint_partial_removed", path=str(tmp))
        shutil.rmtree(tmp, ignore_errors=True)
    for path in checkpoints(root):
        problem = verify(path, model_name)
        if problem is None:
            try:
                return _restore(path, model, optimizer, device)
            except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
                problem = f"restore failed: {type(exc).__name__}"
        log.warning("checkpoint_skipped", path=str(path), reason=problem)
    return None


def _restore(path: Path, model: Any, optimizer: torch.optim.Optimizer,
             device: torch.device) -> tuple[int, int, dict[str, Any]]:
    from safetensors.torch import load_model

    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    load_model(model, str(path / "model.safetensors"), device=str(device))
    optimizer.load_state_dict(
        torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    )
    rng = torch.load(path / "rng.pt", weights_only=True)
    random.setstate(_as_tuple(rng.pop("python")))
    log.info("checkpoint_loaded", path=str(path), round=manifest["round"], stage=manifest["stage"])
    return int(manifest["round"]), int(manifest["stage"]), rng



def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoints(root: Path) -> list[Path]:
    """round-N directories, newest round first (numeric: rounds may pass 999999)."""
    found = []
    for p in root.glob(f"{CKPT_PREFIX}*"):
        suffix = p.name[len(CKPT_PREFIX):]
        if p.is_dir() and suffix.isdigit():
            found.append((int(suffix), p))
    return [p for _, p in sorted(found, reverse=True)]


def verify(path: Path, model: str) -> str | None:
    """Why a checkpoint cannot be trusted, or None when every file matches its hash."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        int(manifest["round"]), int(manifest["stage"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"manifest unreadable: {type(exc).__name__}"
    if manifest.get("model") != model:
        return "checkpoint is for another model"
    for name in CKPT_FILES:
        if not isinstance(files, dict) or name not in files:
            return f"{name} not in manifest"
        try:
            if _sha256(path / name) != files[name]:
                return f"{name} hash mismatch"
        except OSError:
            return f"{name} missing"
    return None

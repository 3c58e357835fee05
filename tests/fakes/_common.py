"""Helpers shared by the fake children (imported as a sibling: scripts run with
tests/fakes as sys.path[0])."""

import ctypes
import ctypes.util
import os
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Readers polling for the file never see it half-written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def set_process_name(name: str) -> None:
    """Set the kernel `comm` name (what psutil.name() and `ps -o comm` show)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_name = 15
    libc.prctl(pr_set_name, name.encode()[:15], 0, 0, 0)

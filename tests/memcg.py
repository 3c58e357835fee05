"""A memory-limited cgroup for tests that need the kernel's OOM killer (v2 or v1).

Created under the test process's own cgroup, removed afterwards; `None` with the reason
when the host does not let us (no writable memory controller, a container without
cgroup delegation). Nothing outside the cgroup created here is touched.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

_ROOT = Path("/sys/fs/cgroup")


def _own_dir() -> tuple[Path, str] | None:
    """(our cgroup directory, limit file name) for the memory controller."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (_ROOT / "cgroup.controllers").exists():
            return _ROOT / path.lstrip("/"), "memory.max"
        if "memory" in controllers.split(","):
            return _ROOT / "memory" / path.lstrip("/"), "memory.limit_in_bytes"
    return None


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int, name: str) -> Iterator[tuple[Path | None, str]]:
    """Yields (the `cgroup.procs` file to write a pid into, "") or (None, reason)."""
    found = _own_dir()
    if found is None:
        yield None, "no memory cgroup controller visible in /proc/self/cgroup"
        return
    parent, limit_file = found
    group = parent / f"{name}-{os.getpid()}"
    try:
        group.mkdir()
    except OSError as err:
        yield None, f"cannot create a cgroup under {parent}: {err.strerror}"
        return
    try:
        try:
            (group / limit_file).write_text(str(limit_bytes))
            swap = group / "memory.memsw.limit_in_bytes"
            if swap.exists():
                with contextlib.suppress(OSError):
                    swap.write_text(str(limit_bytes))
            if (group / "memory.swap.max").exists():
                with contextlib.suppress(OSError):
                    (group / "memory.swap.max").write_text("0")
        except OSError as err:
            yield None, f"cannot set {group / limit_file}: {err.strerror}"
            return
        yield group / "cgroup.procs", ""
    finally:
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)  # its last process is still exiting

"""Headless Chromium as the status-page tests and benchmarks run it.

One place for the flags that work as root in a container (no sandbox, no GPU, no
background traffic that would make a run depend on the network) and for a throwaway
profile per run, so two runs never share cookies, cache or a profile lock. Standard
library only: benchmarks/status_page.py imports it too.

    dom = run(url, "--dump-dom", budget_ms=8000)
    run(url, f"--screenshot={png}")
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ABSENT_REASON = f"{CHROMIUM} is absent (apt-get install -y chromium)"

FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def available() -> bool:
    return CHROMIUM.exists()


@contextlib.contextmanager
def profile_dir() -> Iterator[Path]:
    """A fresh --user-data-dir, removed afterwards (profiles are tens of MB)."""
    path = Path(tempfile.mkdtemp(prefix="swarmd-chromium-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def argv(profile: Path, *extra: str, window_size: str = "1200,1000") -> list[str]:
    """The Chromium command line; `extra` goes last (mode flags, then the URL)."""
    return [
        str(CHROMIUM),
        *FLAGS,
        f"--user-data-dir={profile}",
        f"--window-size={window_size}",
        *extra,
    ]


def run(
    url: str,
    *extra: str,
    budget_ms: int = 3000,
    window_size: str = "1200,1000",
    timeout: float = 120,
) -> str:
    """One headless run on virtual time (`budget_ms` of page timers, no real waiting);
    returns stdout, which holds the DOM with `--dump-dom`. A non-zero exit fails the test."""
    with profile_dir() as profile:
        cmd = argv(
            profile,
            f"--virtual-time-budget={budget_ms}",
            *extra,
            url,
            window_size=window_size,
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"chromium rc={proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout

"""Compile contracts/SwarmCoordinator.sol offline and write the committed artifacts.

`python -m trainer.coordinator.build` rebuilds them; `--check` exits 1 when the fresh
build differs from what is committed (CI runs it through tests/io/test_contract_build.py),
so the ABI and bytecode the node deploys are always the ones the source produces.

The compiler is solc-js from the npm registry, pinned in tools/package.json and installed
by scripts/setup.sh under tools/node_modules (no network at build time). Imports are
resolved here and passed as source text in solc's standard-JSON input, so the output
does not depend on the directory the build runs from.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "node_modules"
SOLC_JS = TOOLS / "solc" / "solc.js"
SOLC_VERSION = "0.8.29"
OUT_DIR = Path(__file__).resolve().parent
MAIN = "contracts/SwarmCoordinator.sol"
PROXY = "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol"
# (source unit, contract name, artifact stem)
TARGETS = ((MAIN, "SwarmCoordinator", "SwarmCoordinator"), (PROXY, "ERC1967Proxy", "ERC1967Proxy"))
_IMPORT = re.compile(r'^\s*import\s+(?:[^"\']*\sfrom\s+)?["\']([^"\']+)["\']\s*;', re.MULTILINE)


class BuildError(RuntimeError):
    pass


def _read(unit: str) -> str:
    path = ROOT / unit if unit.startswith("contracts/") else TOOLS / unit
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BuildError(f"{path}: {exc.strerror}; run `bash scripts/setup.sh` to install tools/node_modules") from None


def collect_sources(roots: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Every source unit reachable from `roots` by import, keyed as solc names them."""
    sources: dict[str, dict[str, str]] = {}
    todo = list(roots)
    while todo:
        unit = todo.pop()
        if unit in sources:
            continue
        text = _read(unit)
        sources[unit] = {"content": text}
        for target in _IMPORT.findall(text):
            relative = target.startswith(".")
            todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(unit), target)) if relative else target)
    return dict(sorted(sources.items()))


def standard_input() -> dict[str, Any]:
    return {
        "language": "Solidity",
        "sources": collect_sources(tuple(t[0] for t in TARGETS)),
        "settings": {
            "optimizer": {"enabled": True, "runs": 200},
            "evmVersion": "cancun",
            "outputSelection": {unit: {name: ["abi", "evm.bytecode.object"]} for unit, name, _ in TARGETS},
        },
    }


def compile_artifacts() -> dict[str, str]:
    """File name -> content of every artifact, from a fresh compile."""
    if not SOLC_JS.is_file():
        raise BuildError(f"{SOLC_JS} is missing; run `bash scripts/setup.sh` (installs the pinned solc {SOLC_VERSION})")
    proc = subprocess.run(["node", str(SOLC_JS), "--standard-json"], input=json.dumps(standard_input()),  # noqa: S607
                          capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise BuildError(f"solc exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    # solc-js prints a note about SMT solvers before the JSON document.
    out = json.loads(proc.stdout[proc.stdout.find("{"):])
    errors = [e["formattedMessage"] for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise BuildError("solc: " + "\n".join(errors))
    files: dict[str, str] = {}
    for unit, name, stem in TARGETS:
        contract = out["contracts"][unit][name]
        files[f"{stem}.abi.json"] = json.dumps(contract["abi"], indent=1, sort_keys=True) + "\n"
        files[f"{stem}.bin"] = contract["evm"]["bytecode"]["object"] + "\n"
    return files


def differences(files: dict[str, str], out_dir: Path = OUT_DIR) -> list[str]:
    """Artifacts whose committed content differs from `files`."""
    changed = []
    for name, text in files.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            changed.append(name)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.coordinator.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed artifacts are stale")
    args = parser.parse_args(argv)
    try:
        files = compile_artifacts()
    except BuildError as exc:
        sys.stderr.write(f"build: {exc}\n")
        return 2
    if args.check:
        stale = differences(files)
        if stale:
            sys.stderr.write(f"build: stale artifacts {', '.join(stale)}; run `python -m trainer.coordinator.build`\n")
            return 1
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
    sys.stderr.write(f"build: wrote {', '.join(sorted(files))} to {OUT_DIR}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env bash
# Creates .venv at the repository root and installs swarmd, the trainer and the dev tools.
# Idempotent: a second run only installs what changed. Works on a fresh machine with
# nothing but python3 (>= 3.11) and access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: $PY is older than 3.11; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi
# Chain tooling (solc, anvil, cast, OpenZeppelin), pinned in tools/package-lock.json and
# installed offline-capable from the npm registry into tools/node_modules (gitignored).
bash scripts/chain-tools.sh
stamp=.venv/.swarmd-installed
want=$(cat pyproject.toml scripts/setup.sh scripts/genrl_hivemind_shim.py | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setup: installing swarmd[trainer,upstream,dev] into .venv (first run takes a few minutes)" >&2
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: the CPU build that lies on disk, never an unpinned CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[trainer,upstream,dev]"
# gensyn-genrl 0.3.0 imports names that PyPI's hivemind no longer re-exports: a .pth in
# site-packages installs an import hook that adds them when hivemind loads (README,
# "Upstream nodes"); it imports nothing heavy at interpreter start.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp scripts/genrl_hivemind_shim.py "$site/genrl_hivemind_shim.py"
echo "import genrl_hivemind_shim" > "$site/genrl_hivemind_shim.pth"
.venv/bin/python -m pip check
echo "$want" > "$stamp"

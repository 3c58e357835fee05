#!/usr/bin/env bash
# Sets everything up on a fresh machine and runs the whole test suite:
# lint (ruff), types (mypy --strict on swarmd/), then pytest (unit, io, e2e, swarm).
# Extra pytest arguments pass through: scripts/test.sh -k classify
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/system-deps.sh
bash scripts/chain-tools.sh   # again: npm may have arrived with the system packages
.venv/bin/ruff check .
.venv/bin/mypy
# pytest exits 5 when it collected no test: that is a failure here too.
exec .venv/bin/python -m pytest "$@"

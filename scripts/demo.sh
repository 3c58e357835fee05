#!/usr/bin/env bash
# Sets everything up and runs swarmd supervising the local demo swarm (tiny model built
# locally, peers on loopback), with the repository's monitor.toml. Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "demo: swarmd is starting; in another terminal: tail -f logs/monitor.log  |  .venv/bin/swarmd status" >&2
exec .venv/bin/swarmd run --config monitor.toml "$@"

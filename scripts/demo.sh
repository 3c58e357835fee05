#!/usr/bin/env bash
# Sets everything up and runs swarmd supervising the local demo swarm (tiny model built
# locally, peers on loopback), with the repository's monitor.toml. Ctrl-C stops it cleanly.
#
# The swarm's clock is a real chain: a local anvil (tools/node_modules) with our
# SwarmCoordinator deployed, the three demo peers registered, and a stage manager that
# advances the stage every 10 s (trainer/coordinator/demo_chain.py). trainer.toml points
# at it (chain_rpc_url, chain_contract); stopping the demo stops anvil.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p logs state
rm -f state/chain/ready
# Its own session: Ctrl-C reaches swarmd only, and the chain outlives the trainers' stop.
setsid .venv/bin/python -m trainer.coordinator.demo_chain --stage-seconds 10 \
  --peer-dir state/demo --peer-dir state/demo/peer1 --peer-dir state/demo/peer2 \
  --log logs/anvil.log --ready-file state/chain/ready >logs/demo-chain.log 2>&1 &
chain_pid=$!
trap 'kill -TERM "$chain_pid" 2>/dev/null || true; wait "$chain_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  [ -s state/chain/ready ] && break
  if ! kill -0 "$chain_pid" 2>/dev/null; then
    echo "demo: the local chain failed to start; see logs/demo-chain.log" >&2
    tail -5 logs/demo-chain.log >&2 || true
    exit 1
  fi
  sleep 0.2
done
[ -s state/chain/ready ] || { echo "demo: the local chain did not come up within 120 s; see logs/demo-chain.log" >&2; exit 1; }
echo "demo: chain up ($(head -1 logs/demo-chain.log 2>/dev/null | grep -o 'anvil at .*' || true)); stage manager log: logs/demo-chain.log" >&2
echo "demo: swarmd is starting; in another terminal: tail -f logs/monitor.log  |  .venv/bin/swarmd status" >&2
.venv/bin/swarmd run --config monitor.toml "$@"

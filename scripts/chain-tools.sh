#!/usr/bin/env bash
# Installs the pinned chain tools from tools/package-lock.json into tools/node_modules:
# solc-js 0.8.29 (compiles contracts/), anvil + cast (a local EVM node for tests and the
# demo), OpenZeppelin (ERC1967 proxy, UUPS). Idempotent: reruns only when the lock changes.
# Without node/npm it says so and goes on; the chain tests then skip and say why.
set -euo pipefail
cd "$(dirname "$0")/../tools"
if ! command -v npm >/dev/null 2>&1; then
  echo "chain-tools: npm is missing (apt-get install nodejs npm); chain tests will skip" >&2
  exit 0
fi
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.swarmd-installed
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "chain-tools: installing solc, anvil, cast, OpenZeppelin into tools/node_modules" >&2
if ! npm ci --no-audit --no-fund --loglevel=error >&2; then
  echo "chain-tools: npm ci failed (registry unreachable?); chain tests will skip, the demo will not start" >&2
  exit 0
fi
echo "$want" > "$stamp"

#!/usr/bin/env bash
# Debian packages the tests use: chromium (status page in a real browser), nodejs+npm
# (installs solc/anvil, scripts/chain-tools.sh),
# systemd (systemd-analyze verify of the unit), iproute2 (ip netns network faults).
# Installs only what is missing; without root or apt it says what is missing and goes on
# (the tests that need a package then skip and say why).
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || echo "system-deps: apt-get install ${need[*]} failed; dependent tests will skip" >&2
else
  echo "system-deps: missing ${need[*]} (run as root: apt-get install ${need[*]}); dependent tests will skip" >&2
fi
exit 0

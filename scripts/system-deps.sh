#!/usr/bin/env bash
# Debian packages the tests use: chromium (status page in a real browser), nodejs+npm
# (installs solc/anvil, scripts/chain-tools.sh),
# systemd (systemd-analyze verify of the unit), iproute2 (ip netns network faults),
# prometheus (its promtool checks and unit-tests deploy/prometheus/swarmd.rules.yml).
# Installs only what is missing; without root or apt it says what is missing and goes on
# (the tests that need a package then skip and say why).
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || echo "system-deps: apt-get install ${need[*]} failed; dependent tests will skip" >&2
  # Only promtool is wanted: on a host run by systemd the package also starts a
  # Prometheus server, which a test machine has no use for.
  if [[ " ${need[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
else
  echo "system-deps: missing ${need[*]} (run as root: apt-get install ${need[*]}); dependent tests will skip" >&2
fi
exit 0

#!/usr/bin/env bash
# Installs swarmd as a systemd service:
#   venv            /opt/swarmd/.venv          (PREFIX; --prefix)
#   config          /etc/swarmd/monitor.toml   (never overwritten once there)
#   unit            /etc/systemd/system/swarmd.service
#   state, logs     /var/lib/swarmd, /var/log/swarmd  (kept by --uninstall)
# Idempotent: run it again after `git pull` to upgrade.
#
#   sudo scripts/install.sh [--with-trainer] [--prefix DIR] [--python PY]
#   sudo scripts/install.sh --uninstall
#   scripts/install.sh --root /tmp/stage --no-venv      # staging tree, as tests do
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=""
PREFIX=/opt/swarmd
PY=${PYTHON:-python3}
CONFIG_SRC="$REPO/monitor.toml"
MAKE_VENV=1
WITH_TRAINER=0
UNINSTALL=0
STATE_DIR=/var/lib/swarmd
LOG_DIR=/var/log/swarmd
CONF_DIR=/etc/swarmd
UNIT_DIR=/etc/systemd/system

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF
Options:
  --root DIR         install into DIR as if it were / (no user, no systemctl)
  --prefix DIR       where the venv lives at run time (default /opt/swarmd)
  --python PY        interpreter for the venv, >= 3.11 (default python3)
  --with-trainer     also install the trainer's extras (torch, hivemind, trl, ...)
  --no-venv          skip the venv (fast; for tests and staging)
  --config-src FILE  default config to install (default: the checkout's monitor.toml)
  --uninstall        remove the unit and the venv; keep config, identity, state, logs
EOF
}

say() { echo "install: $*"; }
die() { echo "install: error: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --python) PY=${2:?--python needs an interpreter}; shift 2 ;;
    --config-src) CONFIG_SRC=${2:?--config-src needs a file}; shift 2 ;;
    --with-trainer) WITH_TRAINER=1; shift ;;
    --no-venv) MAKE_VENV=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

case "$PREFIX" in
  /?*) ;;
  *) die "--prefix must be an absolute path other than /: $PREFIX" ;;
esac
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || ROOT=""
fi

# systemd is PID 1 (sd_booted(3) checks the same directory), and we are not staging.
systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

# The default config for a service: the checkout's monitor.toml with every relative
# path moved to the service's directories (relative paths would otherwise resolve
# under /etc/swarmd, which is read-only for the service).
render_config() {
  cat <<EOF
# Installed by swarmd's scripts/install.sh from $(basename "$CONFIG_SRC").
# Rewritten for the service: state_dir, trainer.cwd, health.heartbeat_file and
# control.socket live in $STATE_DIR; logs.dir is $LOG_DIR.
# [trainer] command still runs the demo node: point it at your own node
# (see $PREFIX/examples/upstream-rl-swarm.toml), then: systemctl reload swarmd

EOF
  awk -v state="$STATE_DIR" -v logs="$LOG_DIR" -v venv="$PREFIX/.venv" '
    function put(key, val) { print key " = \"" val "\""; seen[key]++ }
    /^[ \t]*\[/ { sec = $0; gsub(/[][ \t]/, "", sec); sub(/#.*/, "", sec) }
    sec == "" && /^state_dir[ \t]*=/          { put("state_dir", state); next }
    sec == "logs" && /^dir[ \t]*=/            { put("dir", logs); next }
    sec == "trainer" && /^cwd[ \t]*=/         { put("cwd", state); next }
    sec == "health" && /^heartbeat_file[ \t]*=/ { put("heartbeat_file", state "/trainer.json"); next }
    sec == "control" && /^socket[ \t]*=/      { put("socket", state "/swarmd.sock"); next }
    sec == "trainer" && /^command[ \t]*=/     { gsub(/"\.venv\/bin\//, "\"" venv "/bin/") }
    { print }
    END {
      if (!seen["state_dir"]) print "install: warning: no top-level state_dir; set state_dir = \"" state "\"" > "/dev/stderr"
      if (!seen["dir"]) print "install: warning: no [logs] dir; set dir = \"" logs "\"" > "/dev/stderr"
    }
  ' "$CONFIG_SRC"
}

install_config() {
  local conf="$ROOT$CONF_DIR/monitor.toml" new
  [ -f "$CONFIG_SRC" ] || die "no default config at $CONFIG_SRC (use --config-src)"
  mkdir -p "$ROOT$CONF_DIR"
  new=$(mktemp)
  render_config > "$new"
  if [ ! -e "$conf" ]; then
    install -m 0640 "$new" "$conf"
    say "installed $CONF_DIR/monitor.toml"
  elif cmp -s "$new" "$conf"; then
    rm -f "$conf.new"
    say "$CONF_DIR/monitor.toml is up to date"
  else
    install -m 0640 "$new" "$conf.new"
    say "kept your $CONF_DIR/monitor.toml; the new default is $CONF_DIR/monitor.toml.new"
    say "  compare: diff -u $CONF_DIR/monitor.toml $CONF_DIR/monitor.toml.new"
  fi
  rm -f "$new"
  if [ -z "$ROOT" ] && getent group swarmd >/dev/null; then
    chgrp swarmd "$conf" "$ROOT$CONF_DIR"
  fi
}

install_unit() {
  local unit="$ROOT$UNIT_DIR/swarmd.service" new
  mkdir -p "$ROOT$UNIT_DIR"
  new=$(mktemp)
  sed "s#/opt/swarmd/#$PREFIX/#g" "$REPO/systemd/swarmd.service" > "$new"
  if cmp -s "$new" "$unit" 2>/dev/null; then
    say "$UNIT_DIR/swarmd.service is up to date"
  else
    # The unit is ours to replace: local changes belong in `systemctl edit swarmd`.
    install -m 0644 "$new" "$unit"
    say "installed $UNIT_DIR/swarmd.service"
  fi
  rm -f "$new"
}

ensure_user() {
  if [ -n "$ROOT" ]; then
    say "staging under $ROOT: not creating user swarmd"
  elif id -u swarmd >/dev/null 2>&1; then
    say "user swarmd exists"
  elif command -v useradd >/dev/null; then
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "swarmd watchdog" swarmd
    say "created system user swarmd"
  else
    say "useradd not found: create a system user and group 'swarmd' by hand"
  fi
}

ensure_dirs() {
  local d
  for d in "$STATE_DIR" "$LOG_DIR"; do
    mkdir -p "$ROOT$d"
    chmod 0750 "$ROOT$d"
    if [ -z "$ROOT" ] && id -u swarmd >/dev/null 2>&1; then
      chown swarmd:swarmd "$ROOT$d"
    fi
  done
}

install_venv() {
  local venv="$ROOT$PREFIX/.venv" spec="$REPO"
  mkdir -p "$ROOT$PREFIX"
  cp "$REPO/README.md" "$ROOT$PREFIX/README.md"
  if [ -d "$REPO/examples" ]; then
    rm -rf "$ROOT$PREFIX/examples"
    cp -R "$REPO/examples" "$ROOT$PREFIX/examples"
  fi
  if [ "$MAKE_VENV" = 0 ]; then
    say "--no-venv: not creating $PREFIX/.venv"
    return
  fi
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PY is older than 3.11; use --python /path/to/python3.11"
  [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
  [ "$WITH_TRAINER" = 0 ] || spec="$REPO[trainer]"
  say "installing swarmd into $PREFIX/.venv (pip)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # Not editable: the service must keep working if this checkout moves or changes.
  "$venv/bin/python" -m pip install -q --upgrade "$spec"
}

enable_unit() {
  if systemd_running; then
    systemctl daemon-reload
    systemctl enable swarmd.service
    say "enabled swarmd.service (starts at boot)"
  else
    say "systemd is not running here: not calling systemctl"
  fi
}

next_steps() {
  cat <<EOF

Next:
  edit $CONF_DIR/monitor.toml      ([trainer] command, probes; check: $PREFIX/.venv/bin/swarmd check-config $CONF_DIR/monitor.toml)
  systemctl start swarmd           (or: systemctl restart swarmd after an upgrade)
  systemctl status swarmd
  journalctl -u swarmd -f
  tail -f $LOG_DIR/monitor.log
  systemctl reload swarmd          (re-read monitor.toml without stopping the trainer)
  status page: http://127.0.0.1:9464/  (when [web] enabled = true)
EOF
}

uninstall() {
  if systemd_running; then
    systemctl disable --now swarmd.service 2>/dev/null || true
  fi
  rm -f "$ROOT$UNIT_DIR/swarmd.service"
  systemd_running && systemctl daemon-reload
  say "removed $UNIT_DIR/swarmd.service"
  if [ -d "$ROOT$PREFIX" ]; then
    rm -rf "$ROOT$PREFIX"
    say "removed $PREFIX"
  fi
  say "kept $STATE_DIR (identity swarm.pem, checkpoints), $LOG_DIR (logs),"
  say "     $CONF_DIR (config) and the swarmd user; remove them by hand if you mean to"
}

if [ "$UNINSTALL" = 1 ]; then
  uninstall
  exit 0
fi
ensure_user
ensure_dirs
install_venv
install_config
install_unit
enable_unit
next_steps

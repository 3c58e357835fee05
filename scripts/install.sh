#!/usr/bin/env bash
# Installs swarmd as a systemd service:
#   venv            /opt/swarmd/.venv          (PREFIX; --prefix)
#   config          /etc/swarmd/monitor.toml   (never overwritten once there)
#   unit            /etc/systemd/system/swarmd.service
#   state, logs     /var/lib/swarmd, /var/log/swarmd  (kept by --uninstall)
# With --instance NAME (several nodes per host, e.g. one per GPU): the template unit
# swarmd@.service, config /etc/swarmd/NAME.toml with its own web port, state and
# logs in /var/lib/swarmd/NAME and /var/log/swarmd/NAME; the venv is shared.
# Idempotent: run it again after `git pull` to upgrade.
#
#   sudo scripts/install.sh [--with-trainer] [--prefix DIR] [--python PY]
#   sudo scripts/install.sh --instance gpu0 [--web-port 9470]
#   sudo scripts/install.sh --uninstall [--instance NAME]
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
INSTANCE=""
WEB_PORT=""
FIRST_INSTANCE_PORT=9465  # 9464 is the plain install's

usage() {
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  cat <<EOF
Options:
  --root DIR         install into DIR as if it were / (no user, no systemctl)
  --prefix DIR       where the venv lives at run time (default /opt/swarmd)
  --python PY        interpreter for the venv, >= 3.11 (default python3)
  --with-trainer     also install the trainer's extras (torch, hivemind, trl, ...)
  --no-venv          skip the venv (fast; for tests and staging)
  --config-src FILE  default config to install (default: the checkout's monitor.toml)
  --instance NAME    install instance NAME of swarmd@.service (letters, digits, - and _)
  --web-port PORT    its status page / metrics port (default: the next free from $FIRST_INSTANCE_PORT)
  --uninstall        remove the unit and the venv; keep config, identity, state, logs
                     (with --instance: only disable that instance; the venv stays)
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
    --instance) [ -n "${2:-}" ] || die "--instance needs a name (e.g. gpu0)"; INSTANCE=$2; shift 2 ;;
    --web-port) [ -n "${2:-}" ] || die "--web-port needs a port"; WEB_PORT=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

case "$PREFIX" in
  /?*) ;;
  *) die "--prefix must be an absolute path other than /: $PREFIX" ;;
esac
if [ -n "$INSTANCE" ]; then
  # The name becomes a path component and a unit name: nothing that could escape.
  [[ "$INSTANCE" =~ ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ ]] \
    || die "--instance must be letters, digits, - and _ (e.g. gpu0): $INSTANCE"
  [ "$INSTANCE" != monitor ] || die "--instance monitor would share the plain install's config; pick another name"
  STATE_DIR=$STATE_DIR/$INSTANCE
  LOG_DIR=$LOG_DIR/$INSTANCE
  CONF_NAME=$INSTANCE.toml
  UNIT_SRC=swarmd@.service
  SERVICE=swarmd@$INSTANCE.service
else
  [ -z "$WEB_PORT" ] || die "--web-port goes with --instance"
  CONF_NAME=monitor.toml
  UNIT_SRC=swarmd.service
  SERVICE=swarmd.service
fi
if [ -n "$WEB_PORT" ]; then
  [[ "$WEB_PORT" =~ ^[0-9]+$ ]] && [ "$WEB_PORT" -ge 1 ] && [ "$WEB_PORT" -le 65535 ] \
    || die "--web-port must be a TCP port number: $WEB_PORT"
fi
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
# control.socket live in $STATE_DIR; logs.dir is $LOG_DIR.${WEB_PORT:+ [web] port is $WEB_PORT.}
# [trainer] command still runs the demo node: point it at your own node
# (see $PREFIX/examples/upstream-rl-swarm.toml), then: systemctl reload ${SERVICE%.service}

EOF
  awk -v state="$STATE_DIR" -v logs="$LOG_DIR" -v venv="$PREFIX/.venv" -v port="$WEB_PORT" '
    function put(key, val) { print key " = \"" val "\""; seen[key]++ }
    /^[ \t]*\[/ { sec = $0; gsub(/[][ \t]/, "", sec); sub(/#.*/, "", sec) }
    sec == "" && /^state_dir[ \t]*=/          { put("state_dir", state); next }
    sec == "logs" && /^dir[ \t]*=/            { put("dir", logs); next }
    sec == "trainer" && /^cwd[ \t]*=/         { put("cwd", state); next }
    sec == "health" && /^heartbeat_file[ \t]*=/ { put("heartbeat_file", state "/trainer.json"); next }
    sec == "control" && /^socket[ \t]*=/      { put("socket", state "/swarmd.sock"); next }
    sec == "web" && port != "" && /^port[ \t]*=/ { print "port = " port; next }
    sec == "trainer" && /^command[ \t]*=/     { gsub(/"\.venv\/bin\//, "\"" venv "/bin/") }
    { print }
    END {
      if (!seen["state_dir"]) print "install: warning: no top-level state_dir; set state_dir = \"" state "\"" > "/dev/stderr"
      if (!seen["dir"]) print "install: warning: no [logs] dir; set dir = \"" logs "\"" > "/dev/stderr"
    }
  ' "$CONFIG_SRC"
}

# The web port an instance keeps: the one in its config when it has one (so a
# re-install changes nothing), else the lowest from FIRST_INSTANCE_PORT that no other
# config in CONF_DIR uses.
choose_web_port() {
  local conf="$ROOT$CONF_DIR/$CONF_NAME" used port
  if [ -z "$INSTANCE" ] || [ -n "$WEB_PORT" ]; then
    return
  fi
  port=$(web_ports "$conf" | head -n 1)
  if [ -z "$port" ]; then
    used=$(for f in "$ROOT$CONF_DIR"/*.toml; do [ "$f" = "$conf" ] || web_ports "$f"; done)
    port=$FIRST_INSTANCE_PORT
    while grep -qx "$port" <<<"$used"; do port=$((port + 1)); done
  fi
  WEB_PORT=$port
}

# The [web] port of a config file, if it has one.
web_ports() {
  [ -f "$1" ] || return 0
  awk '/^[ \t]*\[/ { sec = $0; gsub(/[][ \t]/, "", sec); sub(/#.*/, "", sec) }
       sec == "web" && /^port[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t#].*/, "", v); print v }' "$1"
}

install_config() {
  local conf="$ROOT$CONF_DIR/$CONF_NAME" new
  [ -f "$CONFIG_SRC" ] || die "no default config at $CONFIG_SRC (use --config-src)"
  mkdir -p "$ROOT$CONF_DIR"
  new=$(mktemp)
  render_config > "$new"
  if [ ! -e "$conf" ]; then
    install -m 0640 "$new" "$conf"
    say "installed $CONF_DIR/$CONF_NAME"
  elif cmp -s "$new" "$conf"; then
    rm -f "$conf.new"
    say "$CONF_DIR/$CONF_NAME is up to date"
  else
    install -m 0640 "$new" "$conf.new"
    say "kept your $CONF_DIR/$CONF_NAME; the new default is $CONF_DIR/$CONF_NAME.new"
    say "  compare: diff -u $CONF_DIR/$CONF_NAME $CONF_DIR/$CONF_NAME.new"
  fi
  rm -f "$new"
  if [ -z "$ROOT" ] && getent group swarmd >/dev/null; then
    chgrp swarmd "$conf" "$ROOT$CONF_DIR"
  fi
}

install_unit() {
  local unit="$ROOT$UNIT_DIR/$UNIT_SRC" new
  mkdir -p "$ROOT$UNIT_DIR"
  new=$(mktemp)
  sed "s#/opt/swarmd/#$PREFIX/#g" "$REPO/systemd/$UNIT_SRC" > "$new"
  if cmp -s "$new" "$unit" 2>/dev/null; then
    say "$UNIT_DIR/$UNIT_SRC is up to date"
  else
    # The unit is ours to replace: local changes belong in `systemctl edit`.
    install -m 0644 "$new" "$unit"
    say "installed $UNIT_DIR/$UNIT_SRC"
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
  for d in ${INSTANCE:+/var/lib/swarmd /var/log/swarmd} "$STATE_DIR" "$LOG_DIR"; do
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
    systemctl enable "$SERVICE"
    say "enabled $SERVICE (starts at boot)"
  else
    say "systemd is not running here: not calling systemctl"
  fi
}

next_steps() {
  local unit=${SERVICE%.service}
  cat <<EOF

Next:
  edit $CONF_DIR/$CONF_NAME      ([trainer] command, probes; check: $PREFIX/.venv/bin/swarmd check-config $CONF_DIR/$CONF_NAME)
  systemctl start $unit           (or: systemctl restart $unit after an upgrade)
  systemctl status $unit
  journalctl -u $unit -f
  tail -f $LOG_DIR/monitor.log
  systemctl reload $unit          (re-read $CONF_NAME without stopping the trainer)
  status page: http://127.0.0.1:${WEB_PORT:-9464}/  (when [web] enabled = true)
EOF
}

uninstall_instance() {
  if systemd_running; then
    systemctl disable --now "$SERVICE" 2>/dev/null || true
  fi
  say "disabled $SERVICE; kept $CONF_DIR/$CONF_NAME, $STATE_DIR and $LOG_DIR,"
  say "     and the venv and swarmd@.service other instances use (plain --uninstall removes those)"
}

uninstall() {
  if systemd_running; then
    for svc in $(systemctl list-units --all --plain --no-legend 'swarmd@*.service' 2>/dev/null | awk '{print $1}'); do
      systemctl disable --now "$svc" 2>/dev/null || true
    done
    systemctl disable --now swarmd.service 2>/dev/null || true
  fi
  rm -f "$ROOT$UNIT_DIR/swarmd.service" "$ROOT$UNIT_DIR/swarmd@.service"
  if systemd_running; then systemctl daemon-reload; fi
  say "removed $UNIT_DIR/swarmd.service and swarmd@.service"
  if [ -d "$ROOT$PREFIX" ]; then
    rm -rf "$ROOT$PREFIX"
    say "removed $PREFIX"
  fi
  say "kept $STATE_DIR (identity swarm.pem, checkpoints), $LOG_DIR (logs),"
  say "     $CONF_DIR (config) and the swarmd user; remove them by hand if you mean to"
}

if [ "$UNINSTALL" = 1 ]; then
  if [ -n "$INSTANCE" ]; then uninstall_instance; else uninstall; fi
  exit 0
fi
choose_web_port
ensure_user
ensure_dirs
install_venv
install_config
install_unit
enable_unit
next_steps

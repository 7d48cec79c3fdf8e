#!/usr/bin/env bash
# Start/stop a real PostgreSQL server (Debian's binaries, a cluster of its own)
# on 127.0.0.1 for the integration tests. See `postgres.sh --help`.
set -euo pipefail

LOG_TAG=postgres
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

PG_PORT="${STIP_PG_PORT:-15432}"
START_TIMEOUT="${STIP_PG_START_TIMEOUT:-60}"
STOP_TIMEOUT=30
DB_NAME=stip
DB_USER=stip
STATE="$STIP_STATE"
POINTER="$STATE/postgres.location"   # which base folder holds our cluster

# Where the cluster lives (the "base" folder, owned by the server's OS user):
#   BASE/data          PGDATA
#   BASE/run           unix socket folder (unix_socket_directories)
#   BASE/postgres.log  server log
#
# Preferred base: $STIP_STATE_DIR/postgres. PostgreSQL refuses to run as root,
# so when this script runs as root the server runs as the OS user `postgres`,
# which must be able to reach and write that folder. The default state folder
# is under $HOME, and /root is mode 700, so as root it usually is NOT reachable;
# rather than loosening /root's permissions, the cluster then goes to
# FALLBACK_BASE below, in /var/tmp (sticky, world-traversable, kept across
# reboots unlike a tmpfs /tmp), owned by postgres with mode 700 and keyed by the
# port. The same fallback is used when the socket path would be longer than
# the 107 bytes a unix socket path may have. The choice is written to
# $STIP_STATE_DIR/postgres.location so that status/stop/reset find it again.
PREFERRED_BASE="$STATE/postgres"
FALLBACK_BASE="/var/tmp/stip-compliance-pg-$PG_PORT"

usage() {
  cat <<EOF
Usage: deploy/local/postgres.sh COMMAND

Runs a real PostgreSQL server (Debian's, highest version under
/usr/lib/postgresql) with a cluster of its own, on 127.0.0.1 only, for
integration tests. Database '$DB_NAME' owned by role '$DB_USER'; trust auth.

Commands:
  start       install PostgreSQL if missing, initdb if new, start the server,
              wait until it answers and make sure role and database exist
              (no-op if it already runs)
  stop        stop the server this script started (fast shutdown, then
              immediate after ${STOP_TIMEOUT} s); success if not running
  status      exit 0 and say so if it runs and answers, 3 if not
  url         print the connection URL: postgresql://$DB_USER@127.0.0.1:\$PORT/$DB_NAME
  reset       stop, then wipe the cluster
  -h, --help  this text

Environment:
  STIP_CACHE_DIR          cache root (default \$HOME/.cache/stip-compliance)
  STIP_STATE_DIR          state root (default \$STIP_CACHE_DIR/state); the cluster
                          goes to \$STIP_STATE_DIR/postgres, or to
                          /var/tmp/stip-compliance-pg-\$PORT when the server's OS
                          user cannot reach that (running as root with the
                          state under /root); 'status' tells which
  STIP_PG_PORT            TCP port, default 15432
  STIP_PG_START_TIMEOUT   seconds to wait for readiness, default 60
EOF
}

# --- binaries and OS user --------------------------------------------------------

PGBIN=""
# find_pgbin [MAJOR]: the bin folder of that major version, or the highest one.
find_pgbin() {
  local want="${1:-}" d
  if [ -n "$want" ]; then
    d="/usr/lib/postgresql/$want/bin"
    [ -x "$d/postgres" ] && [ -x "$d/pg_ctl" ] && { PGBIN="$d"; return 0; }
    return 1
  fi
  d="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' \
         2>/dev/null | sort -V | tail -n1)"
  [ -n "$d" ] || return 1
  d="$(dirname "$d")"
  [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/pg_isready" ] || return 1
  PGBIN="$d"
}

ensure_pgbin() {
  [ -n "$PGBIN" ] && return 0
  if ! find_pgbin; then
    ensure_pkgs postgresql
    find_pgbin || die "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
  fi
}

if [ "$(id -u)" -eq 0 ]; then
  SERVER_USER=postgres
else
  SERVER_USER="$(id -un)"
fi

# as_server CMD...: run CMD as the server's OS user, from / (as root, the
# caller's cwd, e.g. /root, is not readable by postgres). fd 9, the lock of
# with_lock, is closed: a postmaster inheriting it would hold the lock forever.
as_server() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd / && runuser -u "$SERVER_USER" -- "$@") 9>&-
  else
    (cd / && "$@") 9>&-
  fi
}

ensure_server_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  id -u "$SERVER_USER" >/dev/null 2>&1 \
    || die "OS user '$SERVER_USER' is missing (it comes with Debian's postgresql package)"
}

# --- where the cluster lives -------------------------------------------------------

BASE=""
DATA=""
set_base() {
  BASE="$1"
  DATA="$BASE/data"
}

has_cluster() { [ -f "$1/data/PG_VERSION" ]; }

# locate_base: find an existing cluster of ours (pointer file, then the two
# places it can be). Creates nothing.
locate_base() {
  local b
  if [ -s "$POINTER" ]; then
    b="$(cat "$POINTER")"
    if has_cluster "$b"; then set_base "$b"; return 0; fi
  fi
  for b in "$PREFERRED_BASE" "$FALLBACK_BASE"; do
    if has_cluster "$b"; then set_base "$b"; return 0; fi
  done
  return 1
}

# base_usable DIR: create DIR for the server user and check that it can write
# there and that the socket path fits.
base_usable() {
  local dir="$1" sock="$1/run/.s.PGSQL.$PG_PORT"
  [ "${#sock}" -le 107 ] || return 1
  mkdir -p "$dir" 2>/dev/null || return 1
  if [ "$(id -u)" -eq 0 ]; then
    chown "$SERVER_USER": "$dir" || return 1
  fi
  chmod 700 "$dir" || return 1
  as_server test -w "$dir" -a -x "$dir" 2>/dev/null
}

# choose_base: for a new cluster.
choose_base() {
  if base_usable "$PREFERRED_BASE"; then
    set_base "$PREFERRED_BASE"
  else
    rmdir "$PREFERRED_BASE" 2>/dev/null || true
    if [ -L "$FALLBACK_BASE" ] || { [ -e "$FALLBACK_BASE" ] \
         && [ "$(stat -c %U "$FALLBACK_BASE")" != "$SERVER_USER" ] \
         && [ "$(stat -c %U "$FALLBACK_BASE")" != "$(id -un)" ]; }; then
      die "$FALLBACK_BASE exists but is not ours (symlink or foreign owner); remove it or set STIP_STATE_DIR"
    fi
    log "$PREFERRED_BASE is not usable by OS user '$SERVER_USER'; using $FALLBACK_BASE"
    base_usable "$FALLBACK_BASE" || die "cannot prepare $FALLBACK_BASE for OS user '$SERVER_USER'"
    set_base "$FALLBACK_BASE"
  fi
  mkdir -p "$STATE"
  printf '%s\n' "$BASE" >"$POINTER"
}

# --- cluster -----------------------------------------------------------------------

init_cluster() {
  if has_cluster "$BASE"; then
    local major
    major="$(cat "$DATA/PG_VERSION")"
    find_pgbin "$major" \
      || die "cluster in $DATA is PostgreSQL $major, whose binaries are not installed; 'postgres.sh reset' wipes it"
    return 0
  fi
  ensure_pgbin
  # A half-made data folder (initdb interrupted) is removed and made anew.
  [ -e "$DATA" ] && as_server rm -rf "$DATA"
  local locale=C
  if locale -a 2>/dev/null | grep -ix 'c.utf-\?8' >/dev/null; then locale=C.UTF-8; fi
  log "initdb: new cluster in $DATA ($("$PGBIN/postgres" --version), locale $locale)"
  as_server "$PGBIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 \
      --locale="$locale" >"$STATE/postgres-initdb.log" 2>&1 \
    || { tail -n 20 "$STATE/postgres-initdb.log" >&2; die "initdb failed"; }
  printf "\n# deploy/local/postgres.sh settings, rewritten on every start\ninclude_if_exists = 'stip.conf'\n" \
    | as_server tee -a "$DATA/postgresql.conf" >/dev/null
}

write_config() {
  as_server mkdir -p "$BASE/run"
  # Written through the server user so that the file is its own.
  as_server tee "$DATA/stip.conf" >/dev/null <<EOF
# Written by deploy/local/postgres.sh on every start: edit the script instead.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$BASE/run'
# A throw-away test cluster: durability traded for speed. A crash of the host
# can corrupt it; 'postgres.sh reset' then starts afresh.
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
log_timezone = 'UTC'
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

pid_file_field() {  # postmaster.pid line N (1: pid, 4: port)
  sed -n "${1}p" "$DATA/postmaster.pid" 2>/dev/null || true
}

# server_running: the postmaster of our data folder runs.
server_running() {
  [ -n "$DATA" ] && [ -f "$DATA/postmaster.pid" ] || return 1
  as_server "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

answers() {
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -t 2
}

wait_ready() {
  local port="$1" t0="$2" deadline
  deadline=$(( $(date +%s) + START_TIMEOUT ))
  until answers "$port"; do
    if ! server_running; then
      tail -n 30 "$BASE/postgres.log" >&2 || true
      die "PostgreSQL exited during start-up (log: $BASE/postgres.log)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 30 "$BASE/postgres.log" >&2 || true
      die "PostgreSQL does not answer on 127.0.0.1:$port after $START_TIMEOUT s"
    fi
    sleep 0.5
  done
}

psql_admin() {
  PGOPTIONS='' "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres
}

ensure_db() {
  psql_admin >/dev/null <<SQL || die "could not create role/database '$DB_NAME'"
SELECT 'CREATE ROLE $DB_USER LOGIN CREATEDB'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') \gexec
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME') \gexec
SQL
}

server_version() {
  PGOPTIONS='' "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$PG_PORT" -U "$DB_USER" -d "$DB_NAME" \
    -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1
}

url() { echo "postgresql://$DB_USER@127.0.0.1:$PG_PORT/$DB_NAME"; }

# --- commands ----------------------------------------------------------------------

cmd_start() {
  check_port_number STIP_PG_PORT "$PG_PORT"
  with_lock "$STATE/.postgres.lock"
  local t0
  t0="$(now_s)"
  ensure_pgbin
  ensure_server_user
  if locate_base; then
    init_cluster   # picks the binaries matching the cluster's version
    if server_running; then
      local port
      port="$(pid_file_field 4)"
      [ "$port" = "$PG_PORT" ] \
        || die "our server already runs on port $port, not $PG_PORT; 'postgres.sh stop' it first (with STIP_PG_PORT=$port)"
      log "already running (pid $(pid_file_field 1)); checking that it answers"
      wait_ready "$PG_PORT" "$t0"
      ensure_db
      log "PostgreSQL $(server_version) ready: $(url) ($(elapsed_since "$t0") s)"
      return 0
    fi
  else
    choose_base
    init_cluster
  fi
  if port_open "$PG_PORT"; then
    die "port 127.0.0.1:$PG_PORT is already in use by another process; pick another with STIP_PG_PORT"
  fi
  write_config
  log "starting PostgreSQL from $PGBIN, data $DATA, on 127.0.0.1:$PG_PORT"
  # -w: pg_ctl itself waits until the server accepts connections.
  if ! as_server "$PGBIN/pg_ctl" -D "$DATA" -l "$BASE/postgres.log" \
         -w -t "$START_TIMEOUT" -s start >&2; then
    tail -n 30 "$BASE/postgres.log" >&2 || true
    die "PostgreSQL failed to start (log: $BASE/postgres.log)"
  fi
  wait_ready "$PG_PORT" "$t0"
  ensure_db
  log "PostgreSQL $(server_version) ready: $(url) (pid $(pid_file_field 1), $(elapsed_since "$t0") s)"
}

cmd_stop() {
  with_lock "$STATE/.postgres.lock"
  if ! locate_base; then
    log "not running (no cluster)"
    return 0
  fi
  find_pgbin "$(cat "$DATA/PG_VERSION")" || ensure_pgbin
  if ! server_running; then
    log "not running"
    return 0
  fi
  local pid
  pid="$(pid_file_field 1)"
  log "stopping PostgreSQL (pid $pid, data $DATA)"
  if ! as_server "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t "$STOP_TIMEOUT" -s stop >&2; then
    log "fast shutdown did not finish in $STOP_TIMEOUT s: immediate shutdown"
    as_server "$PGBIN/pg_ctl" -D "$DATA" -m immediate -w -t 10 -s stop >&2 || true
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      log "still running: SIGKILL to postmaster $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  log "stopped"
}

cmd_status() {
  if ! locate_base; then
    log "not running (no cluster yet)"
    return 3
  fi
  find_pgbin "$(cat "$DATA/PG_VERSION")" || ensure_pgbin
  if ! server_running; then
    log "not running (cluster in $DATA)"
    return 3
  fi
  local port
  port="$(pid_file_field 4)"
  if answers "$port"; then
    PG_PORT="$port"
    log "running (pid $(pid_file_field 1)), PostgreSQL $(server_version) answering: $(url) (data $DATA)"
    return 0
  fi
  log "postmaster $(pid_file_field 1) runs but 127.0.0.1:$port does not answer (yet)"
  return 1
}

cmd_reset() {
  cmd_stop
  if locate_base; then
    log "wiping $BASE"
    rm -rf "$BASE"
  fi
  rm -f "$POINTER"
}

main() {
  [ $# -ge 1 ] || { usage >&2; exit 2; }
  local cmd="$1"
  shift
  [ $# -eq 0 ] || die "$cmd takes no arguments"
  case "$cmd" in
    start)          cmd_start ;;
    stop)           cmd_stop ;;
    status)         cmd_status ;;
    url)            url ;;
    reset)          cmd_reset ;;
    -h|--help|help) usage ;;
    *)              usage >&2; die "unknown command: $cmd" ;;
  esac
}

main "$@"

# shellcheck shell=bash
# Helpers shared by deploy/local/kafka.sh and deploy/local/postgres.sh.
# Sourced, not run. All messages go to stderr, prefixed with $LOG_TAG.

: "${LOG_TAG:=local}"

STIP_CACHE="${STIP_CACHE_DIR:-$HOME/.cache/stip-compliance}"
# shellcheck disable=SC2034 # used by the scripts that source this file
STIP_STATE="${STIP_STATE_DIR:-$STIP_CACHE/state}"

log()  { printf '%s: %s\n' "$LOG_TAG" "$*" >&2; }
die()  { printf '%s: error: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }

# now_s: seconds since the epoch, with a fraction (for timings in messages).
now_s() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

# pkg_installed PKG: true when dpkg knows PKG as installed.
pkg_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

# ensure_pkgs PKG...: apt-get install those of PKG... that are not installed.
# `apt-get update` runs only when something has to be installed.
ensure_pkgs() {
  local missing=() p
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 \
    || die "missing packages (${missing[*]}) and no apt-get here: install them by hand"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 \
      || die "missing packages (${missing[*]}): run as root or install them by hand"
    sudo=(sudo)
  fi
  log "installing Debian packages: ${missing[*]} (apt-get update first)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
    || die "apt-get update failed"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# with_lock FILE: take an exclusive lock on FILE (fd 9) for the rest of the
# script, so that two concurrent start/stop calls do not race each other.
with_lock() {
  mkdir -p "$(dirname "$1")"
  exec 9>"$1"
  if ! flock -w 120 9; then
    die "could not lock $1 within 120 s (another start/stop still running?)"
  fi
}

# check_port_number NAME VALUE
check_port_number() {
  case "$2" in
    ''|*[!0-9]*) die "$1 must be a TCP port number, got '$2'" ;;
  esac
  if [ "$2" -lt 1 ] || [ "$2" -gt 65535 ]; then die "$1 out of range: $2"; fi
}

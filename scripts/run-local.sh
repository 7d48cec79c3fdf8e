#!/usr/bin/env bash
# Runs stip-compliance on this machine with a sample year: installs what is missing, builds
# stip-local, stipctl and the sample generator, starts stip-local on a fresh demo data
# directory, enrolls the sample enterprises of five parks, submits their filings for the
# year (invalid and amended ones among them), waits for every decision, and shows what a
# regulator looks at: decisions by outcome, the roster, each park's statistics and each
# region's share of output. stip-local keeps running afterwards, for stipctl.
#
#   sudo scripts/run-local.sh          run the demo (a second run starts over)
#   scripts/run-local.sh stop          stop the stip-local the demo started
#   scripts/run-local.sh status        is it running, and where
#
# Environment: STIP_BUILD_DIR (default build, shared with scripts/test.sh), STIP_DEMO_DIR
# (default /var/tmp/stip-compliance-demo), STIP_DEMO_PORT (default 50050, stipctl's default).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
LOG_TAG=run-local
# shellcheck source=../deploy/local/lib.sh
source deploy/local/lib.sh

build_dir="${STIP_BUILD_DIR:-build}"
demo_dir="${STIP_DEMO_DIR:-/var/tmp/stip-compliance-demo}"
port="${STIP_DEMO_PORT:-50050}"
year=2024
parks=(zhongguancun urumqi-hnz kunming-hnz wuhan-east-lake changchun-hnz)
pid_file="$demo_dir/stip-local.pid"
stipctl="$root/$build_dir/tools/stipctl/stipctl"

running_pid() {
  [[ -f "$pid_file" ]] || return 1
  local pid
  pid="$(cat "$pid_file")"
  kill -0 "$pid" 2>/dev/null && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == stip-local ]] &&
    echo "$pid"
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && die "stip-local (pid $pid) did not stop within 20 s"
    log "stopped stip-local (pid $pid)"
  else
    log "stip-local is not running"
  fi
  rm -f "$pid_file"
}

case "${1:-run}" in
  -h | --help)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  stop)
    stop
    exit 0
    ;;
  status)
    if pid="$(running_pid)"; then
      log "running (pid $pid) on 127.0.0.1:$port, data in $demo_dir/data, log $demo_dir/stip-local.log"
    else
      log "not running"
    fi
    exit 0
    ;;
  run) ;;
  *) die "unknown command '$1' (run, stop, status; --help)" ;;
esac

started=$(now_s)
phase() { log "$1 ($(elapsed_since "$started") s)"; }

phase "installing what is missing"
scripts/install-deps.sh

phase "building stip-local, stipctl and the sample generator in $build_dir"
mkdir -p "$build_dir"
cmake -S . -B "$build_dir" -G Ninja -DSTIP_WERROR=ON >"$build_dir.configure.log" 2>&1 ||
  { cat "$build_dir.configure.log" >&2; die "cmake failed"; }
ninja -C "$build_dir" -j "$(nproc)" stip-local stipctl stip-sample-year

phase "starting over in $demo_dir"
stop >/dev/null 2>&1 || true
rm -rf "$demo_dir"
mkdir -p "$demo_dir"
"$build_dir/tools/sample_year/stip-sample-year" --out "$demo_dir/sample" --year "$year" \
  >"$demo_dir/sample.txt"

# stip-local refuses STIP_* variables it does not know; these are this script's own.
(
  unset STIP_DEMO_DIR STIP_DEMO_PORT
  exec "$build_dir/services/local/stip-local" --data-dir "$demo_dir/data" \
    --grpc-listen "127.0.0.1:$port" --admin-listen 127.0.0.1:0 \
    >>"$demo_dir/stip-local.log" 2>&1
) &
echo $! >"$pid_file"
export STIP_SERVER="127.0.0.1:$port"
for _ in $(seq 1 150); do
  "$stipctl" health >/dev/null 2>&1 && break
  running_pid >/dev/null || { tail -20 "$demo_dir/stip-local.log" >&2; die "stip-local exited"; }
  sleep 0.2
done
"$stipctl" health >/dev/null || die "stip-local did not become healthy; see $demo_dir/stip-local.log"
phase "stip-local is serving on $STIP_SERVER (pid $(cat "$pid_file"))"

phase "enrolling the sample enterprises"
"$stipctl" enterprise enroll-bulk "$demo_dir/sample/enterprises.ndjson"

phase "submitting the $year filings and waiting for the decisions"
# Exit 1 means some filings were refused: the sample holds invalid ones on purpose.
status=0
"$stipctl" filing submit-bulk "$demo_dir/sample/filings.ndjson" --wait \
  --report "$demo_dir/refused.ndjson" || status=$?
[[ $status -le 1 ]] || die "submitting the filings failed (exit $status)"
phase "submitting the amended filings (revision 2) and waiting for their decisions"
"$stipctl" filing submit-bulk "$demo_dir/sample/amendments.ndjson" --wait

phase "the year $year as a regulator sees it"
echo
echo "== Park statistics, $year (hi-tech: the decision in force is QUALIFIED; listed: on the Torch program roster)"
for park in "${parks[@]}"; do
  echo
  "$stipctl" park stats "$park" --year "$year"
done
echo
echo "== Regions, $year: each region's share of all parks and of their output"
echo
"$stipctl" region stats --year "$year"
echo
echo "== The roster: the first enterprises listed in Urumqi"
echo
"$stipctl" enterprise list --park urumqi-hnz --status qualified --limit 5
echo
echo "== Refused filings: $(wc -l <"$demo_dir/refused.ndjson") (each with its field and rule in $demo_dir/refused.ndjson)"
head -n 2 "$demo_dir/refused.ndjson"
echo
cat <<EOF
stip-local keeps running on $STIP_SERVER (log: $demo_dir/stip-local.log). Try:

  export STIP_SERVER=$STIP_SERVER PATH="$root/$build_dir/tools/stipctl:\$PATH"
  stipctl --help
  stipctl decision watch --from d.0 --count 3         # every decision, resumable by cursor
  stipctl listing watch --change delisted             # roster changes as they happen
  stipctl enterprise list --park kunming-hnz --limit 3 # then: stipctl enterprise history USCC
  stipctl park list --region western
  stipctl window close $((year + 1))                     # a year on: delists the listed who did not file

Stop it with: scripts/run-local.sh stop
EOF
phase "done"

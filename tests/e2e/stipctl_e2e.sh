#!/usr/bin/env bash
# The end-to-end test: one scenario drives stipctl through enrollment, submission (single,
# bulk with invalid filings, amended), waiting, watching decisions and listings with a resume,
# the roster, a window close and statistics, twice:
#   (a) against stip-local on a temporary data directory (the embedded SQLite backends);
#   (b) against stip-intake, stip-assessment and stip-registry as separate processes on the
#       real Kafka broker (topics of their own) and a fresh PostgreSQL database.
# Both runs must give the same decisions, roster and statistics. Then, on stip-local only: a
# filing acknowledged by stip-local survives kill -9 of it and is decided after the restart.
#
#   tests/e2e/stipctl_e2e.sh BUILD_DIR
#
# Environment: STIP_TEST_KAFKA (host:port) and STIP_TEST_POSTGRES (a PostgreSQL URL whose
# role may CREATE DATABASE), as scripts/test.sh exports them; the test fails without them.
# STIP_TEST_E2E_KEEP=1 keeps the work directory (logs, outputs) after a pass.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOG_TAG=stipctl_e2e
# shellcheck source=../../deploy/local/lib.sh
source "$root/deploy/local/lib.sh"
check="$root/tests/e2e/e2e_check.py"

[[ $# -eq 1 ]] || die "usage: $0 BUILD_DIR"
build_dir="$(cd "$1" && pwd)" || die "no build directory $1"
[[ -n "${STIP_TEST_KAFKA:-}" ]] ||
  die "STIP_TEST_KAFKA is not set: start Kafka (deploy/local/kafka.sh start) and export its address"
[[ -n "${STIP_TEST_POSTGRES:-}" ]] ||
  die "STIP_TEST_POSTGRES is not set: start PostgreSQL (deploy/local/postgres.sh start) and export \$(deploy/local/postgres.sh url)"
command -v python3 >/dev/null || die "python3 is required"
command -v psql >/dev/null || die "psql is required (Debian: postgresql-client)"

stipctl_bin="$build_dir/tools/stipctl/stipctl"
sample_bin="$build_dir/tools/sample_year/stip-sample-year"
local_bin="$build_dir/services/local/stip-local"
intake_bin="$build_dir/services/intake/stip-intake"
assessment_bin="$build_dir/services/assessment/stip-assessment"
registry_bin="$build_dir/services/registry/stip-registry"
for bin in "$stipctl_bin" "$sample_bin" "$local_bin" "$intake_bin" "$assessment_bin" "$registry_bin"; do
  [[ -x "$bin" ]] || die "$bin is missing: build it first (ninja -C $build_dir $(basename "$bin"))"
done

parks=(zhongguancun urumqi-hnz kunming-hnz wuhan-east-lake changchun-hnz)
work="$(mktemp -d "${TMPDIR:-/tmp}/stipctl-e2e.XXXXXX")"
started=$(now_s)
pids=()
failures=()
passes=()
phase() { log "$1 ($(elapsed_since "$started") s)"; }
pass() {
  passes+=("$1")
  log "ok: $1"
}
# fail MESSAGE: a failed check ends the test (the trap prints the summary).
fail() {
  failures+=("$1")
  exit 1
}

# stop_pid PID: SIGTERM, then SIGKILL after 20 s; only processes this script started.
stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

finish() {
  local status=$? pid
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  echo
  local p
  for p in "${passes[@]}"; do echo "  PASS  $p"; done
  if [[ $status -eq 0 && ${#failures[@]} -eq 0 ]]; then
    echo "stipctl_e2e: PASS (${#passes[@]} checks, $(elapsed_since "$started") s)"
    [[ "${STIP_TEST_E2E_KEEP:-0}" == 1 ]] || rm -rf "$work"
  else
    local f
    for f in "${failures[@]}"; do echo "  FAIL  $f"; done
    [[ ${#failures[@]} -gt 0 ]] || echo "  FAIL  an unexpected error (exit $status); see the messages above"
    echo "stipctl_e2e: FAIL ($(elapsed_since "$started") s); logs and outputs kept in $work"
    [[ $status -ne 0 ]] || status=1
  fi
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start NAME LOG CMD...: starts a service in the background and records its pid in $last_pid.
start() {
  local name=$1 log_file=$2
  shift 2
  "$@" >>"$log_file" 2>&1 &
  last_pid=$!
  pids+=("$last_pid")
  log "started $name (pid $last_pid)"
}

# wait_healthy LOG_DIR PID...: until stipctl health passes (30 s), failing when a process
# exits; the logs of LOG_DIR are shown then.
wait_healthy() {
  local log_dir=$1 pid
  shift
  for _ in $(seq 1 150); do
    "${ctl[@]}" health >/dev/null 2>&1 && return 0
    for pid in "$@"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$log_dir"/*.log >&2
        fail "a service (pid $pid) exited at start-up; see $log_dir"
      fi
    done
    sleep 0.2
  done
  "${ctl[@]}" health >&2 || true
  fail "the services did not become healthy within 30 s; see $log_dir"
}

# The sample, the same for both runs: a small year 2024 and a hand-made 2023 for 12 of its
# enterprises (see e2e_check.py make-2023).
sample="$work/sample"
"$sample_bin" --out "$sample" --scale 0.05 --year 2024 >"$work/sample.txt"
python3 "$check" make-2023 "$sample" "$sample"
phase "sample: $(wc -l <"$sample/enterprises.ndjson") enterprises, $(wc -l <"$sample/filings.ndjson") filings for 2024, $(($(wc -l <"$sample/filings-2023.ndjson") + 1)) for 2023, $(wc -l <"$sample/amendments.ndjson") amendments"

# scenario NAME: drives the services behind "${ctl[@]}" and writes the normalized results to
# $work/NAME/norm. Checks what a run must show on its own; the runs are compared afterwards.
scenario() {
  local name=$1 out="$work/$1" status
  local norm="$out/norm"
  mkdir -p "$norm"

  "${ctl[@]}" enterprise enroll-bulk "$sample/enterprises.ndjson" 2>"$out/enroll.err" ||
    fail "$name: enterprise enroll-bulk failed: $(cat "$out/enroll.err")"
  # Idempotent: a second run changes nothing and fails nothing.
  "${ctl[@]}" enterprise enroll-bulk "$sample/enterprises.ndjson" 2>>"$out/enroll.err" ||
    fail "$name: enterprise enroll-bulk, run again, failed"
  pass "$name: enterprise enroll-bulk (twice)"

  # One filing, waited for: the decision explains each criterion.
  "${ctl[@]}" filing submit "$sample/single-2023.json" --wait >"$out/single.txt" 2>"$out/single.err" ||
    fail "$name: filing submit --wait failed: $(cat "$out/single.err")"
  local criterion
  for criterion in "R&D expenditure / revenue" "tertiary-educated staff" "R&D staff" \
    "Outcome:     QUALIFIED"; do
    grep -qF "$criterion" "$out/single.txt" ||
      fail "$name: the decision printed by filing submit --wait lacks '$criterion'"
  done
  pass "$name: filing submit --wait prints the decision with each criterion"

  "${ctl[@]}" filing submit-bulk "$sample/filings-2023.ndjson" --wait 2>"$out/bulk-2023.err" ||
    fail "$name: filing submit-bulk of the 2023 filings failed: $(cat "$out/bulk-2023.err")"

  # The year's filings, invalid ones among them: exit 1 and a report with field and rule.
  status=0
  "${ctl[@]}" filing submit-bulk "$sample/filings.ndjson" --wait --report "$out/refused.ndjson" \
    2>"$out/bulk-2024.err" || status=$?
  [[ $status -eq 1 ]] ||
    fail "$name: filing submit-bulk with invalid filings exited $status, not 1: $(cat "$out/bulk-2024.err")"
  python3 "$check" report "$out/refused.ndjson" "$norm/refused.txt" ||
    fail "$name: the refused filings' report"
  grep -q "decisions:" "$out/bulk-2024.err" || fail "$name: submit-bulk --wait printed no decisions"
  pass "$name: filing submit-bulk --wait --report: exit 1, $(wc -l <"$norm/refused.txt") refused with field and rule"

  "${ctl[@]}" filing submit-bulk "$sample/amendments.ndjson" --wait 2>"$out/amendments.err" ||
    fail "$name: filing submit-bulk of the amendments failed: $(cat "$out/amendments.err")"
  pass "$name: filing submit-bulk of the amendments, all decided"

  # Every accepted filing has exactly one decision: watched from the start in two parts, the
  # second resuming after the first part's last cursor, then nothing more.
  python3 "$check" expected-filings "$out/expected-filings.txt" "$sample/single-2023.json" \
    "$sample/filings-2023.ndjson" "$sample/filings.ndjson" "REPORT=$out/refused.ndjson" \
    "$sample/amendments.ndjson"
  local total first cursor
  total=$(wc -l <"$out/expected-filings.txt")
  first=$((total / 3))
  "${ctl[@]}" -o json decision watch --from d.0 --count "$first" >"$out/decisions-1.ndjson" \
    2>"$out/decisions-1.err" || fail "$name: decision watch --from d.0 failed: $(cat "$out/decisions-1.err")"
  cursor=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])["cursor"])' \
    <"$out/decisions-1.ndjson")
  "${ctl[@]}" -o json decision watch --from "$cursor" --count "$((total - first))" \
    >"$out/decisions-2.ndjson" 2>"$out/decisions-2.err" ||
    fail "$name: decision watch --from $cursor failed: $(cat "$out/decisions-2.err")"
  cursor=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])["cursor"])' \
    <"$out/decisions-2.ndjson")
  timeout --preserve-status -s INT 2 "${ctl[@]}" -o json decision watch --from "$cursor" \
    >"$out/decisions-3.ndjson" 2>"$out/decisions-3.err" ||
    fail "$name: decision watch --from $cursor (the tail) failed: $(cat "$out/decisions-3.err")"
  python3 "$check" decisions "$out/expected-filings.txt" "$norm/decisions.txt" \
    "$out/decisions-1.ndjson" "$out/decisions-2.ndjson" "$out/decisions-3.ndjson" \
    >/dev/null || fail "$name: the decisions watched"
  pass "$name: decision watch ($first, resumed from a cursor for $((total - first)), then none): each of $total decisions once"

  # The window of 2024 closes: the enterprises listed for 2023 that filed nothing accepted for
  # 2024 are delisted; closing it again delists nobody.
  "${ctl[@]}" -o json window close 2024 >"$out/close.json" 2>"$out/close.err" ||
    fail "$name: window close 2024 failed: $(cat "$out/close.err")"
  local delisted
  delisted=$(python3 "$check" delistings "$out/close.json" "$sample" \
    "$sample/filings-2023.ndjson" "$out/refused.ndjson" "$norm/window-close.txt") ||
    fail "$name: window close 2024"
  "${ctl[@]}" -o json window close 2024 >"$out/close-again.json" 2>>"$out/close.err" ||
    fail "$name: window close 2024, again, failed"
  grep -q delistings "$out/close-again.json" && fail "$name: closing the window of 2024 again delisted someone"
  pass "$name: window close 2024 delisted the $delisted listed enterprises that did not file; again: none"

  # The roster changes, in two parts: the first few from the start, then the rest resumed
  # from the cursor until the stream has been idle for 2 s.
  "${ctl[@]}" -o json listing watch --from l.0 --count 5 >"$out/listings-1.ndjson" \
    2>"$out/listings-1.err" || fail "$name: listing watch --from l.0 failed: $(cat "$out/listings-1.err")"
  cursor=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readlines()[-1])["cursor"])' \
    <"$out/listings-1.ndjson")
  timeout --preserve-status -s INT 3 "${ctl[@]}" -o json listing watch --from "$cursor" \
    >"$out/listings-2.ndjson" 2>"$out/listings-2.err" ||
    fail "$name: listing watch --from $cursor failed: $(cat "$out/listings-2.err")"
  local listing_count
  listing_count=$(python3 "$check" listings "$norm/listings.txt" "$out/listings-1.ndjson" \
    "$out/listings-2.ndjson") || fail "$name: the listings watched"
  pass "$name: listing watch (5, resumed from a cursor): $listing_count roster changes, each once, LISTED, RENEWED and DELISTED among them"

  # The register: every enterprise with its status and roster status (agreeing with the
  # listing stream), each park's figures and the regions' shares, for both years.
  "${ctl[@]}" -o json enterprise list >"$out/enterprises.json" 2>"$out/list.err" ||
    fail "$name: enterprise list failed: $(cat "$out/list.err")"
  local enterprise_count
  enterprise_count=$(python3 "$check" roster "$out/enterprises.json" "$norm/listings.txt.last" \
    "$norm/roster.txt") || fail "$name: the roster"
  [[ $enterprise_count -eq $(wc -l <"$sample/enterprises.ndjson") ]] ||
    fail "$name: enterprise list shows $enterprise_count enterprises, not $(wc -l <"$sample/enterprises.ndjson")"
  pass "$name: enterprise list: $enterprise_count enterprises, roster status as the listing stream says"
  local year park stats_files=()
  for year in 2023 2024; do
    for park in "${parks[@]}"; do
      "${ctl[@]}" -o json park stats "$park" --year "$year" >"$out/park-$park-$year.json" \
        2>"$out/stats.err" || fail "$name: park stats $park --year $year failed: $(cat "$out/stats.err")"
      stats_files+=("$out/park-$park-$year.json")
    done
    "${ctl[@]}" -o json region stats --year "$year" >"$out/region-$year.json" 2>"$out/stats.err" ||
      fail "$name: region stats --year $year failed: $(cat "$out/stats.err")"
    stats_files+=("$out/region-$year.json")
  done
  python3 "$check" stats "$norm/statistics.txt" "${stats_files[@]}" || fail "$name: statistics"
  pass "$name: park stats and region stats for 2023 and 2024"
}

# --- (a) stip-local on a temporary data directory ---------------------------------------------
local_port=$(free_port)
local_dir="$work/local"
mkdir -p "$local_dir"
local_args=(--data-dir "$local_dir/data" --grpc-listen "127.0.0.1:$local_port"
  --admin-listen 127.0.0.1:0)
ctl=("$stipctl_bin" --server "127.0.0.1:$local_port")
start stip-local "$local_dir/stip-local.log" "$local_bin" "${local_args[@]}"
local_pid=$last_pid
wait_healthy "$local_dir" "$local_pid"
phase "(a) stip-local serving on 127.0.0.1:$local_port"
scenario local
phase "(a) stip-local: scenario done"

# A filing acknowledged by stip-local survives kill -9: the receipt is printed, then the
# process is killed on the same line, restarted on the same data directory, and the filing
# must be there and decided without being submitted again.
durable_id=$(python3 - "$sample/single-2023.json" "$local_dir/durable.json" <<'EOF'
import json, sys
filing = json.load(open(sys.argv[1]))
filing["fiscalYear"] = 2025
json.dump(filing, open(sys.argv[2], "w"))
print(f"{filing['uscc']}/{filing['fiscalYear']}/{filing['revision']}")
EOF
)
durable_uscc=${durable_id%%/*}
if "${ctl[@]}" filing submit "$local_dir/durable.json" >"$local_dir/durable.receipt" \
  2>"$local_dir/durable.err"; then kill -KILL "$local_pid"; else
  fail "local: filing submit failed, so nothing was acknowledged: $(cat "$local_dir/durable.err")"
fi
wait "$local_pid" 2>/dev/null || true
grep -qF "$durable_id" "$local_dir/durable.receipt" "$local_dir/durable.err" ||
  fail "local: the receipt does not name $durable_id: $(cat "$local_dir/durable.receipt" "$local_dir/durable.err")"
phase "(a) $durable_id acknowledged, stip-local killed with SIGKILL; restarting it"
start stip-local "$local_dir/stip-local.log" "$local_bin" "${local_args[@]}"
local_pid=$last_pid
wait_healthy "$local_dir" "$local_pid"
# The filing may still be on its way from the event log to the register and assessment: the
# enterprise's history shows it once it is decided.
outcome=""
for _ in $(seq 1 150); do
  if "${ctl[@]}" -o json enterprise history "$durable_uscc" >"$local_dir/durable-history.json" \
    2>/dev/null && outcome=$(python3 "$check" decided "$local_dir/durable-history.json" "$durable_id"); then
    break
  fi
  outcome=""
  sleep 0.2
done
[[ -n "$outcome" ]] ||
  fail "local: $durable_id, acknowledged before kill -9, is not decided 30 s after the restart"
"${ctl[@]}" filing get "$durable_id" >/dev/null 2>"$local_dir/durable-get.err" ||
  fail "local: filing get $durable_id after the restart: $(cat "$local_dir/durable-get.err")"
pass "local: $durable_id acknowledged, stip-local killed -9 and restarted: decided $outcome"
stop_pid "$local_pid"

# --- (b) stip-intake, stip-assessment, stip-registry on Kafka and PostgreSQL -----------------
run_id="e2e$(date +%s)$$"
db_name="stipctl_${run_id}"
psql "$STIP_TEST_POSTGRES" -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE $db_name" >/dev/null ||
  fail "cannot create the database $db_name on $STIP_TEST_POSTGRES"
# The URL's path is the database: replace it, keeping any ?parameters.
db_url=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' \
  "$STIP_TEST_POSTGRES" "$db_name")
events="kafka://$STIP_TEST_KAFKA"
filings_topic="stip.filings.v1.$run_id"
decisions_topic="stip.decisions.v1.$run_id"
rejected_topic="stip.filings.rejected.v1.$run_id"
inbound_topic="stip.filings.inbound.v1.$run_id"
services_dir="$work/services"
mkdir -p "$services_dir"
intake_port=$(free_port)
assessment_port=$(free_port)
registry_port=$(free_port)
start stip-registry "$services_dir/registry.log" "$registry_bin" --events "$events" --db "$db_url" \
  --grpc-listen "127.0.0.1:$registry_port" --admin-listen 127.0.0.1:0 --partitions 3 \
  --group "stip-registry.$run_id" --filings-topic "$filings_topic" --decisions-topic "$decisions_topic"
registry_pid=$last_pid
start stip-assessment "$services_dir/assessment.log" "$assessment_bin" --events "$events" \
  --policies "$root/policies" --grpc-listen "127.0.0.1:$assessment_port" --admin-listen 127.0.0.1:0 \
  --partitions 3 --instance-id "assessment-$run_id" --group "stip-assessment.$run_id" \
  --filings-topic "$filings_topic" --decisions-topic "$decisions_topic" --rejected-topic "$rejected_topic"
assessment_pid=$last_pid
start stip-intake "$services_dir/intake.log" "$intake_bin" --events "$events" \
  --registry "127.0.0.1:$registry_port" --grpc-listen "127.0.0.1:$intake_port" \
  --admin-listen 127.0.0.1:0 --partitions 3 --instance-id "intake-$run_id" \
  --group "stip-intake.$run_id" --inbound-topic "$inbound_topic" --filings-topic "$filings_topic" \
  --rejected-topic "$rejected_topic"
intake_pid=$last_pid
ctl=("$stipctl_bin" --intake "127.0.0.1:$intake_port" --assessment "127.0.0.1:$assessment_port"
  --registry "127.0.0.1:$registry_port")
wait_healthy "$services_dir" "$registry_pid" "$assessment_pid" "$intake_pid"
phase "(b) services serving: intake :$intake_port, assessment :$assessment_port, registry :$registry_port (database $db_name, topics *.$run_id)"
scenario services
phase "(b) separate services: scenario done"
for pid in "$intake_pid" "$assessment_pid" "$registry_pid"; do stop_pid "$pid"; done

# --- The two runs agree -----------------------------------------------------------------------
for file in refused.txt decisions.txt window-close.txt listings.txt roster.txt statistics.txt; do
  diff -u "$work/local/norm/$file" "$work/services/norm/$file" >"$work/diff-$file" ||
    { head -40 "$work/diff-$file" >&2; fail "stip-local and the separate services differ in $file"; }
done
pass "stip-local and the separate services on Kafka and PostgreSQL agree on the refused filings, $(wc -l <"$work/local/norm/decisions.txt") decisions, $(wc -l <"$work/local/norm/listings.txt") roster changes, the window close, the roster of $(wc -l <"$work/local/norm/roster.txt") enterprises and $(wc -l <"$work/local/norm/statistics.txt") statistics"

#!/usr/bin/env bash
# The whole test suite, on a fresh Debian 12 or 13 machine: installs the packages, builds
# with warnings as errors (and the fuzz targets with clang, beside), lints the API, starts a
# real Kafka broker and a real PostgreSQL on loopback, runs every test, and stops the
# servers again, also when tests fail.
# Safe to run again: installs and downloads only what is missing, and ccache keeps
# rebuilds short. Ends with ctest's summary; exits non-zero when anything failed.
#
#   sudo scripts/test.sh [ctest arguments...]     e.g. scripts/test.sh -L unit
#
# Environment: STIP_BUILD_DIR (default build), STIP_CACHE_DIR, STIP_KAFKA_PORT,
# STIP_PG_PORT (see deploy/local/*.sh --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
LOG_TAG=test
# shellcheck source=../deploy/local/lib.sh
source deploy/local/lib.sh

case "${1:-}" in
  -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

build_dir="${STIP_BUILD_DIR:-build}"
started=$(now_s)
phase() { log "$1 ($(elapsed_since "$started") s since start)"; }

phase "installing what is missing"
scripts/install-deps.sh

phase "building in $build_dir"
cmake -S . -B "$build_dir" -G Ninja -DSTIP_WERROR=ON >"$build_dir.configure.log" 2>&1 ||
  { cat "$build_dir.configure.log" >&2; die "cmake failed"; }
grep -E '^-- stip:' "$build_dir.configure.log" >&2 || true
ninja -C "$build_dir" -j "$(nproc)"
# The container image's build step (deploy/docker/Dockerfile runs exactly this): installs
# the programs, stripped, and checks the runtime package list covers their libraries.
deploy/docker/build.sh "$build_dir" "$build_dir/image"

phase "building the fuzz targets (clang, libFuzzer, ASan+UBSan) in $build_dir-fuzz"
# Only the fuzz targets, in a build of their own; ctest's fuzz_* tests (label fuzz) run them
# briefly. Long runs and the ASan/TSan builds: scripts/sanitize.sh --help.
STIP_BUILD_DIR="$build_dir" scripts/sanitize.sh fuzz --build-only

phase "linting the API, fetching the deploy checks' tools and the benchmark's peer, checking the format"
scripts/lint-proto.sh
scripts/fetch-k8s-tools.sh >/dev/null  # helm, kubectl, the schema validator (deploy_checks)
bench/peers/kafka-streams/run.sh build  # the Kafka Streams peer of bench_run_quick (Maven)
scripts/format.sh --check

phase "starting Kafka and PostgreSQL on loopback"
servers_log="$(realpath -m "$build_dir.servers.log")"
stop_servers() {
  # Quietly, so that ctest's summary stays the last thing printed; absolute paths, since
  # this runs from wherever the script was when it exited.
  "$root/deploy/local/kafka.sh" stop >>"$servers_log" 2>&1 ||
    echo "test: stopping Kafka failed; see $servers_log" >&2
  "$root/deploy/local/postgres.sh" stop >>"$servers_log" 2>&1 ||
    echo "test: stopping PostgreSQL failed; see $servers_log" >&2
}
trap stop_servers EXIT
deploy/local/kafka.sh start
deploy/local/postgres.sh start
STIP_TEST_KAFKA="127.0.0.1:${STIP_KAFKA_PORT:-19092}"
STIP_TEST_POSTGRES="$(deploy/local/postgres.sh url)"
export STIP_TEST_KAFKA STIP_TEST_POSTGRES
# bench_run_quick runs the benchmark on these same servers (its topics and databases are
# its own) rather than starting a second broker and PostgreSQL beside them.
export STIP_BENCH_KAFKA_PORT="${STIP_KAFKA_PORT:-19092}"
export STIP_BENCH_KAFKA_CONTROLLER_PORT="${STIP_KAFKA_CONTROLLER_PORT:-19093}"
export STIP_BENCH_PG_PORT="${STIP_PG_PORT:-15432}"
export STIP_BENCH_STATE_DIR="${STIP_STATE_DIR:-${STIP_CACHE_DIR:-$HOME/.cache/stip-compliance}/state}"

phase "running the tests (Kafka at $STIP_TEST_KAFKA, PostgreSQL at $STIP_TEST_POSTGRES)"
status=0
ctest --test-dir "$build_dir" --output-on-failure --timeout 1200 -j 2 "$@" || status=$?
exit "$status"

#!/usr/bin/env bash
# The sanitizer and fuzzing builds, one command each. Each configures its own build
# directory with clang (apart from the test command's `build`: instrumentation applies to
# every target), builds only what it runs, and runs it; ccache keeps rebuilds short.
#
#   scripts/sanitize.sh asan [ctest args]   ASan+UBSan build of the unit tests; runs ctest
#                                           -L unit. In build-fuzz: the same instrumentation
#                                           as the fuzz targets (whose coverage hooks are
#                                           inert in a test), so the libraries build once
#   scripts/sanitize.sh tsan [gtest args]   TSan build of the event log's contract suite
#                                           (build-tsan); runs event_log_contract_test, on
#                                           SQLite and on the Kafka broker STIP_TEST_KAFKA
#                                           names (required, as for the test command)
#   scripts/sanitize.sh fuzz [--runs N] [--time S] [TARGET...]
#                                           libFuzzer targets of tests/fuzz with ASan+UBSan
#                                           (build-fuzz); runs each (or the TARGETs named,
#                                           e.g. policy) from its seed corpus, N executions
#                                           (default 20000, as ctest's fuzz_* tests) or S
#                                           seconds; new inputs go to build-fuzz/corpus/<name>
#   scripts/sanitize.sh MODE --build-only   configure and build, run nothing
#
# Any report (ASan, UBSan, LeakSanitizer, TSan, a fuzzer's crash) fails the command; the
# fuzzer keeps the input as build-fuzz/crash-<name>-*, to replay with
# `build-fuzz/tests/fuzz/<name>_fuzz FILE`. TSan reads tests/tsan.supp (why each entry is
# there is written beside it). Needs clang and its sanitizer runtimes
# (scripts/install-deps.sh installs them). Environment: STIP_BUILD_DIR (default build; the
# directories are <it>-fuzz and <it>-tsan), STIP_JOBS (default: the number of CPUs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
LOG_TAG=sanitize
# shellcheck source=../deploy/local/lib.sh
source deploy/local/lib.sh

usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in
  asan|tsan|fuzz) mode="$1"; shift ;;
  -h|--help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
esac
build_only=false
if [ "${1:-}" = "--build-only" ]; then build_only=true; shift; fi

command -v clang++ >/dev/null 2>&1 || die "clang++ not found: run scripts/install-deps.sh"
build_dir="${STIP_BUILD_DIR:-build}-$mode"
[ "$mode" = asan ] && build_dir="${STIP_BUILD_DIR:-build}-fuzz"
jobs="${STIP_JOBS:-$(nproc)}"

configure() {
  cmake -S . -B "$build_dir" -G Ninja -DSTIP_WERROR=ON -DSTIP_BUILD_BENCH=OFF \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ "$@" \
    >"$build_dir.configure.log" 2>&1 ||
    { cat "$build_dir.configure.log" >&2; die "cmake failed (log: $build_dir.configure.log)"; }
}

# Reports with whole stacks, and every finding fatal; a caller's own settings come first.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-suppressions=$root/tests/tsan.supp:second_deadlock_stack=1:history_size=4}"

case "$mode" in
  asan)
    configure -DSTIP_FUZZ=ON
    mapfile -t targets < <(find tests/unit -name '*_test.cc' -printf '%f\n' | sed 's/\.cc$//' | sort)
    log "building ${#targets[@]} unit tests with ASan+UBSan in $build_dir"
    ninja -C "$build_dir" -j "$jobs" "${targets[@]}"
    $build_only && exit 0
    ctest --test-dir "$build_dir" --output-on-failure -L unit "$@"
    ;;
  tsan)
    configure -DSTIP_SANITIZE=thread
    log "building the event log's contract suite with TSan in $build_dir"
    # event-copier: the child process the suite kills and restarts.
    ninja -C "$build_dir" -j "$jobs" event_log_contract_test event-copier stip_tsan_absl
    $build_only && exit 0
    [ -n "${STIP_TEST_KAFKA:-}" ] ||
      die "STIP_TEST_KAFKA is not set: the suite runs on a real broker too (deploy/local/kafka.sh start)"
    # Debian's Abseil is not instrumented: the preloaded annotations show TSan its mutexes
    # (tests/tsan/absl_sync_annotations.cc). The child processes the suite starts inherit it.
    LD_PRELOAD="$(realpath "$build_dir/tests/libstip_tsan_absl.so")" \
      "$build_dir/tests/event_log_contract_test" "$@"
    ;;
  fuzz)
    runs=20000 seconds=""
    names=()
    while [ "$#" -gt 0 ]; do
      case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --time) seconds="$2"; shift 2 ;;
        *) names+=("$1"); shift ;;
      esac
    done
    configure -DSTIP_FUZZ=ON
    log "building the fuzz targets in $build_dir"
    ninja -C "$build_dir" -j "$jobs" stip_fuzz_targets
    $build_only && exit 0
    if [ "${#names[@]}" -eq 0 ]; then
      mapfile -t names < <(find tests/fuzz -name '*_fuzz.cc' -printf '%f\n' | sed 's/_fuzz\.cc$//' | sort)
    fi
    for name in "${names[@]}"; do
      binary="$build_dir/tests/fuzz/${name}_fuzz"
      [ -x "$binary" ] || die "no fuzz target $name (tests/fuzz/${name}_fuzz.cc)"
      mkdir -p "$build_dir/corpus/$name"
      limit=(-runs="$runs")
      [ -n "$seconds" ] && limit=(-max_total_time="$seconds")
      log "fuzzing $name: ${limit[*]}"
      "$binary" "${limit[@]}" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$build_dir/crash-$name-" \
        "$build_dir/corpus/$name" "tests/fuzz/corpus/$name"
    done
    ;;
esac

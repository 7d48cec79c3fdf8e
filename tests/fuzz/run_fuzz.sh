#!/usr/bin/env bash
# One short, repeatable run of a libFuzzer target (the ctest tests fuzz_<name>):
#   run_fuzz.sh BINARY SEED_CORPUS WORK_DIR RUNS
# Runs BINARY for RUNS executions with a fixed seed, starting from SEED_CORPUS (read only:
# new inputs go to WORK_DIR/corpus, emptied first, so every run starts from the same seeds).
# A crash, leak, sanitizer report or timeout fails the test; the input that caused it is
# kept as WORK_DIR/crash-* (the output names it), to replay with `BINARY FILE`.
set -euo pipefail
[ "$#" -eq 4 ] || { echo "usage: $0 BINARY SEED_CORPUS WORK_DIR RUNS" >&2; exit 2; }
binary="$1" seeds="$2" work="$3" runs="$4"
if [ ! -x "$binary" ]; then
  echo "fuzz: $binary is not built. Build the fuzz targets (clang) with" \
       "'scripts/sanitize.sh fuzz --build-only', or run scripts/test.sh, which builds them" >&2
  exit 1
fi
rm -rf "$work/corpus"
mkdir -p "$work/corpus"
# -timeout: one input taking 10 s is a hang worth a report. -rss_limit_mb: libFuzzer's
# default, said out loud. -print_final_stats: the executions, for the log.
exec "$binary" -runs="$runs" -seed=1 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/" "$work/corpus" "$seeds"

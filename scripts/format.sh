#!/usr/bin/env bash
# Formats every C++ file of the tree with clang-format (.clang-format at the root).
#   scripts/format.sh           rewrite files in place
#   scripts/format.sh --check   change nothing; list unformatted files and exit 1 if any
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t files < <(git ls-files '*.h' '*.cc')
if [ "${1:-}" = "--check" ]; then
  unformatted=()
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || unformatted+=("$f")
  done
  if [ "${#unformatted[@]}" -gt 0 ]; then
    printf 'not formatted (run scripts/format.sh): %s\n' "${unformatted[@]}" >&2
    exit 1
  fi
  echo "format: ${#files[@]} files formatted" >&2
else
  clang-format -i "${files[@]}"
fi

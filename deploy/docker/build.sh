#!/usr/bin/env bash
# Builds what the container image ships, with scripts/test.sh's configure command (the same
# flags, warnings as errors) and its ninja, limited to the five programs; then installs them,
# stripped, under OUT/bin. Run from anywhere; the image's build stage runs exactly this.
#
#   deploy/docker/build.sh [BUILD_DIR [OUT]]      defaults: build, build/image
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
build_dir="${1:-build}"
out="${2:-$build_dir/image}"
programs=(stip-intake stip-assessment stip-registry stip-local stipctl)

cmake -S . -B "$build_dir" -G Ninja -DSTIP_WERROR=ON >"$build_dir.configure.log" 2>&1 ||
  { cat "$build_dir.configure.log" >&2; echo "build: cmake failed" >&2; exit 1; }
ninja -C "$build_dir" -j "$(nproc)" "${programs[@]}"

mkdir -p "$out/bin"
for p in "${programs[@]}"; do
  install -m 0755 -s "$(find "$build_dir/services" "$build_dir/tools" -type f -name "$p" -perm -u+x -print -quit)" "$out/bin/$p"
done
# The runtime stage installs deploy/docker/runtime-packages.txt: refuse to build an image
# whose programs need a library that list does not bring.
deploy/docker/runtime-deps.sh --check "$out"/bin/*
echo "build: $out/bin: ${programs[*]}" >&2

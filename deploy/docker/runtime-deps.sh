#!/usr/bin/env bash
# The Debian packages that hold the shared libraries the given programs need directly
# (readelf NEEDED, resolved with ldconfig, owned per dpkg -S); their own dependencies come
# with them through apt.
#
#   deploy/docker/runtime-deps.sh PROGRAM...          print the package list
#   deploy/docker/runtime-deps.sh --check PROGRAM...  fail unless runtime-packages.txt
#                                                     names every one of them
# Packages every Debian image has (libc6, libgcc-s1, libstdc++6 comes with apt) are left out.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
check=0
[ "${1:-}" = --check ] && { check=1; shift; }
[ "$#" -gt 0 ] || { echo "usage: $0 [--check] PROGRAM..." >&2; exit 2; }

needed="$(for p in "$@"; do readelf -d "$p" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; done | sort -u)"
pkgs=()
for lib in $needed; do
  # Every reader below reads its input to the end: one that stopped early (awk's exit, head)
  # would leave the writer to die of SIGPIPE, and pipefail would make that this script's exit
  # status (141), depending on timing.
  path="$(ldconfig -p | awk -v l="$lib" '$1 == l && !found { print $NF; found = 1 }')"
  [ -n "$path" ] || { echo "runtime-deps: $lib not found by ldconfig" >&2; exit 1; }
  pkg="$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | awk -F: 'NR == 1 { print $1 }')" ||
    true
  [ -n "$pkg" ] || pkg="$(dpkg -S "$path" | awk -F: 'NR == 1 { print $1 }')"
  case "$pkg" in libc6|libgcc-s1) continue ;; esac
  pkgs+=("$pkg")
done
mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)

if [ "$check" -eq 0 ]; then
  printf '%s\n' "${pkgs[@]}"
  exit 0
fi
listed="$(sed 's/#.*//' "$here/runtime-packages.txt" | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)"
missing=()
for p in "${pkgs[@]}"; do grep -qx "$p" <<<"$listed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "runtime-deps: deploy/docker/runtime-packages.txt lacks: ${missing[*]}" >&2
  exit 1
fi
echo "runtime-deps: runtime-packages.txt covers ${#pkgs[@]} packages" >&2

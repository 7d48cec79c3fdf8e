#!/usr/bin/env bash
# buf lint (STANDARD rules) and buf breaking (against main) over proto/. buf comes from
# the npm registry (@bufbuild/buf) into the cache folder, once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
LOG_TAG=buf
# shellcheck source=../deploy/local/lib.sh
source "$root/deploy/local/lib.sh"

BUF_VERSION=1.75.0
tools="$STIP_CACHE/tools/buf-$BUF_VERSION"
buf="$tools/node_modules/.bin/buf"
if [ ! -x "$buf" ]; then
  command -v npm >/dev/null 2>&1 || die "npm is missing: run scripts/install-deps.sh"
  log "installing @bufbuild/buf@$BUF_VERSION from npm into $tools"
  mkdir -p "$tools"
  npm install --silent --no-audit --no-fund --prefix "$tools" "@bufbuild/buf@$BUF_VERSION" >&2
fi

cd "$root"
"$buf" lint proto
log "buf lint: the stip.v1 API passes the STANDARD rules"
if git rev-parse --verify -q main >/dev/null; then
  "$buf" breaking proto --against ".git#branch=main,subdir=proto"
  log "buf breaking: no breaking change against main"
else
  log "buf breaking: no local branch main to compare with; skipped"
fi

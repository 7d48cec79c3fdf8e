#!/usr/bin/env bash
# The deploy checks, offline once scripts/fetch-k8s-tools.sh has cached the tools (it is
# run first and does nothing then):
#   - for every helm/stip-compliance/ci/*-values.yaml: helm lint --strict, helm template,
#     every rendered object validated against the Kubernetes API schemas
#     (deploy/checks/validate-manifests.mjs), the values validated against
#     values.schema.json and what operators check (deploy/checks/operator-checks.mjs);
#   - the chart refuses invalid values (a negative minReplicas, an unknown key when the
#     schema forbids them) and an HPA whose maxReplicas exceeds kafka.topics.partitions;
#   - for every deploy/kustomize/overlays/*: kubectl kustomize, the same validation and
#     operator checks;
#   - deploy/docker/Dockerfile: Debian base images, a non-root USER, no build tools at runtime.
# Exits non-zero, naming each failed check, when anything fails.
#
#   scripts/check-deploy.sh
#
# Environment: STIP_CACHE_DIR; STIP_CHART_DIR, STIP_KUSTOMIZE_DIR, STIP_DOCKERFILE (to check
# other copies; default: the repository's).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
LOG_TAG=check-deploy
# shellcheck source=../deploy/local/lib.sh
source "$root/deploy/local/lib.sh"

case "${1:-}" in
  -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

chart="${STIP_CHART_DIR:-$root/helm/stip-compliance}"
overlays="${STIP_KUSTOMIZE_DIR:-$root/deploy/kustomize}/overlays"
dockerfile="${STIP_DOCKERFILE:-$root/deploy/docker/Dockerfile}"
checks="$root/deploy/checks"

eval "$("$here/fetch-k8s-tools.sh")"  # sets K8S_TOOLS, HELM, KUBECTL, NODE_MODULES
export STIP_K8S_NODE_MODULES="$NODE_MODULES"
# helm keeps no state of ours: its caches and config in a scratch folder, no repositories.
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
export HELM_CACHE_HOME="$out/helm-cache" HELM_CONFIG_HOME="$out/helm-config" HELM_DATA_HOME="$out/helm-data"

failed=()
passed=0
# step NAME COMMAND...: runs one check, its output indented; records the result.
step() {
  local name="$1"; shift
  printf '== %s\n' "$name"
  if "$@" >"$out/step.log" 2>&1; then
    sed 's/^/   /' "$out/step.log"
    passed=$((passed + 1))
  else
    sed 's/^/   /' "$out/step.log"
    printf '   FAILED: %s\n' "$name"
    failed+=("$name")
  fi
}
# refused NAME PATTERN COMMAND...: the command must fail, and say PATTERN (grep -Ei).
refused() {
  local name="$1" pattern="$2"; shift 2
  printf '== %s\n' "$name"
  if "$@" >"$out/step.log" 2>&1; then
    printf '   FAILED: %s: accepted, must be refused\n' "$name"
    failed+=("$name")
  elif ! grep -Eiq -- "$pattern" "$out/step.log"; then
    sed 's/^/   /' "$out/step.log"
    printf '   FAILED: %s: refused, but the message does not say /%s/\n' "$name" "$pattern"
    failed+=("$name")
  else
    grep -Ei -m 3 -- "$pattern" "$out/step.log" | sed 's/^/   refused as expected: /'
    passed=$((passed + 1))
  fi
}
# value FILE... KEY: KEY (a.b.c) of the chart's values merged with FILE..., empty if unset.
value() {
  local key="${*: -1}" files=("${@:1:$#-1}")
  node --input-type=module -e '
    import { readYaml } from "'"$checks"'/lib.mjs";
    const [key, ...files] = process.argv.slice(1);
    let v;
    for (const f of files) { const x = key.split(".").reduce((o, k) => o?.[k], readYaml(f)); if (x !== undefined) v = x; }
    if (v !== undefined && v !== null) console.log(typeof v === "object" ? JSON.stringify(v) : v);
  ' "$key" "$chart/values.yaml" "${files[@]}"
}

# ---- the chart
if [ ! -f "$chart/Chart.yaml" ]; then
  failed+=("no chart at $chart")
else
  scenarios=("$chart"/ci/*-values.yaml)
  [ -e "${scenarios[0]}" ] || { failed+=("no scenarios $chart/ci/*-values.yaml"); scenarios=(); }
  for values in "${scenarios[@]}"; do
    scenario="$(basename "$values" -values.yaml)"
    step "helm lint --strict ($scenario)" "$HELM" lint --strict "$chart" -f "$values"
    step "helm template ($scenario)" \
      bash -c '"$1" template stip "$2" --namespace stip -f "$3" >"$4"' _ "$HELM" "$chart" "$values" "$out/$scenario.yaml"
    if [ -s "$out/$scenario.yaml" ]; then
      step "Kubernetes API schemas ($scenario)" node "$checks/validate-manifests.mjs" "$out/$scenario.yaml"
      step "operator checks ($scenario)" node "$checks/operator-checks.mjs" --name "$scenario" \
        --manifests "$out/$scenario.yaml" --chart "$chart" --values "$values"
    fi
  done

  # What the chart must refuse, on the values of the first scenario.
  base=("${scenarios[@]:0:1}")
  base_args=()
  [ "${#base[@]}" -eq 1 ] && base_args=(-f "${base[0]}")
  for component in intake assessment registry; do
    refused "helm template refuses $component.autoscaling.minReplicas=-1" 'minReplicas|minimum|schema' \
      "$HELM" template stip "$chart" "${base_args[@]}" --set "$component.autoscaling.enabled=true" \
      --set "$component.autoscaling.minReplicas=-1"
    refused "helm lint refuses $component.autoscaling.minReplicas=-1" 'minReplicas|minimum|schema' \
      "$HELM" lint --strict "$chart" "${base_args[@]}" --set "$component.autoscaling.enabled=true" \
      --set "$component.autoscaling.minReplicas=-1"
    partitions="$(value "${base[@]}" kafka.topics.partitions)"
    if [ -z "$partitions" ]; then
      failed+=("kafka.topics.partitions is not set in $chart/values.yaml")
      continue
    fi
    refused "helm template refuses $component.autoscaling.maxReplicas=$((partitions + 1)) > kafka.topics.partitions=$partitions" 'partition' \
      "$HELM" template stip "$chart" "${base_args[@]}" --set "$component.autoscaling.enabled=true" \
      --set "$component.autoscaling.minReplicas=1" --set "$component.autoscaling.maxReplicas=$((partitions + 1))"
  done
  if [ -f "$chart/values.schema.json" ] &&
     [ "$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).additionalProperties)' "$chart/values.schema.json")" = false ]; then
    refused "helm template refuses an unknown top-level key" 'additional|not allowed|unknown|schema' \
      "$HELM" template stip "$chart" "${base_args[@]}" --set notAValueOfThisChart=1
  else
    echo "== note: values.schema.json allows unknown top-level keys (no additionalProperties: false); a misspelt key is ignored"
  fi
fi

# ---- the plain manifests
partitions_default=""
[ -f "$chart/values.yaml" ] && partitions_default="$(value kafka.topics.partitions)"
overlay_dirs=("$overlays"/*/)
if [ ! -d "${overlay_dirs[0]}" ]; then
  failed+=("no overlays in $overlays")
else
  for overlay in "${overlay_dirs[@]}"; do
    name="overlay-$(basename "$overlay")"
    step "kubectl kustomize ($name)" bash -c '"$1" kustomize "$2" >"$3"' _ "$KUBECTL" "$overlay" "$out/$name.yaml"
    if [ -s "$out/$name.yaml" ]; then
      step "Kubernetes API schemas ($name)" node "$checks/validate-manifests.mjs" "$out/$name.yaml"
      partition_args=()
      [ -n "$partitions_default" ] && partition_args=(--partitions "$partitions_default")
      # The manifests mirror the chart's defaults: those decide which APIs are open to clients.
      [ -f "$chart/values.yaml" ] && partition_args+=(--paths-values "$chart/values.yaml")
      # The development overlay may leave the network open; every other overlay may not.
      [ "$(basename "$overlay")" = dev ] && partition_args+=(--network-policies optional)
      step "operator checks ($name)" node "$checks/operator-checks.mjs" --name "$name" \
        --manifests "$out/$name.yaml" "${partition_args[@]}"
    fi
  done
fi

# ---- the image
if [ -f "$dockerfile" ]; then
  step "Dockerfile" node "$checks/dockerfile-check.mjs" "$dockerfile" "$root"
else
  failed+=("no Dockerfile at $dockerfile")
fi

echo "check-deploy: $passed checks passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'check-deploy: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi

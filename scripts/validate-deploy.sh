#!/usr/bin/env bash
# Validates deploy/ offline: renders every Kubernetes overlay with `kubectl kustomize` and checks the
# objects (schemas from the npm package kubernetes-models, KEDA objects and cross-references by
# deploy/validate.mjs), then the Grafana dashboard. Needs kubectl, node and npm; no cluster.
# Usage: scripts/validate-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

tools=.tools/deploy-validate
# Pinned: kubernetes-models 4.x runs on Node 14+ (5.x needs Node 22).
packages=(kubernetes-models@4.5.1 yaml@2.9.1)

for cmd in kubectl node npm; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "validate-deploy: $cmd is required" >&2; exit 1; }
done

stamp="$tools/.installed"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${packages[*]}" ]; then
  echo "Installing ${packages[*]} into $tools ..."
  mkdir -p "$tools"
  npm install --prefix "$tools" --no-audit --no-fund --silent "${packages[@]}"
  echo "${packages[*]}" > "$stamp"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
render() { # label, output file, kustomization folders...
  local label=$1 out=$2
  shift 2
  : > "$out"
  for dir in "$@"; do
    if ! kubectl kustomize "$dir" >> "$out" 2> "$work/err"; then
      echo "FAIL $label: kubectl kustomize $dir: $(cat "$work/err")" >&2
      return 1
    fi
    echo '---' >> "$out"
  done
}

for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  if render "$name" "$work/$name.yaml" "$overlay"; then
    node deploy/validate.mjs render "$name" "$work/$name.yaml" || status=1
  else
    status=1
  fi
done

# The native queue-length triggers are the overlays' alternatives to keda/metrics-api: check each
# against the base, minus the adapter check (the base names none).
for keda in rabbitmq azure servicebus; do
  if render "$keda-trigger" "$work/$keda-trigger.yaml" deploy/k8s/base "deploy/keda/$keda"; then
    node deploy/validate.mjs render "$keda trigger (base + keda/$keda)" "$work/$keda-trigger.yaml" --no-adapter-check || status=1
  else
    status=1
  fi
done

node deploy/validate.mjs grafana deploy/grafana/queue-dashboard.json --rules-out "$work/dashboard-rules.yml" || status=1
# promtool (installed with Prometheus by scripts/install-servers.sh) checks the queries' syntax.
if command -v promtool >/dev/null 2>&1 && [ -f "$work/dashboard-rules.yml" ]; then
  if promtool check rules "$work/dashboard-rules.yml" > "$work/promtool" 2>&1; then
    echo "ok   grafana: every query parses (promtool)"
  else
    echo "FAIL grafana: promtool rejects a query:" >&2
    cat "$work/promtool" >&2
    status=1
  fi
else
  echo "skip grafana: promtool not installed, query syntax not checked"
fi

if [ "$status" -eq 0 ]; then echo "deploy: all checks passed"; else echo "deploy: checks FAILED" >&2; fi
exit "$status"

#!/usr/bin/env sh
# Helm post-renderer: stdin = the chart's manifests, stdout = them plus the companion sidecar.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here"/kustomization.yaml "$here"/configmap.yaml "$here"/patch-*.yaml "$work"/
cat > "$work/chart.yaml"
kubectl kustomize "$work"

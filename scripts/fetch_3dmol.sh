#!/usr/bin/env bash
# Install the 3Dmol.js viewer from the npm registry into app/static/ (served locally by the app).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${THREEDMOL_VERSION:-2.5.5}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "3dmol@${VERSION}" >/dev/null && tar xzf 3dmol-*.tgz)
mkdir -p app/static
cp "$tmp/package/build/3Dmol-min.js" app/static/3Dmol-min.js.tmp
mv app/static/3Dmol-min.js.tmp app/static/3Dmol-min.js
echo "3Dmol.js ${VERSION} installed in app/static/"

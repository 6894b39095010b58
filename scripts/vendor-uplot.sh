#!/usr/bin/env bash
# Refresh the dashboard's vendored uPlot (the chart library) from the npm registry:
# the pinned version's minified build, its stylesheet and its licence. The files are
# committed; nothing is fetched at run time. Usage: bash scripts/vendor-uplot.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-1.6.32}"
dest=src/shipyard/dashboard/static/vendor
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "uplot@$version" --silent >/dev/null && tar xzf "uplot-$version.tgz")
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$dest/"
cp "$tmp/package/LICENSE" "$dest/uPlot.LICENSE"
echo "uPlot $version" > "$dest/VERSIONS"
echo "vendored uPlot $version into $dest"

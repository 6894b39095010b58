#!/usr/bin/env bash
# Install everything the tests need and run the whole suite: lint, layer contracts, types,
# the upstream control-plane binaries (built from the Go module proxy once, then
# cached under ~/.cache/shipyard/bin), unit, local-backend and integration tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
bash scripts/browser-deps.sh  # Debian's Chromium for the dashboard's browser tests (cached)

echo "== lint"
.venv/bin/ruff check .
echo "== layer contracts (import-linter)"
.venv/bin/lint-imports
echo "== types (mypy: strict on core/ and spec/, the rest of src/ and tests/middle by default)"
.venv/bin/mypy
echo "== control-plane binaries"
.venv/bin/shipyard dev build
echo "== tests"
HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" .venv/bin/python -m pytest "$@"

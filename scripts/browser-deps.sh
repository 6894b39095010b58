#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser tests (Playwright drives it; Playwright's
# own browser builds are never downloaded). Skipped when /usr/bin/chromium exists; without
# root or apt-get it says what to run, and the browser tests skip with that reason.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
echo "== Chromium (Debian) for the dashboard's browser tests"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "warning: Chromium is missing; run: sudo apt-get install -y chromium chromium-driver" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version

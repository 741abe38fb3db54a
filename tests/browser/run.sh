#!/usr/bin/env bash
# Runs the browser tests: EventSource in headless Chromium (Debian's
# /usr/bin/chromium, driven by puppeteer-core from npm) against the built
# herald. Installs tests/browser/node_modules from package-lock.json when
# missing. Exit 77 (skipped by ctest) when chromium or node is absent,
# except under CI (env CI set), where that fails.
set -euo pipefail
cd "$(dirname "$0")"
: "${HERALD_BIN:?HERALD_BIN must name the built herald binary}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [[ ! -x $CHROMIUM ]] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "browser test: needs $CHROMIUM, node and npm (scripts/setup.sh installs them)" >&2
  if [[ -n ${CI:-} ]]; then exit 1; fi
  exit 77
fi
if [[ ! -d node_modules/puppeteer-core ]]; then
  npm ci --no-audit --no-fund >&2
fi
exec node eventsource_test.mjs

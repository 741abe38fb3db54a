#!/usr/bin/env bash
# The operator console in headless Chromium (console_test.mjs): Debian's
# /usr/bin/chromium driven by puppeteer-core, axe-core in the same browser,
# against the built herald and the test webhook receiver. The npm test
# tools are installed into DEPS by tests/aws/npm_deps.sh (`npm ci` from
# this folder's package-lock.json, under a lock). Exit 77 (skipped by
# ctest) when chromium, node or npm is absent, except under CI, where that
# fails. Also checks that the console's assets stay under 200 KB gzipped.
#
# Usage: HERALD_BIN=... HERALD_TEST_RECEIVER=... tests/browser/run_console.sh DEPS
#   SCREENSHOTS=docs/console  also writes a screenshot of each page there.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEPS=$(mkdir -p "${1:?usage: run_console.sh DEPS}" && cd "$1" && pwd)
: "${HERALD_BIN:?HERALD_BIN must name the built herald binary}"
: "${HERALD_TEST_RECEIVER:?HERALD_TEST_RECEIVER must name the test receiver}"
HERALD_BIN=$(realpath "$HERALD_BIN")
HERALD_TEST_RECEIVER=$(realpath "$HERALD_TEST_RECEIVER")
export HERALD_BIN HERALD_TEST_RECEIVER
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
for need in "$CHROMIUM" node npm sqlite3 gzip; do
  if ! command -v "$need" >/dev/null; then
    echo "console test: needs $need (scripts/setup.sh installs it)" >&2
    if [[ -n ${CI:-} ]]; then exit 1; fi
    exit 77
  fi
done

# The whole console, compressed, stays small (issue #18: under 200 KB).
bytes=$(cat "$HERE"/../../console/* | gzip -9 | wc -c)
echo "console assets: $bytes bytes gzipped"
if (( bytes > 200 * 1024 )); then
  echo "FAIL: the console's assets are $bytes bytes gzipped, over 200 KB" >&2
  exit 1
fi

"$HERE/../aws/npm_deps.sh" "$DEPS" "$HERE"
if [[ -n ${SCREENSHOTS:-} ]]; then SCREENSHOTS=$(realpath -m "$SCREENSHOTS"); fi
NPM_DEPS=$DEPS SCREENSHOTS=${SCREENSHOTS:-} exec node "$HERE/console_test.mjs"

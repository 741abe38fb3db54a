#!/usr/bin/env bash
# Installs the npm test tools of a package-lock.json into DEPS (`npm ci`)
# unless already there: by default this folder's (the emulators sqslite,
# serverless-offline-sns); with SRC, the package.json and
# package-lock.json of SRC (tests/browser: puppeteer-core, axe-core).
# Usage: tests/aws/npm_deps.sh DEPS [SRC]
set -euo pipefail
HERE=$(cd "${2:-$(dirname "$0")}" && pwd)
DEPS=${1:?usage: npm_deps.sh DEPS [SRC]}
command -v npm >/dev/null || { echo "npm_deps: no npm" >&2; exit 1; }
# Test programs run in parallel and each calls this: one installs, the
# others wait for it (a second `npm ci` would delete the first's tree).
mkdir -p "$(dirname "$DEPS")"
exec 9>"$DEPS.lock"
flock 9
if [[ ! -d $DEPS/node_modules ]] || ! cmp -s "$HERE/package-lock.json" "$DEPS/package-lock.json"; then
  mkdir -p "$DEPS"
  cp "$HERE/package.json" "$HERE/package-lock.json" "$DEPS/"
  (cd "$DEPS" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

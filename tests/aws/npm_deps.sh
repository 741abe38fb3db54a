#!/usr/bin/env bash
# Installs the npm emulators of package-lock.json (sqslite,
# serverless-offline-sns) into DEPS (`npm ci`) unless already there.
# Usage: tests/aws/npm_deps.sh DEPS
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DEPS=${1:?usage: npm_deps.sh DEPS}
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

#!/usr/bin/env bash
# docs/openapi.yaml against a live `herald serve`: validates the spec
# (swagger-parser), then checks a corpus of live answers, every error case of
# docs/http-api.md included, against it (check_live.js: status listed on the
# operation, media type, body schema by ajv).
#
# Usage: tests/openapi/run.sh HERALD_BIN [DEPS_DIR]
#   DEPS_DIR: where the npm test tools are installed (`npm ci` from
#   package-lock.json when missing or stale); default: this directory.
# As root, the store lives on a small tmpfs, filled on purpose for the 503
# case; otherwise that one case is skipped (said on stderr).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
HERALD=${1:?usage: run.sh HERALD_BIN [DEPS_DIR]}
DEPS=${2:-$HERE}
SPEC=$HERE/../../docs/openapi.yaml
for bin in node npm "$HERALD"; do
  command -v "$bin" >/dev/null || { echo "openapi test: missing $bin" >&2; exit 1; }
done

if [[ ! -d $DEPS/node_modules ]] || ! cmp -s "$HERE/package-lock.json" "$DEPS/package-lock.json"; then
  mkdir -p "$DEPS"
  if [[ $DEPS != "$HERE" ]]; then cp "$HERE/package.json" "$HERE/package-lock.json" "$DEPS/"; fi
  (cd "$DEPS" && npm ci --no-audit --no-fund --loglevel=error)
fi

tmp=$(mktemp -d /tmp/herald-openapi-XXXXXX)
pid=""
mounted=""
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [[ -n $mounted ]]; then umount -l "$tmp/fs" || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/fs"
fill=""
if [[ $(id -u) -eq 0 ]] && mount -t tmpfs -o size=8m tmpfs "$tmp/fs" 2>/dev/null; then
  mounted=1
  fill=$tmp/fs/filler
else
  echo "openapi test: cannot mount a tmpfs (not root?): the 503 case is skipped" >&2
fi
db=sqlite:$tmp/fs/h.db

# An event whose payload is not UTF-8: answered as payload_base64.
printf '\xff\xfe\x00binary' | "$HERALD" append --db "$db" --type bin.blob \
  --stream bin-1 --content-type application/octet-stream >/dev/null

port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
cat >"$tmp/h.toml" <<EOF
[server]
[[server.tokens]]
name = "reader"
token = "read-token"
scopes = ["read"]
[[server.tokens]]
name = "writer"
token = "append-token"
scopes = ["append"]
[[server.tokens]]
name = "operator"
token = "admin-token"
scopes = ["admin"]

# Nothing listens on port 1: each event fails once and is parked.
[[route]]
name = "hook"
sender = "http://127.0.0.1:1/events"
types = ["park.*"]
on_failure = "park"
max_attempts = 1
EOF
"$HERALD" serve --db "$db" --config "$tmp/h.toml" --listen "127.0.0.1:$port" \
  2>"$tmp/serve.err" &
pid=$!

NODE_PATH=$DEPS/node_modules node "$HERE/check_live.js" "$SPEC" \
  "http://127.0.0.1:$port" "$fill" || {
  echo "--- herald serve stderr:" >&2
  tail -20 "$tmp/serve.err" >&2
  exit 1
}

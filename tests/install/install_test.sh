#!/usr/bin/env bash
# The installed package works (issue #11.6): `cmake --install` this build
# into a temporary prefix, configure project/ against it with
# find_package(herald), build the README's program and a pull consumer, run
# the README's program, and have the consumer pull events from the
# installed `herald serve` (then resume from its checkpoint).
# Usage: install_test.sh BUILD_DIR PROJECT_DIR README_SOURCE CMAKE CXX [LAUNCHER]
set -euo pipefail
build=$1 project=$2 readme=$3 cmake=$4 cxx=$5 launcher=${6:-}
work=$(mktemp -d)
server=""
cleanup() {
  if [[ -n $server ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "install test: FAILED: $*" >&2; exit 1; }

prefix=$work/prefix
"$cmake" --install "$build" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log"; fail "cmake --install"; }
[[ -f $prefix/lib/cmake/herald/heraldConfig.cmake ]] ||
  [[ -f $prefix/lib64/cmake/herald/heraldConfig.cmake ]] ||
  ls "$prefix"/lib/*/cmake/herald/heraldConfig.cmake >/dev/null 2>&1 ||
  fail "no heraldConfig.cmake under $prefix"

opts=(-DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$cxx"
      -DCMAKE_BUILD_TYPE=Release -DREADME_SOURCE="$readme")
if [[ -n $launcher ]]; then opts+=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher"); fi
generator=()
if command -v ninja >/dev/null; then generator=(-G Ninja); fi
"$cmake" -S "$project" -B "$work/b" "${generator[@]}" "${opts[@]}" >"$work/configure.log" 2>&1 ||
  { cat "$work/configure.log"; fail "configure against find_package(herald)"; }
"$cmake" --build "$work/b" -j2 >"$work/build.log" 2>&1 ||
  { cat "$work/build.log"; fail "build against the installed herald"; }

# (a) The README's program.
mkdir "$work/run"
out=$(cd "$work/run" && "$work/b/readme_example") || fail "readme_example: $out"
echo "$out"
grep -q "refund for order 42" <<<"$out" || fail "readme_example printed no refund"
grep -q "committed: ok" <<<"$out" ||
  fail "readme_example did not commit"

# (b) A pull consumer against the installed `herald serve`, on a port the
# kernel picks (read back from the server's first line).
herald=$prefix/bin/herald
"$herald" serve --db "$work/h.db" --listen 127.0.0.1:0 2>"$work/serve.err" &
server=$!
base=""
for _ in $(seq 1 200); do
  base=$(grep -o 'on http://[0-9.:]*' "$work/serve.err" | head -n1 | cut -c4- || true)
  [[ -n $base ]] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/serve.err"; fail "herald serve exited"; }
  sleep 0.05
done
[[ -n $base ]] || { cat "$work/serve.err"; fail "herald serve did not start"; }

post() {
  curl -sf -X POST "$base/api/events" -H 'Content-Type: application/json' -d "$1" >/dev/null ||
    fail "POST $1"
}
post '{"stream":"order-1","type":"order.placed","payload":{"n":1}}'
post '{"stream":"order-2","type":"order.placed","payload":{"n":2}}'
post '{"stream":"order-1","type":"order.canceled","payload":{"n":3}}'

out=$("$work/b/pull_example" "$base" "$work/offset" 3) || fail "pull_example: $out"
echo "$out"
expected='1 order-1 order.placed {"n":1}
2 order-2 order.placed {"n":2}
3 order-1 order.canceled {"n":3}
next_offset 4'
[[ $out == "$expected" ]] || fail "pull_example printed, expected:
$expected"
[[ $(cat "$work/offset") == 4 ]] || fail "checkpoint file holds $(cat "$work/offset"), not 4"

# Resumes from its checkpoint: only the new event.
post '{"stream":"order-3","type":"order.placed","payload":{"n":4}}'
out=$("$work/b/pull_example" "$base" "$work/offset" 1) || fail "pull_example (resume): $out"
echo "$out"
[[ $out == '4 order-3 order.placed {"n":4}
next_offset 5' ]] || fail "pull_example did not resume at offset 4"

echo "install test: ok"

#!/usr/bin/env bash
# Builds the tests with sanitizers and runs the fast, in-process suites.
# Usage: scripts/sanitize.sh [address,undefined|thread] [ctest -R regex]
set -euo pipefail
cd "$(dirname "$0")/.."
sanitizer=${1:-address,undefined}
regex=${2:-'^(Backends/StoreContract|Json|Uuid|Time|Event|SqliteStore|Dispatcher|UnitOfWork|OrderService)'}
dir=build-${sanitizer//,/-}
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
  -DHERALD_SANITIZE="$sanitizer" -DHERALD_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir" -j"${HERALD_JOBS:-2}"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
ctest --test-dir "$dir" --output-on-failure -j2 -R "$regex"

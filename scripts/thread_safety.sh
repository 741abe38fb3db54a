#!/usr/bin/env bash
# Builds every herald library and the herald binary with clang and
# -DHERALD_THREAD_SAFETY=ON (-Wthread-safety as errors) into
# build-thread-safety: the GUARDED_BY / REQUIRES annotations of
# src/util/thread_annotations.h are checked. Tests and benchmarks are not
# built. Usage: scripts/thread_safety.sh
set -euo pipefail
cd "$(dirname "$0")/.."
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B build-thread-safety -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O0 -g0" \
  -DHERALD_THREAD_SAFETY=ON -DHERALD_WERROR="${HERALD_WERROR:-ON}" \
  -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_BENCH=OFF \
  -DHERALD_BUILD_EXAMPLES=OFF >/dev/null
cmake --build build-thread-safety -j"${HERALD_JOBS:-2}"
echo "thread-safety: clean"

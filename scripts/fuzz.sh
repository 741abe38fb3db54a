#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz and
# runs each for SECONDS (default 20) from its corpus in fuzz/corpus/NAME.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
  -DHERALD_BUILD_FUZZ=ON -DHERALD_BUILD_TESTS=OFF -DHERALD_BUILD_BENCH=OFF \
  -DHERALD_BUILD_EXAMPLES=OFF -DHERALD_SANITIZE=address,undefined >/dev/null
targets=()
for src in fuzz/*_fuzz.cc; do targets+=("$(basename "${src%.cc}")"); done
cmake --build build-fuzz -j"${HERALD_JOBS:-2}" --target "${targets[@]}"
for name in "${targets[@]}"; do
  bin=build-fuzz/fuzz/$name
  corpus=fuzz/corpus/${name%_fuzz}
  mkdir -p "$corpus"
  work=$(mktemp -d)
  echo "fuzz: $name for ${seconds}s"
  "$bin" -max_total_time="$seconds" -max_len=65536 -print_final_stats=0 \
    "$work" "$corpus" 2>&1 | tail -n 3
  rm -rf "$work"
done
echo "fuzz: all targets ran without a crash"

#!/usr/bin/env bash
# Configures and builds herald into ./build (RelWithDebInfo, Ninja, ccache
# when present). Usage: scripts/build.sh [-DOPTION=VALUE...] [TARGET...]
# With no TARGET everything (library, binary, tests, benchmarks) is built.
set -euo pipefail
cd "$(dirname "$0")/.."
options=()
targets=()
for a in "$@"; do
  if [[ $a == -D* ]]; then options+=("$a"); else targets+=("$a"); fi
done
if command -v ccache >/dev/null; then
  options+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${options[@]}" >/dev/null
cmake --build build -j"${HERALD_JOBS:-2}" ${targets[@]+--target "${targets[@]}"}

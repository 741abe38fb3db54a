#!/usr/bin/env bash
# Installs what is missing, builds herald and its tests, and runs every test.
# The servers the tests need (PostgreSQL, an HTTP receiver...) are started by
# the test scripts on 127.0.0.1 in temporary directories and stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh -DHERALD_WERROR="${HERALD_WERROR:-ON}"
run=(ctest --test-dir build --output-on-failure -j2 --timeout 600)
if [[ -x tests/support/with-postgres.sh ]]; then
  run=(tests/support/with-postgres.sh "${run[@]}")
fi
"${run[@]}"

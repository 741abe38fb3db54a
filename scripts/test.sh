#!/usr/bin/env bash
# Installs what is missing, builds herald and its tests, runs every test,
# then the checks (docs/building.md): the in-process suites and the fuzz
# corpora under ASan+UBSan, a clang build with -Wthread-safety, and
# clang-tidy on src/. The servers the tests need (PostgreSQL, an HTTP
# receiver...) are started by the test scripts on 127.0.0.1 in temporary
# directories and stopped after. Prints each step's time at the end.
#
# Environment: HERALD_WERROR (default ON), HERALD_ASAN (default 1),
# HERALD_THREAD_SAFETY_CHECK (default 1), HERALD_TIDY (default 1),
# HERALD_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

times=()
step() {
  local name=$1 start=$SECONDS
  shift
  echo "== $name" >&2
  "$@"
  times+=("$(printf '%-44s %5d s' "$name" $((SECONDS - start)))")
}
report() {
  local status=$?
  if ((${#times[@]})); then
    printf '\nstep times:\n' >&2
    printf '  %s\n' "${times[@]}" >&2
    printf '  %-44s %5d s\n' "total" "$SECONDS" >&2
  fi
  return $status
}
trap report EXIT

pg=()
if [[ -x tests/support/with-postgres.sh ]]; then pg=(tests/support/with-postgres.sh); fi

step "setup" scripts/setup.sh
step "build (warnings as errors)" scripts/build.sh -DHERALD_WERROR="${HERALD_WERROR:-ON}"
# The broker suites share one RabbitMQ server (about 5 s to start); NATS
# servers are started by the test binaries themselves.
rabbit=()
if [[ -x tests/support/with-rabbitmq.sh ]]; then
  rabbit=(tests/support/with-rabbitmq.sh)
fi
step "tests" ${rabbit[@]+"${rabbit[@]}"} ${pg[@]+"${pg[@]}"} ctest --test-dir build --output-on-failure -j2 --timeout 600
if [[ ${HERALD_ASAN:-1} == 1 ]]; then
  step "ASan+UBSan: build, in-process suites" ${pg[@]+"${pg[@]}"} scripts/sanitize.sh address,undefined
fi
if [[ ${HERALD_THREAD_SAFETY_CHECK:-1} == 1 ]]; then
  step "thread-safety: clang -Wthread-safety build" scripts/thread_safety.sh
fi
if [[ ${HERALD_TIDY:-1} == 1 ]]; then
  step "clang-tidy on src/" scripts/tidy.sh
fi

#!/usr/bin/env bash
# Builds the tests with sanitizers into build-SANITIZERS and runs the fast,
# in-process suites, the fuzz corpora included (FuzzCorpus.*), and the
# in-process broker suites: the NATS sender against a real nats-server
# (where ASan found libnats calling a freed sender's handler) and the Kafka
# sender against librdkafka's mock. The suites that run the sanitized
# `herald` binary and consumer child (NATS/RabbitMQ/Kafka consumers,
# RabbitMQ senders) pass under ASan too but stay out of CI for its time:
#   scripts/sanitize.sh address,undefined \
#     '^(NatsConsumer|RabbitSenderTest|RabbitConsumer|KafkaConsumer)'
# builds everything and runs them (RabbitMQ's need HERALD_TEST_AMQP_URL:
# run it under tests/support/with-rabbitmq.sh).
# Usage: scripts/sanitize.sh [address,undefined|thread] [ctest -R regex]
# With the default regex only the test programs it selects are built; with
# a regex of your own everything is. PostgreSQL-parameterised suites run on
# PostgreSQL too when HERALD_TEST_PG_URL is set (scripts/test.sh runs this
# under tests/support/with-postgres.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitizer=${1:-address,undefined}
default_regex='^(Backends/StoreContract|Json|Uuid|Time|Event|SqliteStore|Dispatcher|UnitOfWork|OrderService|FuzzCorpus|RelayConfig|Backends/RelayLibrary|ThreadAnnotations|NatsSender|NatsOptions|KafkaSenderTest|KafkaOptions|JavaMurmur2)'
regex=${2:-$default_regex}
dir=build-${sanitizer//,/-}
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
# -O1 -g1 (line tables): less than half the compile time of -O2 -g (tests/
# unit/json_test.cc: 19 s -> 7 s of CPU under ASan+UBSan), with
# file:line in every report; asserts stay on.
targets=()
# Every part named, so that a build dir configured by an older version of
# this script (which left the brokers out) is turned back on.
parts=(-DHERALD_WITH_KAFKA=ON -DHERALD_WITH_NATS=ON -DHERALD_WITH_RABBITMQ=ON
       -DHERALD_WITH_MYSQL=ON)
if [[ $regex == "$default_regex" ]]; then
  # None of these suites reaches RabbitMQ or a MySQL source: leave them out
  # rather than compile them under the sanitizers.
  parts=(-DHERALD_WITH_KAFKA=ON -DHERALD_WITH_NATS=ON -DHERALD_WITH_RABBITMQ=OFF
         -DHERALD_WITH_MYSQL=OFF)
  # The programs behind the default suites (tests/*/CMakeLists.txt).
  targets=(store_contract_test util_test sqlite_store_test dispatcher_test
           order_service_test order_service relay_config_test
           relay_library_test thread_annotations_test
           nats_sender_test kafka_sender_test)
  for src in fuzz/*_fuzz.cc; do
    targets+=("$(basename "${src%.cc}")_corpus_test")
  done
fi
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -DHERALD_SANITIZE="$sanitizer" -DHERALD_BUILD_BENCH=OFF "${parts[@]}" >/dev/null
start=$SECONDS
cmake --build "$dir" -j"${HERALD_JOBS:-2}" ${targets[@]+--target "${targets[@]}"}
echo "sanitize: built in $((SECONDS - start)) s"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
start=$SECONDS
ctest --test-dir "$dir" --output-on-failure -j2 --timeout 600 -R "$regex"
echo "sanitize: tests ran in $((SECONDS - start)) s"

#!/usr/bin/env bash
# Installs the Debian packages herald needs to build, test and benchmark.
# Idempotent: installs only what is missing. Works as root on a fresh Debian 12
# machine and through sudo otherwise.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config ccache clang-format clang-tidy git clang lld
  libclang-rt-14-dev
  # libraries
  libsqlite3-dev sqlite3 libpq-dev libcurl4-openssl-dev libboost-dev
  libtomlplusplus-dev
  librabbitmq-dev
  # adopted outbox tables on MySQL/MariaDB (src/source/mysql) and their tests
  libmariadb-dev mariadb-server python3-pymysql
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev curl python3
  postgresql wrk nginx-light
  # tests/openapi (npm test tools; npm ships with nodejs on NodeSource builds,
  # is the Debian package npm otherwise)
  nodejs
  # NATS JetStream sender (src/transport/nats) and its tests
  libnats-dev nats-server
  # RabbitMQ sender (src/transport/rabbitmq) and its tests
  rabbitmq-server
  # Kafka sender (src/transport/kafka; tests use librdkafka's mock cluster)
  librdkafka-dev
  # SQS/SNS sender tests: the conformance server verifies signatures with
  # botocore; Debian's aws CLI makes and counts emulator queues
  python3-botocore awscli
  # browser tests (tests/browser: headless Chromium driven by puppeteer-core)
  chromium
)
# npm: Debian's package only where Node.js came without one (a nodejs
# that bundles npm conflicts with Debian's npm).
command -v npm >/dev/null || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm comes with NodeSource's nodejs; Debian's own nodejs needs the npm package.
if ! command -v npm >/dev/null; then
  echo "setup: installing npm" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
    --no-install-recommends npm >/dev/null
fi

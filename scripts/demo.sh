#!/usr/bin/env bash
# Installs what is missing, builds the herald binary, and runs herald's main
# job on the embedded SQLite default: `herald serve --demo` with ./herald.db
# on 127.0.0.1:8080, a small producer appending order events so there is
# something to watch. Extra arguments go to `herald serve` (e.g. --listen).
# Ctrl-C stops it cleanly.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/build.sh" herald_cli_bin
exec "$root/build/bin/herald" serve --demo "$@"

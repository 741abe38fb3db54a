#!/usr/bin/env bash
# The floor under herald's PostgreSQL append (docs/benchmarks-postgres.md):
# pgbench runs the raw transaction, the floor (the event row alone, with
# its stream version) and herald's append, one event per transaction, at 1
# and 8 connections, interleaved, ROUNDS rounds of SECS seconds each.
#
# Usage: tests/support/with-postgres.sh bench/postgres/floor/run.sh BUILD_DIR
# Env:   SECS (4), ROUNDS (3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../../build}" && pwd)
url=${HERALD_TEST_PG_URL:?run under tests/support/with-postgres.sh}
"$build/bin/herald" migrate --db "$url" >/dev/null
psql -qAt "$url" >/dev/null <<'SQL'
CREATE TABLE orders (id int PRIMARY KEY, status text, version int);
INSERT INTO orders SELECT g, 'placed', 0 FROM generate_series(0, 63) g;
CREATE TABLE raw_events (seq bigserial PRIMARY KEY, id uuid NOT NULL UNIQUE,
  stream text NOT NULL, type text NOT NULL, content_type text NOT NULL,
  payload bytea NOT NULL, metadata text NOT NULL,
  occurred_at timestamptz NOT NULL);
CREATE INDEX raw_events_stream ON raw_events (stream);
-- herald_events' columns and indexes, without its commit trigger.
CREATE TABLE floor_events (LIKE herald_events INCLUDING ALL);
SQL
for c in 1 8; do
  for round in $(seq "${ROUNDS:-3}"); do
    line="connections=$c round=$round"
    for f in raw floor herald; do
      tps=$(pgbench -n -M prepared -c "$c" -j "$c" -T "${SECS:-4}" \
              -f "$here/$f.sql" "$url" 2>&1 | awk '/^tps/ {print $3; exit}')
      line+=" $f=${tps%.*}"
    done
    echo "$line" | awk '{split($3,r,"="); split($4,f,"="); split($5,h,"=");
      printf "%s floor/raw=%.2f herald/raw=%.2f\n", $0, f[2]/r[2], h[2]/r[2]}'
  done
done

#!/usr/bin/env bash
# The floor under herald's PostgreSQL append (docs/benchmarks-postgres.md):
# pgbench runs the raw transaction, the floor (the event row alone, with
# its stream version) and herald's append, one event per transaction, at
# each connection count of CONNS, interleaved, ROUNDS rounds of SECS
# seconds each. With SAMPLE=1, the last herald phase of each round is
# sampled (pg_stat_activity wait events, every 10 ms) and the counts
# printed after the round.
#
# Usage: tests/support/with-postgres.sh bench/postgres/floor/run.sh BUILD_DIR
# Env:   SECS (4), ROUNDS (3), CONNS ("1 8 32"), SCRIPTS ("raw floor herald")
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
scripts=(${SCRIPTS:-raw floor herald})
sample() {  # wait events of herald's client backends until killed
  while :; do
    psql -qAt "$url" -c "SELECT coalesce(wait_event_type || ':' || wait_event,
      'CPU') FROM pg_stat_activity WHERE backend_type = 'client backend'
      AND application_name = 'pgbench' AND state = 'active'" 2>/dev/null
    sleep 0.01
  done
}
for c in ${CONNS:-1 8 32}; do
  for round in $(seq "${ROUNDS:-3}"); do
    line="connections=$c round=$round"
    for f in "${scripts[@]}"; do
      spid=
      if [[ ${SAMPLE:-0} = 1 ]]; then
        sample >"${TMPDIR:-/tmp}/floor-sample-$f" & spid=$!
      fi
      tps=$(pgbench -n -M prepared -c "$c" -j "$c" -T "${SECS:-4}" \
              -f "$here/$f.sql" "$url" 2>&1 | awk '/^tps/ {print $3; exit}')
      if [[ -n $spid ]]; then
        kill "$spid"; wait "$spid" 2>/dev/null || true
        echo "  $f wait events: $(sort "${TMPDIR:-/tmp}/floor-sample-$f" |
          uniq -c | sort -rn | head -6 | awk '{printf "%s=%s ", $2, $1}')"
      fi
      line+=" $f=${tps%.*}"
    done
    echo "$line" | awk '{
      for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      out = $0
      if (v["raw"] > 0 && v["floor"] > 0) out = out sprintf(" floor/raw=%.2f", v["floor"] / v["raw"])
      if (v["raw"] > 0 && v["herald"] > 0) out = out sprintf(" herald/raw=%.2f", v["herald"] / v["raw"])
      if (v["floor"] > 0 && v["herald"] > 0) out = out sprintf(" herald/floor=%.2f", v["herald"] / v["floor"])
      print out }'
  done
done

#!/usr/bin/env bash
# The floor under herald's PostgreSQL append (docs/benchmarks-postgres.md):
# pgbench runs the raw transaction, the floor (the event row alone, with
# its stream version) and herald's append, one event per transaction, at
# each connection count of CONNS, interleaved, ROUNDS rounds of SECS
# seconds each. With SAMPLE=1, the last herald phase of each round is
# sampled (pg_stat_activity wait events, every 10 ms) and the counts
# printed after the round.
#
# More scripts for SCRIPTS, to see where the time goes: stream_row (the
# floor plus herald_streams' row, one statement), append_only
# (herald_append_events in a database without the commit trigger: nothing
# at commit), after (the same, positioned after commit by the passes of
# after_commit.sql, run every PASS_SLEEP (0.002) seconds by a background
# session; the positions are checked dense and in per-stream order at the
# end), cte (the append as one SQL statement, the stream row and the
# event, positioned by herald's commit trigger), cte_only (the same with
# nothing at commit), herald_append (the SQL function other languages
# call, which checks its arguments and calls herald_append_events),
# cte_new (the C++ statement for an event whose id herald generated:
# the stream row's update, then the event, no ON CONFLICT), cte_new2 (the
# same, inserting the stream row when it has none: schema 7's statement),
# ceiling (the floor plus the stream row plus the cheapest position row
# written at commit: a deferred trigger inserting it, its position from a
# sequence, no lock, no queue; what any store positioning at commit pays),
# fn_cte and fn_cte_noset (the cte statement inside a plpgsql function,
# with and without herald's SET clauses: fn_variants.sql), raw_pad (the
# raw transaction with a 600-byte payload: as much WAL as herald's append).
# A script name prefixed v_ (v_cte, v_herald_append, ...) runs that script
# in a database of its own to which the SQL file VARIANT was applied after
# herald's schema (a candidate change, measured beside today's schema).
#
# Usage: tests/support/with-postgres.sh bench/postgres/floor/run.sh BUILD_DIR
# Env:   SECS (4), ROUNDS (3), CONNS ("1 8 32"), SCRIPTS ("raw floor herald"),
#        PASS_SLEEP (0.002), VACUUM (1: vacuum herald_pending every second
#        during each phase, as the sequencer of a running herald does; 0:
#        only autovacuum, as in runs before 2026-12-03 07:50 UTC),
#        WAL (1: print the WAL written per transaction,
#        from pg_current_wal_insert_lsn around each phase; the
#        cluster-wide figure, so background passes count too)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../../../build}" && pwd)
url=${HERALD_TEST_PG_URL:?run under tests/support/with-postgres.sh}
base=${url%%\?*}
base=${base%/*}
dburl() {  # the URL of database $1 on the same server
  local q=
  [[ $url == *\?* ]] && q="?${url#*\?}"
  echo "$base/$1$q"
}
setup() {
"$build/bin/herald" migrate --db "$1" >/dev/null
psql -qAt "$1" >/dev/null <<'SQL'
CREATE TABLE orders (id int PRIMARY KEY, status text, version int);
INSERT INTO orders SELECT g, 'placed', 0 FROM generate_series(0, 63) g;
CREATE TABLE raw_events (seq bigserial PRIMARY KEY, id uuid NOT NULL UNIQUE,
  stream text NOT NULL, type text NOT NULL, content_type text NOT NULL,
  payload bytea NOT NULL, metadata text NOT NULL,
  occurred_at timestamptz NOT NULL);
CREATE INDEX raw_events_stream ON raw_events (stream);
-- herald_events' columns and indexes, without its commit trigger.
CREATE TABLE floor_events (LIKE herald_events INCLUDING ALL);
CREATE TABLE floor2_events (LIKE herald_events INCLUDING ALL);
CREATE TABLE floor_streams (LIKE herald_streams INCLUDING ALL);
-- The ceiling script's tables: herald's shapes, a trigger that only
-- writes the position row at commit.
CREATE TABLE ceil_events (LIKE herald_events INCLUDING ALL);
CREATE TABLE ceil_streams (LIKE herald_streams INCLUDING ALL);
CREATE TABLE ceil_log (LIKE herald_log INCLUDING ALL);
CREATE SEQUENCE ceil_positions;
CREATE FUNCTION ceil_position() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO ceil_log (first_position, batch, events)
    VALUES (nextval('ceil_positions'), NEW.batch, 1);
  RETURN NULL;
END
$fn$;
CREATE CONSTRAINT TRIGGER ceil_position_on_commit
  AFTER INSERT ON ceil_events DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.idx = 0) EXECUTE FUNCTION ceil_position();
INSERT INTO ceil_streams SELECT 'order-' || g, 0 FROM generate_series(1, 1000) g;
-- Every stream the scripts append to has its row from the start (as after
-- its first event), so the first phase does what the later ones do.
INSERT INTO herald_streams SELECT 'order-' || g, 0 FROM generate_series(1, 1000) g;
SQL
}
setup "$url"
psql -qAt "$url" -f "$here/fn_variants.sql" >/dev/null
scripts=(${SCRIPTS:-raw floor herald})
dbof() {  # the database of script $1 when not the main one
  case $1 in append_only | cte_only) echo herald_append_only ;;
    after) echo herald_after ;; v_*) echo herald_variant ;; esac
}
for f in "${scripts[@]}"; do
  db=$(dbof "$f")
  if [[ -n $db ]] && ! psql -qAt "$url" -c "CREATE DATABASE $db" 2>/dev/null
  then continue; fi  # created for an earlier script
  if [[ $db = herald_variant ]]; then
    setup "$(dburl "$db")"
    psql -qAt "$(dburl "$db")" -v ON_ERROR_STOP=1 \
      -f "${VARIANT:?v_ scripts need VARIANT=file.sql}" >/dev/null
  elif [[ -n $db ]]; then
    setup "$(dburl "$db")"
    psql -qAt "$(dburl "$db")" -f "$here/after_commit.sql" >/dev/null
  fi
done
urlof() {
  local db
  db=$(dbof "$1")
  if [[ -n $db ]]; then dburl "$db"; else echo "$url"; fi
}
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
    line="connections=$c round=$round" walline="  WAL per transaction:"
    for f in "${scripts[@]}"; do
      spid= ppid=
      if [[ ${SAMPLE:-0} = 1 ]]; then
        sample >"${TMPDIR:-/tmp}/floor-sample-$f" & spid=$!
      fi
      ins() {  # rows ever inserted into herald table $1 of this phase's db
        psql -qAt "$(urlof "$f")" -c "SELECT n_tup_ins FROM pg_stat_user_tables
          WHERE relname = '$1'"
      }
      [[ ${SAMPLE:-0} != 1 || $f != herald ]] || q0=$(ins herald_pending) l0=$(ins herald_log)
      if [[ $f = after ]]; then
        psql -qAt "$(urlof after)" -c "DO \$\$ DECLARE t timestamptz :=
          clock_timestamp() + interval '${SECS:-4} s'; BEGIN
          WHILE clock_timestamp() < t LOOP PERFORM herald_sequence2(); COMMIT;
          PERFORM pg_sleep(${PASS_SLEEP:-0.002}); END LOOP; END \$\$" \
          >/dev/null & ppid=$!
      fi
      vpid=
      if [[ ${VACUUM:-1} = 1 ]]; then  # as herald's sequencer does (1 s)
        (u=$(urlof "$f"); while :; do sleep 1
          psql -qAt "$u" -c "VACUUM (TRUNCATE false) herald_pending" \
            >/dev/null 2>&1 || true; done) & vpid=$!
      fi
      lsn0=$(psql -qAt "$url" -c "SELECT pg_current_wal_insert_lsn()")
      out=$(pgbench -n -M prepared -c "$c" -j "$c" -T "${SECS:-4}" \
              -f "$here/${f#v_}.sql" "$(urlof "$f")" 2>&1)
      tps=$(awk '/^tps/ {print $3; exit}' <<<"$out")
      txs=$(awk '/actually processed/ {print $NF; exit}' <<<"$out")
      wal=$(psql -qAt "$url" -c "SELECT round(pg_wal_lsn_diff(
        pg_current_wal_insert_lsn(), '$lsn0') / 1024.0 / greatest($txs, 1), 2)")
      [[ -z $ppid ]] || wait "$ppid"
      [[ -z $vpid ]] || { kill "$vpid"; wait "$vpid" 2>/dev/null || true; }
      if [[ -n $spid ]]; then
        kill "$spid"; wait "$spid" 2>/dev/null || true
        echo "  $f wait events: $(sort "${TMPDIR:-/tmp}/floor-sample-$f" |
          uniq -c | sort -rn | head -6 | awk '{printf "%s=%s ", $2, $1}')"
        if [[ $f = herald ]]; then
          sleep 1  # backends' statistics reach pg_stat_user_tables on exit
          echo "  herald batches positioned: $(($(ins herald_log) - l0)), of" \
            "which queued in herald_pending by a commit that found the lock" \
            "held: $(($(ins herald_pending) - q0))"
        fi
      fi
      line+=" $f=${tps%.*}"
      walline+=" $f=${wal}KB"
    done
    echo "$line" | awk '{
      for (i = 3; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      out = $0
      if (v["raw"] > 0 && v["floor"] > 0) out = out sprintf(" floor/raw=%.2f", v["floor"] / v["raw"])
      if (v["raw"] > 0 && v["herald"] > 0) out = out sprintf(" herald/raw=%.2f", v["herald"] / v["raw"])
      for (k in v) if (k != "raw" && k != "floor" && v["floor"] > 0 && v[k] > 0)
        out = out sprintf(" %s/floor=%.2f", k, v[k] / v["floor"])
      for (k in v) if (k != "raw" && k != "floor" && k != "ceiling" && v["ceiling"] > 0 && v[k] > 0)
        out = out sprintf(" %s/ceiling=%.2f", k, v[k] / v["ceiling"])
      print out }'
    [[ ${WAL:-0} != 1 ]] || echo "$walline"
  done
done
if [[ " ${scripts[*]} " = *" after "* ]]; then
  u=$(urlof after)
  psql -qAt "$u" -c "SELECT herald_sequence2()" >/dev/null
  psql -qAt "$u" -c "SELECT 'after: events ' || (SELECT count(*) FROM herald_events)
    || ', positioned ' || (SELECT coalesce(sum(events), 0) FROM herald_log)
    || ', head ' || (SELECT coalesce(max(first_position + events - 1), 0) FROM herald_log)
    || ', out of stream order ' || (SELECT count(*) FROM (SELECT stream_version,
       lag(stream_version) OVER (PARTITION BY stream ORDER BY position) AS prev
       FROM herald_positioned_events) x WHERE prev <> stream_version - 1)"
fi

// The PostgreSQL schema of herald, as versioned migrations. Migration i
// (1-based) brings a database from schema version i-1 to i. See
// docs/schema-postgresql.md for what each table and function is for.
#include "store/postgres/postgres_schema.h"

namespace herald::detail {

namespace {

// 1: the initial schema.
constexpr const char* kMigration1 = R"sql(
CREATE TABLE IF NOT EXISTS herald_meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);

-- Events, immutable once inserted. An append call inserts one batch:
-- `batch` comes from herald_batches (no cache, so batch ids follow
-- insertion time across sessions) and is taken after the stream locks;
-- `idx` numbers the call's events from 0.
CREATE SEQUENCE herald_batches CACHE 1;
CREATE TABLE herald_events (
  batch          bigint  NOT NULL,
  idx            integer NOT NULL,
  id             uuid    NOT NULL UNIQUE,
  stream         text    NOT NULL,
  stream_version bigint  NOT NULL,
  type           text    NOT NULL,
  content_type   text    NOT NULL DEFAULT 'application/json',
  payload        bytea   NOT NULL,
  metadata       text    NOT NULL DEFAULT '{}',
  occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (batch, idx),
  UNIQUE (stream, stream_version)
);

-- Batches committed but not yet positioned (the sequencer's queue).
CREATE TABLE herald_pending (
  batch  bigint  PRIMARY KEY,
  events integer NOT NULL
);

-- The log: batch `batch` holds positions first_position ..
-- first_position + events - 1 (event idx i at first_position + i).
CREATE TABLE herald_log (
  first_position bigint  PRIMARY KEY,
  batch          bigint  NOT NULL UNIQUE,
  events         integer NOT NULL
);

-- Every positioned event with its position, for reading from SQL.
CREATE VIEW herald_positioned_events AS
  SELECT l.first_position + e.idx AS position, e.id, e.stream,
         e.stream_version, e.type, e.content_type, e.payload, e.metadata,
         e.occurred_at
    FROM herald_log l JOIN herald_events e ON e.batch = l.batch;

-- One row per stream: its version. Appends lock the row until commit, so
-- appends to one stream are serialized (and only those).
CREATE TABLE herald_streams (
  stream  text   PRIMARY KEY,
  version bigint NOT NULL
);

CREATE TABLE herald_checkpoints (
  name        text   PRIMARY KEY,
  next_offset bigint NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE herald_parked (
  route     text    NOT NULL,
  event_id  uuid    NOT NULL,
  position  bigint  NOT NULL,
  stream    text    NOT NULL,
  state     text    NOT NULL,
  attempts  integer NOT NULL,
  error     text    NOT NULL,
  parked_at timestamptz NOT NULL,
  PRIMARY KEY (route, event_id)
);
CREATE INDEX herald_parked_by_position ON herald_parked (route, position);

CREATE TABLE herald_inbox (
  consumer   text NOT NULL,
  event_id   text NOT NULL,
  handled_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (consumer, event_id)
);

CREATE TABLE herald_leases (
  name       text PRIMARY KEY,
  owner      text NOT NULL,
  expires_at timestamptz NOT NULL
);

-- A UUIDv7 (48-bit Unix milliseconds, then random bits).
CREATE FUNCTION herald_uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $fn$
  SELECT encode(
    set_bit(set_bit(
      overlay(uuid_send(gen_random_uuid())
              PLACING substring(int8send(
                (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                FROM 3)
              FROM 1 FOR 6),
      52, 1), 53, 1), 'hex')::uuid
$fn$;

-- The careful form of herald_append_events (below): looks up stored ids
-- first, checks the expected version, then inserts what is new. Used when
-- the fast path meets an id that is stored already, a repeated id or a
-- version other than expected.
CREATE FUNCTION herald_append_events_checked(
    p_ids uuid[], p_streams text[], p_types text[], p_content_types text[],
    p_payloads bytea[], p_metadata text[], p_occurred_at timestamptz[],
    p_expected_version bigint)
RETURNS TABLE (r_ord integer, r_created boolean, r_id uuid,
               r_position bigint, r_stream text, r_stream_version bigint,
               r_type text, r_content_type text, r_payload bytea,
               r_metadata text, r_occurred_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  v_stored   uuid[];
  v_distinct integer;
  v_new      integer;
  v_streams  text[];
  v_versions bigint[];
  v_current  bigint;
  v_batch    bigint;
BEGIN
  SELECT coalesce(array_agg(e.id), '{}') INTO v_stored
    FROM herald_events e WHERE e.id = ANY (p_ids);
  SELECT count(DISTINCT x) INTO v_distinct FROM unnest(p_ids) x;
  v_new := v_distinct - cardinality(v_stored);

  IF v_new > 0 AND p_expected_version IS NOT NULL THEN
    IF p_expected_version = 0 THEN
      INSERT INTO herald_streams AS s (stream, version)
        VALUES (p_streams[1], v_new)
        ON CONFLICT (stream) DO UPDATE SET version = s.version + v_new
        WHERE s.version = 0;
    ELSE
      UPDATE herald_streams s SET version = s.version + v_new
        WHERE s.stream = p_streams[1] AND s.version = p_expected_version;
    END IF;
    IF NOT FOUND THEN
      SELECT s.version INTO v_current FROM herald_streams s
        WHERE s.stream = p_streams[1];
      RETURN QUERY SELECT 0, false, NULL::uuid, NULL::bigint, p_streams[1],
        coalesce(v_current, 0), NULL::text, NULL::text, NULL::bytea,
        NULL::text, NULL::timestamptz;
      RETURN;
    END IF;
    v_streams := ARRAY[p_streams[1]];
    v_versions := ARRAY[p_expected_version + v_new];
  ELSIF v_new > 0 THEN
    WITH fresh AS (
      SELECT DISTINCT ON (t.id) t.id, t.stream
        FROM unnest(p_ids, p_streams) AS t(id, stream)
        WHERE t.id <> ALL (v_stored)
        ORDER BY t.id
    ), bumped AS (
      INSERT INTO herald_streams AS s (stream, version)
        SELECT f.stream, count(*) FROM fresh f GROUP BY f.stream
        ORDER BY f.stream
        ON CONFLICT (stream) DO UPDATE SET version = s.version + excluded.version
        RETURNING s.stream, s.version
    )
    SELECT array_agg(b.stream), array_agg(b.version)
      INTO v_streams, v_versions FROM bumped b;
  END IF;

  IF v_new > 0 THEN
    v_batch := nextval('herald_batches');
    WITH input AS (
      SELECT t.*
        FROM unnest(p_ids, p_streams, p_types, p_content_types, p_payloads,
                    p_metadata, p_occurred_at)
             WITH ORDINALITY AS t(id, stream, type, content_type, payload,
                                  metadata, occurred_at, ord)
    ), fresh AS (
      SELECT DISTINCT ON (i.id) i.* FROM input i
        WHERE i.id <> ALL (v_stored) ORDER BY i.id, i.ord
    ), numbered AS (
      SELECT f.*, b.version - count(*) OVER (PARTITION BY f.stream)
                  + row_number() OVER (PARTITION BY f.stream ORDER BY f.ord)
                  AS stream_version,
             row_number() OVER (ORDER BY f.ord) - 1 AS idx
        FROM fresh f JOIN unnest(v_streams, v_versions) AS b(stream, version)
          ON b.stream = f.stream
    )
    INSERT INTO herald_events (batch, idx, id, stream, stream_version, type,
                               content_type, payload, metadata, occurred_at)
      SELECT v_batch, n.idx, n.id, n.stream, n.stream_version, n.type,
             n.content_type, n.payload, n.metadata, n.occurred_at
        FROM numbered n;
    INSERT INTO herald_pending (batch, events) VALUES (v_batch, v_new);
  END IF;

  RETURN QUERY
    WITH t AS (
      SELECT u.id, u.ord::integer AS ord,
             u.id <> ALL (v_stored)
             AND u.ord = min(u.ord) OVER (PARTITION BY u.id) AS created
        FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
    )
    SELECT t.ord, t.created, e.id,
           CASE WHEN t.created THEN NULL ELSE l.first_position + e.idx END,
           e.stream, e.stream_version,
           CASE WHEN t.created THEN NULL ELSE e.type END,
           CASE WHEN t.created THEN NULL ELSE e.content_type END,
           CASE WHEN t.created THEN NULL ELSE e.payload END,
           CASE WHEN t.created THEN NULL ELSE e.metadata END,
           e.occurred_at
      FROM t JOIN herald_events e ON e.id = t.id
      LEFT JOIN herald_log l ON l.batch = e.batch
     ORDER BY t.ord;
END
$fn$;

-- Appends a batch of events inside the caller's transaction: the arrays
-- hold one element per event. Idempotent by id: an id stored already is
-- not stored again and comes back as stored (r_created = false). With
-- p_expected_version (all events in one stream), a stream at another
-- version makes it write nothing and return one row with r_ord = 0 and the
-- stream's current version in r_stream_version; it raises no error, so the
-- caller's transaction stays usable. Locks each stream's herald_streams row
-- until the transaction ends, then takes the batch id, so appends to one
-- stream are serialized and their batch ids follow append order. Rows of
-- new events carry only r_ord, r_created, r_stream and r_stream_version.
CREATE FUNCTION herald_append_events(
    p_ids uuid[], p_streams text[], p_types text[], p_content_types text[],
    p_payloads bytea[], p_metadata text[], p_occurred_at timestamptz[],
    p_expected_version bigint)
RETURNS TABLE (r_ord integer, r_created boolean, r_id uuid,
               r_position bigint, r_stream text, r_stream_version bigint,
               r_type text, r_content_type text, r_payload bytea,
               r_metadata text, r_occurred_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  v_n        integer := cardinality(p_ids);
  v_stream   text := p_streams[1];
  v_version  bigint;
  v_base     bigint;
  v_batch    bigint;
  v_streams  text[];
  v_versions bigint[];
  v_counts   bigint[];
BEGIN
  IF v_n IS NULL OR v_n = 0 THEN
    RETURN;
  END IF;
  -- The fast path: ids distinct within the call and not stored before.
  IF v_n > 1 AND (SELECT count(DISTINCT x) FROM unnest(p_ids) x) <> v_n THEN
    RETURN QUERY SELECT * FROM herald_append_events_checked(p_ids, p_streams,
      p_types, p_content_types, p_payloads, p_metadata, p_occurred_at,
      p_expected_version);
    RETURN;
  END IF;
  IF v_stream = ALL (p_streams) THEN
    -- One stream: bump its version by n (locking its row), then insert.
    IF p_expected_version IS NULL THEN
      INSERT INTO herald_streams AS s (stream, version) VALUES (v_stream, v_n)
        ON CONFLICT (stream) DO UPDATE SET version = s.version + v_n
        RETURNING s.version INTO v_version;
    ELSIF p_expected_version = 0 THEN
      INSERT INTO herald_streams AS s (stream, version) VALUES (v_stream, v_n)
        ON CONFLICT (stream) DO UPDATE SET version = s.version + v_n
        WHERE s.version = 0
        RETURNING s.version INTO v_version;
    ELSE
      UPDATE herald_streams s SET version = s.version + v_n
        WHERE s.stream = v_stream AND s.version = p_expected_version
        RETURNING s.version INTO v_version;
    END IF;
    IF v_version IS NOT NULL THEN
      v_base := v_version - v_n;
      IF NOT EXISTS (SELECT 1 FROM herald_events e WHERE e.id = ANY (p_ids))
      THEN
        v_batch := nextval('herald_batches');
        IF v_n = 1 THEN
          INSERT INTO herald_events (batch, idx, id, stream, stream_version,
                                     type, content_type, payload, metadata,
                                     occurred_at)
            VALUES (v_batch, 0, p_ids[1], v_stream, v_version, p_types[1],
                    p_content_types[1], p_payloads[1], p_metadata[1],
                    p_occurred_at[1]);
        ELSE
          INSERT INTO herald_events (batch, idx, id, stream, stream_version,
                                     type, content_type, payload, metadata,
                                     occurred_at)
            SELECT v_batch, t.ord - 1, t.id, v_stream, v_base + t.ord, t.type,
                   t.content_type, t.payload, t.metadata, t.occurred_at
              FROM unnest(p_ids, p_types, p_content_types, p_payloads,
                          p_metadata, p_occurred_at)
                   WITH ORDINALITY AS t(id, type, content_type, payload,
                                        metadata, occurred_at, ord);
        END IF;
        INSERT INTO herald_pending (batch, events) VALUES (v_batch, v_n);
        RETURN QUERY SELECT t.ord::integer, true, NULL::uuid, NULL::bigint,
            v_stream, v_base + t.ord, NULL::text, NULL::text, NULL::bytea,
            NULL::text, NULL::timestamptz
          FROM generate_series(1, v_n) AS t(ord);
        RETURN;
      END IF;
      -- A retry: undo the bump, take the careful path.
      UPDATE herald_streams s SET version = v_base WHERE s.stream = v_stream;
    END IF;
  ELSIF p_expected_version IS NULL
        AND NOT EXISTS (SELECT 1 FROM herald_events e
                         WHERE e.id = ANY (p_ids)) THEN
    -- Several streams: bump each by its count, locking the rows in stream
    -- order (a fixed order, so two batches cannot deadlock here).
    WITH c AS (
      SELECT x.stream, count(*) AS n FROM unnest(p_streams) AS x(stream)
        GROUP BY x.stream
    ), bumped AS (
      INSERT INTO herald_streams AS s (stream, version)
        SELECT c.stream, c.n FROM c ORDER BY c.stream
        ON CONFLICT (stream) DO UPDATE SET version = s.version + excluded.version
        RETURNING s.stream, s.version
    )
    SELECT array_agg(b.stream), array_agg(b.version), array_agg(c.n)
      INTO v_streams, v_versions, v_counts
      FROM bumped b JOIN c ON c.stream = b.stream;
    v_batch := nextval('herald_batches');
    INSERT INTO herald_events (batch, idx, id, stream, stream_version, type,
                               content_type, payload, metadata, occurred_at)
      SELECT v_batch, t.ord - 1, t.id, t.stream,
             b.version - b.n
             + row_number() OVER (PARTITION BY t.stream ORDER BY t.ord),
             t.type, t.content_type, t.payload, t.metadata, t.occurred_at
        FROM unnest(p_ids, p_streams, p_types, p_content_types, p_payloads,
                    p_metadata, p_occurred_at)
             WITH ORDINALITY AS t(id, stream, type, content_type, payload,
                                  metadata, occurred_at, ord)
        JOIN unnest(v_streams, v_versions, v_counts) AS b(stream, version, n)
          ON b.stream = t.stream;
    INSERT INTO herald_pending (batch, events) VALUES (v_batch, v_n);
    RETURN QUERY SELECT t.ord::integer, true, NULL::uuid, NULL::bigint,
        t.stream, b.version - b.n
                  + row_number() OVER (PARTITION BY t.stream ORDER BY t.ord),
        NULL::text, NULL::text, NULL::bytea, NULL::text, NULL::timestamptz
      FROM unnest(p_streams) WITH ORDINALITY AS t(stream, ord)
      JOIN unnest(v_streams, v_versions, v_counts) AS b(stream, version, n)
        ON b.stream = t.stream
     ORDER BY t.ord;
    RETURN;
  END IF;
  RETURN QUERY SELECT * FROM herald_append_events_checked(p_ids, p_streams,
    p_types, p_content_types, p_payloads, p_metadata, p_occurred_at,
    p_expected_version);
END
$fn$;

-- The append function for services in any language: appends one JSON event
-- inside the caller's transaction and returns its id, stream version and
-- whether it was new (false: this id was stored before; nothing changed).
-- Raises SQLSTATE 'HR409' when expected_version is given and the stream is
-- at another version, '22023' on a malformed argument.
CREATE FUNCTION herald_append(
    stream text, type text, payload text,
    metadata text DEFAULT '{}', id uuid DEFAULT NULL,
    expected_version bigint DEFAULT NULL)
RETURNS TABLE (event_id uuid, stream_version bigint, created boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  v_id uuid := coalesce(herald_append.id, herald_uuid_v7());
  r record;
BEGIN
  IF herald_append.stream IS NULL OR length(herald_append.stream) = 0
     OR length(herald_append.stream) > 256 THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: stream must be 1 to 256 characters';
  END IF;
  IF herald_append.type IS NULL OR length(herald_append.type) = 0
     OR length(herald_append.type) > 256 THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: type must be 1 to 256 characters';
  END IF;
  IF herald_append.payload IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: payload must not be NULL';
  END IF;
  PERFORM herald_append.payload::jsonb;  -- raises 22P02 when not JSON
  IF jsonb_typeof(coalesce(herald_append.metadata, '{}')::jsonb)
     <> 'object' THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: metadata must be a JSON object';
  END IF;
  SELECT * INTO r FROM herald_append_events(
      ARRAY[v_id], ARRAY[herald_append.stream], ARRAY[herald_append.type],
      ARRAY['application/json'],
      ARRAY[convert_to(herald_append.payload, 'UTF8')],
      ARRAY[coalesce(herald_append.metadata, '{}')],
      ARRAY[clock_timestamp()], herald_append.expected_version);
  IF r.r_ord = 0 THEN
    RAISE EXCEPTION USING ERRCODE = 'HR409',
      MESSAGE = format('herald_append: stream %L is at version %s, expected %s',
                       herald_append.stream, r.r_stream_version,
                       herald_append.expected_version);
  END IF;
  event_id := v_id;
  stream_version := r.r_stream_version;
  created := r.r_created;
  RETURN NEXT;
END
$fn$;

-- One pass of the sequencer: gives the next positions to up to p_limit
-- committed batches that have none, in batch order. Returns the events it
-- positioned, the batches, and the head after it; positioned = -1 when
-- another pass holds the sequencer lock and p_wait is false. Runs as a
-- statement of its own (autocommit), or (p_in_transaction) as the last
-- statement of a READ COMMITTED transaction that appended, just before its
-- COMMIT: the pass then also positions that transaction's own batches and
-- commits with it, sharing its WAL flush. In any other isolation level it
-- does nothing (positioned = -1).
CREATE FUNCTION herald_sequence(p_limit integer, p_wait boolean DEFAULT false,
                                p_in_transaction boolean DEFAULT false)
RETURNS TABLE (positioned integer, batches integer, head bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  v_head bigint;
  v_n integer;
  v_batches integer;
BEGIN
  IF p_in_transaction
     AND current_setting('transaction_isolation') <> 'read committed' THEN
    RETURN QUERY SELECT -1, 0, NULL::bigint;
    RETURN;
  END IF;
  IF p_wait THEN
    PERFORM pg_advisory_xact_lock(7306916370318864496);
  ELSIF NOT pg_try_advisory_xact_lock(7306916370318864496) THEN
    RETURN QUERY SELECT -1, 0, NULL::bigint;
    RETURN;
  END IF;
  SELECT l.first_position + l.events - 1 INTO v_head
    FROM herald_log l ORDER BY l.first_position DESC LIMIT 1;
  v_head := coalesce(v_head, 0);
  WITH taken AS (
    DELETE FROM herald_pending p
     WHERE p.batch IN (SELECT q.batch FROM herald_pending q
                        ORDER BY q.batch LIMIT p_limit)
    RETURNING p.batch, p.events
  ), placed AS (
    INSERT INTO herald_log (first_position, batch, events)
      SELECT v_head + 1 + coalesce(sum(t.events) OVER (
               ORDER BY t.batch ROWS BETWEEN UNBOUNDED PRECEDING
                                         AND 1 PRECEDING), 0),
             t.batch, t.events
        FROM taken t
    RETURNING events
  )
  SELECT coalesce(sum(p.events), 0), count(*) INTO v_n, v_batches
    FROM placed p;
  RETURN QUERY SELECT v_n, v_batches, v_head + v_n;
END
$fn$;
)sql";

// 2: a transaction's batches are positioned as it commits, by a deferred
// trigger, whoever commits it (herald, the application, any language), and
// no longer go through herald_pending when nothing else waits; the careful
// append path is folded into herald_append_events.
constexpr const char* kMigration2 = R"sql(
DROP FUNCTION herald_append_events_checked(uuid[], text[], text[], text[],
                                           bytea[], text[], timestamptz[],
                                           bigint);

-- Appends a batch of events inside the caller's transaction: the arrays
-- hold one element per event. Idempotent by id: an id stored already is
-- not stored again and comes back as stored (r_created = false). With
-- p_expected_version (all events in one stream), a stream at another
-- version makes it write nothing and return one row with r_ord = 0 and the
-- stream's current version in r_stream_version; it raises no error, so the
-- caller's transaction stays usable. Locks each stream's herald_streams row
-- until the transaction ends, then takes the batch id, so appends to one
-- stream are serialized and their batch ids follow append order. The batch
-- is positioned as the transaction commits (herald_position_batch). Rows
-- of new events carry only r_ord, r_created, r_stream and r_stream_version.
CREATE OR REPLACE FUNCTION herald_append_events(
    p_ids uuid[], p_streams text[], p_types text[], p_content_types text[],
    p_payloads bytea[], p_metadata text[], p_occurred_at timestamptz[],
    p_expected_version bigint)
RETURNS TABLE (r_ord integer, r_created boolean, r_id uuid,
               r_position bigint, r_stream text, r_stream_version bigint,
               r_type text, r_content_type text, r_payload bytea,
               r_metadata text, r_occurred_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  v_n        integer := cardinality(p_ids);
  v_stream   text := p_streams[1];
  v_version  bigint;
  v_base     bigint;
  v_batch    bigint;
  v_streams  text[];
  v_versions bigint[];
  v_counts   bigint[];
  v_stored   uuid[];
  v_distinct integer;
  v_new      integer;
  v_current  bigint;
BEGIN
  IF v_n IS NULL OR v_n = 0 THEN
    RETURN;
  END IF;
  -- The fast path: ids distinct within the call and not stored before.
  IF v_n = 1 OR (SELECT count(DISTINCT x) FROM unnest(p_ids) x) = v_n THEN
    IF v_stream = ALL (p_streams) THEN
      -- One stream: bump its version by n (locking its row), then insert.
      IF p_expected_version IS NULL THEN
        INSERT INTO herald_streams AS s (stream, version) VALUES (v_stream, v_n)
          ON CONFLICT (stream) DO UPDATE SET version = s.version + v_n
          RETURNING s.version INTO v_version;
      ELSIF p_expected_version = 0 THEN
        INSERT INTO herald_streams AS s (stream, version) VALUES (v_stream, v_n)
          ON CONFLICT (stream) DO UPDATE SET version = s.version + v_n
          WHERE s.version = 0
          RETURNING s.version INTO v_version;
      ELSE
        UPDATE herald_streams s SET version = s.version + v_n
          WHERE s.stream = v_stream AND s.version = p_expected_version
          RETURNING s.version INTO v_version;
      END IF;
      IF v_version IS NOT NULL THEN
        v_base := v_version - v_n;
        IF NOT EXISTS (SELECT 1 FROM herald_events e WHERE e.id = ANY (p_ids))
        THEN
          v_batch := nextval('herald_batches');
          IF v_n = 1 THEN
            INSERT INTO herald_events (batch, idx, id, stream, stream_version,
                                       type, content_type, payload, metadata,
                                       occurred_at)
              VALUES (v_batch, 0, p_ids[1], v_stream, v_version, p_types[1],
                      p_content_types[1], p_payloads[1], p_metadata[1],
                      p_occurred_at[1]);
          ELSE
            INSERT INTO herald_events (batch, idx, id, stream, stream_version,
                                       type, content_type, payload, metadata,
                                       occurred_at)
              SELECT v_batch, t.ord - 1, t.id, v_stream, v_base + t.ord, t.type,
                     t.content_type, t.payload, t.metadata, t.occurred_at
                FROM unnest(p_ids, p_types, p_content_types, p_payloads,
                            p_metadata, p_occurred_at)
                     WITH ORDINALITY AS t(id, type, content_type, payload,
                                          metadata, occurred_at, ord);
          END IF;
          RETURN QUERY SELECT t.ord::integer, true, NULL::uuid, NULL::bigint,
              v_stream, v_base + t.ord, NULL::text, NULL::text, NULL::bytea,
              NULL::text, NULL::timestamptz
            FROM generate_series(1, v_n) AS t(ord);
          RETURN;
        END IF;
        -- A retry: undo the bump, take the careful path.
        UPDATE herald_streams s SET version = v_base WHERE s.stream = v_stream;
      END IF;
    ELSIF p_expected_version IS NULL
          AND NOT EXISTS (SELECT 1 FROM herald_events e
                           WHERE e.id = ANY (p_ids)) THEN
      -- Several streams: bump each by its count, locking the rows in stream
      -- order (a fixed order, so two batches cannot deadlock here).
      WITH c AS (
        SELECT x.stream, count(*) AS n FROM unnest(p_streams) AS x(stream)
          GROUP BY x.stream
      ), bumped AS (
        INSERT INTO herald_streams AS s (stream, version)
          SELECT c.stream, c.n FROM c ORDER BY c.stream
          ON CONFLICT (stream) DO UPDATE SET version = s.version + excluded.version
          RETURNING s.stream, s.version
      )
      SELECT array_agg(b.stream), array_agg(b.version), array_agg(c.n)
        INTO v_streams, v_versions, v_counts
        FROM bumped b JOIN c ON c.stream = b.stream;
      v_batch := nextval('herald_batches');
      INSERT INTO herald_events (batch, idx, id, stream, stream_version, type,
                                 content_type, payload, metadata, occurred_at)
        SELECT v_batch, t.ord - 1, t.id, t.stream,
               b.version - b.n
               + row_number() OVER (PARTITION BY t.stream ORDER BY t.ord),
               t.type, t.content_type, t.payload, t.metadata, t.occurred_at
          FROM unnest(p_ids, p_streams, p_types, p_content_types, p_payloads,
                      p_metadata, p_occurred_at)
               WITH ORDINALITY AS t(id, stream, type, content_type, payload,
                                    metadata, occurred_at, ord)
          JOIN unnest(v_streams, v_versions, v_counts) AS b(stream, version, n)
            ON b.stream = t.stream;
      RETURN QUERY SELECT t.ord::integer, true, NULL::uuid, NULL::bigint,
          t.stream, b.version - b.n
                    + row_number() OVER (PARTITION BY t.stream ORDER BY t.ord),
          NULL::text, NULL::text, NULL::bytea, NULL::text, NULL::timestamptz
        FROM unnest(p_streams) WITH ORDINALITY AS t(stream, ord)
        JOIN unnest(v_streams, v_versions, v_counts) AS b(stream, version, n)
          ON b.stream = t.stream
       ORDER BY t.ord;
      RETURN;
    END IF;
  END IF;

  -- The careful path: an id stored already, a repeated id, or a version
  -- other than expected. Looks up stored ids first, checks the expected
  -- version, then inserts what is new.
  SELECT coalesce(array_agg(e.id), '{}') INTO v_stored
    FROM herald_events e WHERE e.id = ANY (p_ids);
  SELECT count(DISTINCT x) INTO v_distinct FROM unnest(p_ids) x;
  v_new := v_distinct - cardinality(v_stored);

  IF v_new > 0 AND p_expected_version IS NOT NULL THEN
    IF p_expected_version = 0 THEN
      INSERT INTO herald_streams AS s (stream, version)
        VALUES (p_streams[1], v_new)
        ON CONFLICT (stream) DO UPDATE SET version = s.version + v_new
        WHERE s.version = 0;
    ELSE
      UPDATE herald_streams s SET version = s.version + v_new
        WHERE s.stream = p_streams[1] AND s.version = p_expected_version;
    END IF;
    IF NOT FOUND THEN
      SELECT s.version INTO v_current FROM herald_streams s
        WHERE s.stream = p_streams[1];
      RETURN QUERY SELECT 0, false, NULL::uuid, NULL::bigint, p_streams[1],
        coalesce(v_current, 0), NULL::text, NULL::text, NULL::bytea,
        NULL::text, NULL::timestamptz;
      RETURN;
    END IF;
    v_streams := ARRAY[p_streams[1]];
    v_versions := ARRAY[p_expected_version + v_new];
  ELSIF v_new > 0 THEN
    WITH fresh AS (
      SELECT DISTINCT ON (t.id) t.id, t.stream
        FROM unnest(p_ids, p_streams) AS t(id, stream)
        WHERE t.id <> ALL (v_stored)
        ORDER BY t.id
    ), bumped AS (
      INSERT INTO herald_streams AS s (stream, version)
        SELECT f.stream, count(*) FROM fresh f GROUP BY f.stream
        ORDER BY f.stream
        ON CONFLICT (stream) DO UPDATE SET version = s.version + excluded.version
        RETURNING s.stream, s.version
    )
    SELECT array_agg(b.stream), array_agg(b.version)
      INTO v_streams, v_versions FROM bumped b;
  END IF;

  IF v_new > 0 THEN
    v_batch := nextval('herald_batches');
    WITH input AS (
      SELECT t.*
        FROM unnest(p_ids, p_streams, p_types, p_content_types, p_payloads,
                    p_metadata, p_occurred_at)
             WITH ORDINALITY AS t(id, stream, type, content_type, payload,
                                  metadata, occurred_at, ord)
    ), fresh AS (
      SELECT DISTINCT ON (i.id) i.* FROM input i
        WHERE i.id <> ALL (v_stored) ORDER BY i.id, i.ord
    ), numbered AS (
      SELECT f.*, b.version - count(*) OVER (PARTITION BY f.stream)
                  + row_number() OVER (PARTITION BY f.stream ORDER BY f.ord)
                  AS stream_version,
             row_number() OVER (ORDER BY f.ord) - 1 AS idx
        FROM fresh f JOIN unnest(v_streams, v_versions) AS b(stream, version)
          ON b.stream = f.stream
    )
    INSERT INTO herald_events (batch, idx, id, stream, stream_version, type,
                               content_type, payload, metadata, occurred_at)
      SELECT v_batch, n.idx, n.id, n.stream, n.stream_version, n.type,
             n.content_type, n.payload, n.metadata, n.occurred_at
        FROM numbered n;
  END IF;

  RETURN QUERY
    WITH t AS (
      SELECT u.id, u.ord::integer AS ord,
             u.id <> ALL (v_stored)
             AND u.ord = min(u.ord) OVER (PARTITION BY u.id) AS created
        FROM unnest(p_ids) WITH ORDINALITY AS u(id, ord)
    )
    SELECT t.ord, t.created, e.id,
           CASE WHEN t.created THEN NULL ELSE l.first_position + e.idx END,
           e.stream, e.stream_version,
           CASE WHEN t.created THEN NULL ELSE e.type END,
           CASE WHEN t.created THEN NULL ELSE e.content_type END,
           CASE WHEN t.created THEN NULL ELSE e.payload END,
           CASE WHEN t.created THEN NULL ELSE e.metadata END,
           e.occurred_at
      FROM t JOIN herald_events e ON e.id = t.id
      LEFT JOIN herald_log l ON l.batch = e.batch
     ORDER BY t.ord;
END
$fn$;


-- One pass of the sequencer: gives the next positions to up to p_limit
-- committed batches waiting in herald_pending, in batch order. Returns the
-- events it positioned, the batches, and the head after it; positioned = -1
-- when another pass holds the sequencer lock and p_wait is false. When
-- nothing waits it takes no lock and returns the head. Runs as a statement
-- of its own (autocommit), or (p_in_transaction) inside a READ COMMITTED
-- transaction, committing with it; in any other isolation level it then
-- does nothing (positioned = -1).
CREATE OR REPLACE FUNCTION herald_sequence(p_limit integer,
                                           p_wait boolean DEFAULT false,
                                           p_in_transaction boolean
                                             DEFAULT false)
RETURNS TABLE (positioned integer, batches integer, head bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  v_head bigint;
  v_n integer;
  v_batches integer;
BEGIN
  IF p_in_transaction
     AND current_setting('transaction_isolation') <> 'read committed' THEN
    RETURN QUERY SELECT -1, 0, NULL::bigint;
    RETURN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM herald_pending) THEN
    SELECT l.first_position + l.events - 1 INTO v_head
      FROM herald_log l ORDER BY l.first_position DESC LIMIT 1;
    RETURN QUERY SELECT 0, 0, coalesce(v_head, 0);
    RETURN;
  END IF;
  IF p_wait THEN
    PERFORM pg_advisory_xact_lock(7306916370318864496);
  ELSIF NOT pg_try_advisory_xact_lock(7306916370318864496) THEN
    RETURN QUERY SELECT -1, 0, NULL::bigint;
    RETURN;
  END IF;
  SELECT l.first_position + l.events - 1 INTO v_head
    FROM herald_log l ORDER BY l.first_position DESC LIMIT 1;
  v_head := coalesce(v_head, 0);
  WITH taken AS (
    DELETE FROM herald_pending p
     WHERE p.batch IN (SELECT q.batch FROM herald_pending q
                        ORDER BY q.batch LIMIT p_limit)
    RETURNING p.batch, p.events
  ), placed AS (
    INSERT INTO herald_log (first_position, batch, events)
      SELECT v_head + 1 + coalesce(sum(t.events) OVER (
               ORDER BY t.batch ROWS BETWEEN UNBOUNDED PRECEDING
                                         AND 1 PRECEDING), 0),
             t.batch, t.events
        FROM taken t
    RETURNING events
  )
  SELECT coalesce(sum(p.events), 0), count(*) INTO v_n, v_batches
    FROM placed p;
  RETURN QUERY SELECT v_n, v_batches, v_head + v_n;
END
$fn$;

-- Positions a batch as its transaction commits: a deferred trigger on the
-- batch's first event, so it runs inside COMMIT, whoever sends it. When it
-- gets the sequencer lock without waiting and nothing committed waits in
-- herald_pending, the batch takes the next free positions at once (one
-- herald_log row, committed in the same WAL flush as the events). Otherwise
-- it queues the batch in herald_pending, and, holding the lock, runs a pass
-- over the queue, this batch included. It never waits for a lock, and it
-- only queues in a transaction that is not READ COMMITTED (its snapshot may
-- miss the newest head) or that commits with synchronous_commit = off
-- (positions are only handed out by durable commits).
CREATE FUNCTION herald_position_batch() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  v_events integer;
  v_head   bigint;
  v_locked boolean := false;
BEGIN
  SELECT e.idx + 1 INTO v_events FROM herald_events e
   WHERE e.batch = NEW.batch ORDER BY e.idx DESC LIMIT 1;
  IF current_setting('transaction_isolation') = 'read committed'
     AND current_setting('synchronous_commit') <> 'off' THEN
    v_locked := pg_try_advisory_xact_lock(7306916370318864496);
  END IF;
  IF v_locked AND NOT EXISTS (SELECT 1 FROM herald_pending) THEN
    SELECT l.first_position + l.events INTO v_head
      FROM herald_log l ORDER BY l.first_position DESC LIMIT 1;
    INSERT INTO herald_log (first_position, batch, events)
      VALUES (coalesce(v_head, 1), NEW.batch, v_events);
    RETURN NULL;
  END IF;
  INSERT INTO herald_pending (batch, events) VALUES (NEW.batch, v_events);
  IF v_locked THEN
    PERFORM herald_sequence(200, false, true);
  END IF;
  RETURN NULL;
END
$fn$;

CREATE CONSTRAINT TRIGGER herald_position_on_commit
  AFTER INSERT ON herald_events DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.idx = 0) EXECUTE FUNCTION herald_position_batch();
)sql";

// 3: one status row per route (its last error), which schema 2 kept as a
// lease row named "relay-error/ROUTE" (owner: the error, expires_at: its
// time); those rows move here. The inbox gets an index for its retention
// sweep. herald_append and herald_append_events take uuid ids, which
// PostgreSQL compares without regard to case, so they need no change.
constexpr const char* kMigration3 = R"sql(
CREATE TABLE herald_route_status (
  route         text PRIMARY KEY,
  last_error    text        NOT NULL,
  last_error_at timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
INSERT INTO herald_route_status (route, last_error, last_error_at, updated_at)
  SELECT substr(name, 13), owner, expires_at, expires_at FROM herald_leases
   WHERE name LIKE 'relay-error/%';
DELETE FROM herald_leases WHERE name LIKE 'relay-error/%';
CREATE INDEX herald_inbox_by_time ON herald_inbox (handled_at);
)sql";

// 4: a parked row may hold its event itself (JSON), for a consumer's event,
// which is not in this database's log.
constexpr const char* kMigration4 = R"sql(
ALTER TABLE herald_parked ADD COLUMN event text;
)sql";

// 5: a parked row keeps the time of its event's first failed attempt
// (parked_at is the last); null for held rows and older rows.
constexpr const char* kMigration5 = R"sql(
ALTER TABLE herald_parked ADD COLUMN first_failed_at timestamptz;
)sql";

// 6: cheaper commits (issue 19). The commit trigger does its work in one
// statement: holding the lock, it positions every queued batch and its own
// in batch order with one INSERT (no herald_pending row for its own batch,
// no nested herald_sequence call); without the lock it queues its batch
// with one INSERT. herald_append appends one event without an expected
// version as one statement (as the C++ store does) instead of calling
// herald_append_events, which keeps every other case.
constexpr const char* kMigration6 = R"sql(
-- Positions a batch as its transaction commits: a deferred trigger on the
-- batch's first event, so it runs inside COMMIT, whoever sends it. When it
-- gets the sequencer lock without waiting, it gives the next free positions
-- to every committed batch queued in herald_pending and to this one, in
-- batch order (one herald_log row each, committed in the same WAL flush as
-- the events): a queued batch of one of this batch's streams has a lower
-- batch number (its append ended before this one's began), so it comes
-- first. Otherwise it queues the batch in herald_pending for the next
-- holder or the sequencer. It never waits for a lock, and it always queues
-- in a transaction that is not READ COMMITTED (its snapshot may miss the
-- newest head) or that commits with synchronous_commit = off (positions
-- are only handed out by durable commits).
CREATE OR REPLACE FUNCTION herald_position_batch() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SET enable_bitmapscan = off AS $fn$
BEGIN
  IF current_setting('transaction_isolation') = 'read committed'
     AND current_setting('synchronous_commit') <> 'off'
     AND pg_try_advisory_xact_lock(7306916370318864496) THEN
    -- (A bitmap scan would walk the dead rows of earlier passes every time;
    -- an index scan marks them dead in the index once.)
    WITH taken AS (
      DELETE FROM herald_pending p WHERE p.batch > 0
      RETURNING p.batch, p.events
    ), b AS (
      SELECT t.batch, t.events FROM taken t
      UNION ALL
      SELECT NEW.batch, (SELECT e.idx + 1 FROM herald_events e
                          WHERE e.batch = NEW.batch ORDER BY e.idx DESC LIMIT 1)
    )
    INSERT INTO herald_log (first_position, batch, events)
      SELECT coalesce((SELECT l.first_position + l.events FROM herald_log l
                        ORDER BY l.first_position DESC LIMIT 1), 1)
             + coalesce(sum(b.events) OVER (ORDER BY b.batch ROWS BETWEEN
                 UNBOUNDED PRECEDING AND 1 PRECEDING), 0),
             b.batch, b.events
        FROM b;
  ELSE
    INSERT INTO herald_pending (batch, events)
      SELECT NEW.batch, e.idx + 1 FROM herald_events e
       WHERE e.batch = NEW.batch ORDER BY e.idx DESC LIMIT 1;
  END IF;
  RETURN NULL;
END
$fn$;

-- The append function for services in any language (see schema 1).
CREATE OR REPLACE FUNCTION herald_append(
    stream text, type text, payload text,
    metadata text DEFAULT '{}', id uuid DEFAULT NULL,
    expected_version bigint DEFAULT NULL)
RETURNS TABLE (event_id uuid, stream_version bigint, created boolean)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  v_id uuid := coalesce(herald_append.id, herald_uuid_v7());
  v_json jsonb;
  v_version bigint;
  r record;
BEGIN
  IF herald_append.stream IS NULL OR length(herald_append.stream) = 0
     OR length(herald_append.stream) > 256 THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: stream must be 1 to 256 characters';
  END IF;
  IF herald_append.type IS NULL OR length(herald_append.type) = 0
     OR length(herald_append.type) > 256 THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: type must be 1 to 256 characters';
  END IF;
  IF herald_append.payload IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: payload must not be NULL';
  END IF;
  v_json := herald_append.payload::jsonb;  -- raises 22P02 when not JSON
  IF jsonb_typeof(coalesce(herald_append.metadata, '{}')::jsonb)
     <> 'object' THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: metadata must be a JSON object';
  END IF;
  IF herald_append.expected_version IS NULL THEN
    WITH v AS (
      INSERT INTO herald_streams AS s (stream, version)
        VALUES (herald_append.stream, 1)
        ON CONFLICT ON CONSTRAINT herald_streams_pkey
        DO UPDATE SET version = s.version + 1 RETURNING s.version
    ), b AS (SELECT nextval('herald_batches') AS batch, v.version FROM v)
    INSERT INTO herald_events AS e (batch, idx, id, stream, stream_version,
                                    type, content_type, payload, metadata,
                                    occurred_at)
      SELECT b.batch, 0, v_id, herald_append.stream, b.version,
             herald_append.type, 'application/json',
             convert_to(herald_append.payload, 'UTF8'),
             coalesce(herald_append.metadata, '{}'), clock_timestamp()
        FROM b
      ON CONFLICT ON CONSTRAINT herald_events_id_key DO NOTHING
      RETURNING e.stream_version INTO v_version;
    IF v_version IS NOT NULL THEN
      event_id := v_id;
      stream_version := v_version;
      created := true;
      RETURN NEXT;
      RETURN;
    END IF;
    -- A retry: undo the bump, take the careful path.
    UPDATE herald_streams s SET version = s.version - 1
     WHERE s.stream = herald_append.stream;
  END IF;
  SELECT * INTO r FROM herald_append_events(
      ARRAY[v_id], ARRAY[herald_append.stream], ARRAY[herald_append.type],
      ARRAY['application/json'],
      ARRAY[convert_to(herald_append.payload, 'UTF8')],
      ARRAY[coalesce(herald_append.metadata, '{}')],
      ARRAY[clock_timestamp()], herald_append.expected_version);
  IF r.r_ord = 0 THEN
    RAISE EXCEPTION USING ERRCODE = 'HR409',
      MESSAGE = format('herald_append: stream %L is at version %s, expected %s',
                       herald_append.stream, r.r_stream_version,
                       herald_append.expected_version);
  END IF;
  event_id := v_id;
  stream_version := r.r_stream_version;
  created := r.r_created;
  RETURN NEXT;
END
$fn$;
)sql";

// 7: cheaper appends of one event (issue 19). herald_append appends an event
// whose id it generates itself (id NULL, no expected version) with one
// statement that updates the stream's row (inserting it only when there is
// none) and inserts the event: no upsert of an existing row (its
// speculative insertion probes the index first and writes a lock record)
// and no ON CONFLICT on the id, which a UUIDv7 generated here cannot clash
// with. It loses its SET clauses: its statements have one plan whatever
// the settings (a primary-key update, inserts).
constexpr const char* kMigration7 = R"sql(
-- The append function for services in any language (see schema 1).
CREATE OR REPLACE FUNCTION herald_append(
    stream text, type text, payload text,
    metadata text DEFAULT '{}', id uuid DEFAULT NULL,
    expected_version bigint DEFAULT NULL)
RETURNS TABLE (event_id uuid, stream_version bigint, created boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_id uuid := coalesce(herald_append.id, herald_uuid_v7());
  v_json jsonb;
  v_version bigint;
  r record;
BEGIN
  IF herald_append.stream IS NULL OR length(herald_append.stream) = 0
     OR length(herald_append.stream) > 256 THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: stream must be 1 to 256 characters';
  END IF;
  IF herald_append.type IS NULL OR length(herald_append.type) = 0
     OR length(herald_append.type) > 256 THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: type must be 1 to 256 characters';
  END IF;
  IF herald_append.payload IS NULL THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: payload must not be NULL';
  END IF;
  v_json := herald_append.payload::jsonb;  -- raises 22P02 when not JSON
  IF jsonb_typeof(coalesce(herald_append.metadata, '{}')::jsonb)
     <> 'object' THEN
    RAISE EXCEPTION USING ERRCODE = '22023',
      MESSAGE = 'herald_append: metadata must be a JSON object';
  END IF;
  IF herald_append.expected_version IS NULL AND herald_append.id IS NULL THEN
    -- A new id: the stream's row (its update, or its insert when it has
    -- none; locked until commit), then the batch number, then the event.
    WITH u AS (
      UPDATE herald_streams s SET version = s.version + 1
       WHERE s.stream = herald_append.stream RETURNING s.version
    ), i AS (
      INSERT INTO herald_streams AS s (stream, version)
        SELECT herald_append.stream, 1 WHERE NOT EXISTS (SELECT 1 FROM u)
        ON CONFLICT ON CONSTRAINT herald_streams_pkey
        DO UPDATE SET version = s.version + 1 RETURNING s.version
    ), v AS (SELECT u.version FROM u UNION ALL SELECT i.version FROM i)
    INSERT INTO herald_events AS e (batch, idx, id, stream, stream_version,
                                    type, content_type, payload, metadata,
                                    occurred_at)
      SELECT nextval('herald_batches'), 0, v_id, herald_append.stream,
             v.version, herald_append.type, 'application/json',
             convert_to(herald_append.payload, 'UTF8'),
             coalesce(herald_append.metadata, '{}'), clock_timestamp()
        FROM v
      RETURNING e.stream_version INTO v_version;
    event_id := v_id;
    stream_version := v_version;
    created := true;
    RETURN NEXT;
    RETURN;
  END IF;
  IF herald_append.expected_version IS NULL THEN
    -- A given id, maybe stored already: insert unless it is.
    WITH v AS (
      INSERT INTO herald_streams AS s (stream, version)
        VALUES (herald_append.stream, 1)
        ON CONFLICT ON CONSTRAINT herald_streams_pkey
        DO UPDATE SET version = s.version + 1 RETURNING s.version
    ), b AS (SELECT nextval('herald_batches') AS batch, v.version FROM v)
    INSERT INTO herald_events AS e (batch, idx, id, stream, stream_version,
                                    type, content_type, payload, metadata,
                                    occurred_at)
      SELECT b.batch, 0, v_id, herald_append.stream, b.version,
             herald_append.type, 'application/json',
             convert_to(herald_append.payload, 'UTF8'),
             coalesce(herald_append.metadata, '{}'), clock_timestamp()
        FROM b
      ON CONFLICT ON CONSTRAINT herald_events_id_key DO NOTHING
      RETURNING e.stream_version INTO v_version;
    IF v_version IS NOT NULL THEN
      event_id := v_id;
      stream_version := v_version;
      created := true;
      RETURN NEXT;
      RETURN;
    END IF;
    -- A retry: undo the bump, take the careful path.
    UPDATE herald_streams s SET version = s.version - 1
     WHERE s.stream = herald_append.stream;
  END IF;
  SELECT * INTO r FROM herald_append_events(
      ARRAY[v_id], ARRAY[herald_append.stream], ARRAY[herald_append.type],
      ARRAY['application/json'],
      ARRAY[convert_to(herald_append.payload, 'UTF8')],
      ARRAY[coalesce(herald_append.metadata, '{}')],
      ARRAY[clock_timestamp()], herald_append.expected_version);
  IF r.r_ord = 0 THEN
    RAISE EXCEPTION USING ERRCODE = 'HR409',
      MESSAGE = format('herald_append: stream %L is at version %s, expected %s',
                       herald_append.stream, r.r_stream_version,
                       herald_append.expected_version);
  END IF;
  event_id := v_id;
  stream_version := r.r_stream_version;
  created := r.r_created;
  RETURN NEXT;
END
$fn$;
)sql";

constexpr const char* kMigrations[] = {kMigration1, kMigration2, kMigration3,
                                       kMigration4, kMigration5, kMigration6,
                                       kMigration7};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) ==
              kPostgresSchemaVersion);

}  // namespace

const char* PostgresMigration(int to_version) {
  if (to_version < 1 || to_version > kPostgresSchemaVersion) return nullptr;
  return kMigrations[to_version - 1];
}

}  // namespace herald::detail

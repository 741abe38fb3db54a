-- Variants of herald_append_events' one-event fast path, for run.sh's
-- fn_cte and fn_cte_noset scripts: the same work as the `cte` statement,
-- inside a plpgsql function (with and without the SET clauses herald's
-- functions carry). Anything but one new event in one stream goes to
-- herald_append_events. A measurement, not herald's schema.
CREATE FUNCTION bench_append_cte(
    p_ids uuid[], p_streams text[], p_types text[], p_content_types text[],
    p_payloads bytea[], p_metadata text[], p_occurred_at timestamptz[],
    p_expected_version bigint)
RETURNS TABLE (r_ord integer, r_created boolean, r_stream_version bigint)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
BEGIN
  IF cardinality(p_ids) = 1 AND p_expected_version IS NULL THEN
    RETURN QUERY
      WITH v AS (INSERT INTO herald_streams AS s (stream, version)
                 VALUES (p_streams[1], 1) ON CONFLICT (stream)
                 DO UPDATE SET version = s.version + 1 RETURNING s.version),
           b AS (SELECT nextval('herald_batches') AS batch, v.version FROM v),
           e AS (INSERT INTO herald_events (batch, idx, id, stream,
                   stream_version, type, content_type, payload, metadata,
                   occurred_at)
                 SELECT b.batch, 0, p_ids[1], p_streams[1], b.version,
                        p_types[1], p_content_types[1], p_payloads[1],
                        p_metadata[1], p_occurred_at[1] FROM b
                 ON CONFLICT (id) DO NOTHING RETURNING stream_version)
      SELECT 1, true, e.stream_version FROM e;
    IF FOUND THEN RETURN; END IF;
    UPDATE herald_streams SET version = version - 1 WHERE stream = p_streams[1];
  END IF;
  RETURN QUERY SELECT a.r_ord, a.r_created, a.r_stream_version
    FROM herald_append_events(p_ids, p_streams, p_types, p_content_types,
      p_payloads, p_metadata, p_occurred_at, p_expected_version) a;
END
$fn$;
CREATE FUNCTION bench_append_cte_noset(
    p_ids uuid[], p_streams text[], p_types text[], p_content_types text[],
    p_payloads bytea[], p_metadata text[], p_occurred_at timestamptz[],
    p_expected_version bigint)
RETURNS TABLE (r_ord integer, r_created boolean, r_stream_version bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
  IF cardinality(p_ids) = 1 AND p_expected_version IS NULL THEN
    RETURN QUERY
      WITH v AS (INSERT INTO herald_streams AS s (stream, version)
                 VALUES (p_streams[1], 1) ON CONFLICT (stream)
                 DO UPDATE SET version = s.version + 1 RETURNING s.version),
           b AS (SELECT nextval('herald_batches') AS batch, v.version FROM v),
           e AS (INSERT INTO herald_events (batch, idx, id, stream,
                   stream_version, type, content_type, payload, metadata,
                   occurred_at)
                 SELECT b.batch, 0, p_ids[1], p_streams[1], b.version,
                        p_types[1], p_content_types[1], p_payloads[1],
                        p_metadata[1], p_occurred_at[1] FROM b
                 ON CONFLICT (id) DO NOTHING RETURNING stream_version)
      SELECT 1, true, e.stream_version FROM e;
    IF FOUND THEN RETURN; END IF;
    UPDATE herald_streams SET version = version - 1 WHERE stream = p_streams[1];
  END IF;
  RETURN QUERY SELECT a.r_ord, a.r_created, a.r_stream_version
    FROM herald_append_events(p_ids, p_streams, p_types, p_content_types,
      p_payloads, p_metadata, p_occurred_at, p_expected_version) a;
END
$fn$;

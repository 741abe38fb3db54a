-- A prototype of positions given after commit (docs/benchmarks-postgres.md),
-- applied by run.sh to a database of its own: no commit trigger and no
-- herald_pending; a pass (herald_sequence2, run every few milliseconds by a
-- background session) positions the committed batches it finds in
-- herald_events itself, in batch order. It remembers the highest batch
-- number it examined and the numbers below it that were not visible yet
-- (gaps: transactions still open, or rolled back), each with the pass's
-- transaction id; a gap is dropped once the snapshot xmin passes that id
-- (whoever took the number has ended, and it never became visible).
-- Per-stream order holds because a later append to a stream takes its
-- batch number after the earlier one committed: a pass that sees it also
-- sees the earlier batch. Not herald's design: a measurement.
DROP TRIGGER herald_position_on_commit ON herald_events;
CREATE TABLE herald_seq_state (id int PRIMARY KEY, hi bigint NOT NULL,
  gaps bigint[] NOT NULL, gaps_x xid8[] NOT NULL);
INSERT INTO herald_seq_state VALUES (1, 0, '{}', '{}');
CREATE FUNCTION herald_sequence2(p_wait boolean DEFAULT true) RETURNS integer
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off AS $fn$
DECLARE
  st herald_seq_state;
  v_s bigint; v_x xid8; v_xmin xid8; v_head bigint; v_n integer;
  v_gaps bigint[]; v_gx xid8[]; v_fb bigint[]; v_fe integer[];
BEGIN
  IF p_wait THEN
    PERFORM pg_advisory_xact_lock(7306916370318864497);
  ELSIF NOT pg_try_advisory_xact_lock(7306916370318864497) THEN
    RETURN -1;
  END IF;
  SELECT * INTO st FROM herald_seq_state WHERE id = 1;
  SELECT CASE WHEN is_called THEN last_value ELSE 0 END INTO v_s FROM herald_batches;
  IF v_s = st.hi AND cardinality(st.gaps) = 0 THEN
    RETURN 0;
  END IF;
  -- every transaction that took a batch <= v_s has an xid below ours
  v_x := pg_current_xact_id();
  SELECT pg_snapshot_xmin(pg_current_snapshot()) INTO v_xmin;
  SELECT l.first_position + l.events INTO v_head
    FROM herald_log l ORDER BY l.first_position DESC LIMIT 1;
  v_head := coalesce(v_head, 1);
  SELECT coalesce(array_agg(f.batch ORDER BY f.batch), '{}'),
         coalesce(array_agg(f.events ORDER BY f.batch), '{}')
    INTO v_fb, v_fe
    FROM (SELECT e.batch, max(e.idx) + 1 AS events FROM herald_events e
           WHERE ((e.batch > st.hi AND e.batch <= v_s) OR e.batch = ANY (st.gaps))
             AND NOT EXISTS (SELECT 1 FROM herald_log l WHERE l.batch = e.batch)
           GROUP BY e.batch) f;
  INSERT INTO herald_log (first_position, batch, events)
    SELECT v_head + coalesce(sum(f.events) OVER (ORDER BY f.batch
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0),
           f.batch, f.events
      FROM unnest(v_fb, v_fe) AS f(batch, events);
  v_n := cardinality(v_fb);
  SELECT coalesce(array_agg(g.b ORDER BY g.b), '{}'), coalesce(array_agg(g.x ORDER BY g.b), '{}')
    INTO v_gaps, v_gx
    FROM (SELECT u.b, u.x FROM unnest(st.gaps, st.gaps_x) AS u(b, x)
          UNION ALL
          SELECT b, v_x FROM generate_series(st.hi + 1, v_s) b) g
   WHERE g.x > v_xmin AND g.b <> ALL (v_fb);
  UPDATE herald_seq_state SET hi = v_s, gaps = v_gaps, gaps_x = v_gx WHERE id = 1;
  RETURN v_n;
END
$fn$;

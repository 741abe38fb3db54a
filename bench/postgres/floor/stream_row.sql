-- The floor plus the stream row (herald_streams' shape: the per-stream
-- version and lock), as one statement: what the append writes, without
-- plpgsql, the id check or any position.
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
WITH v AS (INSERT INTO floor_streams AS s (stream, version) VALUES ('order-' || :s, 1) ON CONFLICT (stream) DO UPDATE SET version = s.version + 1 RETURNING s.version) INSERT INTO floor2_events (batch, idx, id, stream, stream_version, type, content_type, payload, metadata, occurred_at) SELECT nextval('herald_batches'), 0, gen_random_uuid(), 'order-' || :s, v.version, 'order.canceled', 'application/json', '\x7b7d'::bytea, '{}', now() FROM v RETURNING stream_version;
COMMIT;

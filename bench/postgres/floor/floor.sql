-- Less than any event store must do: the event into a table of herald's
-- shape with its stream version (one more than the stream's highest, read
-- in the same statement), and nothing else: no stream row, no position,
-- no trigger, and a clash with a concurrent append just drops the event.
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
INSERT INTO floor_events (batch, idx, id, stream, stream_version, type, content_type, payload, metadata, occurred_at) SELECT nextval('herald_batches'), 0, gen_random_uuid(), 'order-' || :s, coalesce((SELECT max(e.stream_version) FROM floor_events e WHERE e.stream = 'order-' || :s), 0) + 1, 'order.canceled', 'application/json', '\x7b7d'::bytea, '{}', now() ON CONFLICT DO NOTHING RETURNING stream_version;
COMMIT;

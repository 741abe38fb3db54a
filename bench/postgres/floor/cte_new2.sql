-- cte_new as one statement that also covers a stream without a row: the
-- row's update, or (none updated) its insert; then the event.
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
WITH u AS (UPDATE herald_streams SET version = version + 1 WHERE stream = 'order-' || :s RETURNING version), i AS (INSERT INTO herald_streams AS s (stream, version) SELECT 'order-' || :s, 1 WHERE NOT EXISTS (SELECT 1 FROM u) ON CONFLICT (stream) DO UPDATE SET version = s.version + 1 RETURNING s.version), v AS (SELECT version FROM u UNION ALL SELECT version FROM i) INSERT INTO herald_events (batch, idx, id, stream, stream_version, type, content_type, payload, metadata, occurred_at) SELECT nextval('herald_batches'), 0, gen_random_uuid(), 'order-' || :s, v.version, 'order.canceled', 'application/json', '\x7b7d'::bytea, '{}', now() FROM v RETURNING stream_version;
COMMIT;

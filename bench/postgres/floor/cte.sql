-- herald's append as one statement instead of the plpgsql function: the
-- stream row, then the event (a retried id inserts nothing); the commit
-- trigger positions it (in the database of cte_only: nothing at commit).
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
WITH v AS (INSERT INTO herald_streams AS s (stream, version) VALUES ('order-' || :s, 1) ON CONFLICT (stream) DO UPDATE SET version = s.version + 1 RETURNING s.version) INSERT INTO herald_events (batch, idx, id, stream, stream_version, type, content_type, payload, metadata, occurred_at) SELECT nextval('herald_batches'), 0, gen_random_uuid(), 'order-' || :s, v.version, 'order.canceled', 'application/json', '\x7b7d'::bytea, '{}', now() FROM v ON CONFLICT (id) DO NOTHING RETURNING stream_version;
COMMIT;

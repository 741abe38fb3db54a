-- The ceiling of any store that positions at commit: the floor plus the
-- stream row (its version and per-stream lock, herald_streams' shape,
-- updated in the same statement) plus the cheapest position row there
-- is, written at COMMIT by a deferred trigger that only inserts it (its
-- position from a sequence: neither dense nor in visibility order, so no
-- lock and no queue). Everything herald does beyond this is what keeps
-- the positions dense and in visibility order.
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
WITH v AS (UPDATE ceil_streams SET version = version + 1 WHERE stream = 'order-' || :s RETURNING version) INSERT INTO ceil_events (batch, idx, id, stream, stream_version, type, content_type, payload, metadata, occurred_at) SELECT nextval('herald_batches'), 0, gen_random_uuid(), 'order-' || :s, v.version, 'order.canceled', 'application/json', '\x7b7d'::bytea, '{}', now() FROM v RETURNING stream_version;
COMMIT;

-- The C++ store's statement for one event whose id it generated (schema 7,
-- kAppendOneNew): the stream row's update, then the event, no ON CONFLICT;
-- positioned by herald's commit trigger. (A stream without a row would
-- take cte.sql's upsert; run.sh gives every stream its row first.)
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
WITH v AS (UPDATE herald_streams SET version = version + 1 WHERE stream = 'order-' || :s RETURNING version) INSERT INTO herald_events (batch, idx, id, stream, stream_version, type, content_type, payload, metadata, occurred_at) SELECT nextval('herald_batches'), 0, gen_random_uuid(), 'order-' || :s, v.version, 'order.canceled', 'application/json', '\x7b7d'::bytea, '{}', now() FROM v RETURNING stream_version;
COMMIT;

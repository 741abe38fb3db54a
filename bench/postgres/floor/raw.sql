-- The raw transaction: the domain UPDATE and a plain INSERT of the event.
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
INSERT INTO raw_events (id, stream, type, content_type, payload, metadata, occurred_at) VALUES (gen_random_uuid(), 'order-' || :s, 'order.canceled', 'application/json', '\x7b7d'::bytea, '{}', now());
COMMIT;

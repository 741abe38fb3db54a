-- herald_append_events with nothing at commit (no trigger, no position).
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
SELECT * FROM herald_append_events(ARRAY[gen_random_uuid()], ARRAY['order-' || :s], ARRAY['order.canceled'], ARRAY['application/json'], ARRAY['\x7b7d'::bytea], ARRAY['{}'], ARRAY[now()], NULL);
COMMIT;

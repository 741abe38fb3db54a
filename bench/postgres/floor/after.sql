-- herald_append_events, positioned after commit by after_commit.sql passes.
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
SELECT * FROM herald_append_events(ARRAY[gen_random_uuid()], ARRAY['order-' || :s], ARRAY['order.canceled'], ARRAY['application/json'], ARRAY['\x7b7d'::bytea], ARRAY['{}'], ARRAY[now()], NULL);
COMMIT;

-- herald_append_events' one-event fast path as one statement in plpgsql (fn_cte_noset; fn_variants.sql).
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
SELECT * FROM bench_append_cte_noset(ARRAY[gen_random_uuid()], ARRAY['order-' || :s], ARRAY['order.canceled'], ARRAY['application/json'], ARRAY['\x7b7d'::bytea], ARRAY['{}'], ARRAY[now()], NULL);
COMMIT;

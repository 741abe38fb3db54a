-- herald through SQL as another language calls it: herald_append (checks
-- its arguments, then herald_append_events); the commit trigger positions.
\set s random(1, 1000)
BEGIN;
UPDATE orders SET version = version + 1 WHERE id = :client_id;
SELECT * FROM herald_append('order-' || :s, 'order.canceled', '{}');
COMMIT;

-- Fencing: a claim hands out a fresh lease token with the lease, and every later write about
-- the delivery is conditioned on it (pressroom_kit.leases), so a worker that stalled past its
-- lease cannot record its late outcome over the worker that took the delivery over.
ALTER TABLE webhook_events ADD COLUMN lease_token uuid;

DROP FUNCTION webhook_claim_due(timestamptz, integer, integer, interval);

-- As before (SECURITY DEFINER: claims run across brands; it only hands out leases), with the
-- kit's claim convention: $1 now, $2 the lease duration.
CREATE FUNCTION webhook_claim_due(at timestamptz, lease interval, max_rows integer,
                                  per_endpoint integer)
RETURNS TABLE (id uuid, brand_id uuid, endpoint_id uuid, lease_token uuid,
               lease_until timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH active AS (
        SELECT e.endpoint_id, count(*) AS n FROM webhook_events e
        WHERE e.status = 'delivering' AND e.lease_until > at
        GROUP BY e.endpoint_id
    ), due AS (
        SELECT e.id, e.next_attempt_at,
               row_number() OVER (PARTITION BY e.endpoint_id ORDER BY e.next_attempt_at) AS rn,
               coalesce(a.n, 0) AS busy
        FROM webhook_events e LEFT JOIN active a USING (endpoint_id)
        WHERE (e.status = 'pending' AND e.next_attempt_at <= at)
           OR (e.status = 'delivering' AND e.lease_until <= at)
    ), chosen AS (
        SELECT w.id FROM webhook_events w
        WHERE w.id IN (SELECT due.id FROM due WHERE due.rn + due.busy <= per_endpoint)
          -- Repeated on the row itself: FOR UPDATE rechecks it against the latest version,
          -- so a lease renewed after this statement's snapshot is not taken.
          AND ((w.status = 'pending' AND w.next_attempt_at <= at)
               OR (w.status = 'delivering' AND w.lease_until <= at))
        ORDER BY w.next_attempt_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_events w
    SET status = 'delivering', lease_token = gen_random_uuid(), lease_until = at + lease,
        updated_at = at
    FROM chosen WHERE w.id = chosen.id
    RETURNING w.id, w.brand_id, w.endpoint_id, w.lease_token, w.lease_until
$$;

-- Claims that look ahead: the scheduler takes the targets falling due in the next moment in
-- one claim (each replica waits for them in memory until their due_at) instead of one
-- claim, one commit and one wake-up of every replica per target when posts fall due every
-- few milliseconds. It returns the whole target, so the publication does not read it again.
-- Leases that expired are taken over as before, judged at the claim's time, not ahead.
CREATE FUNCTION publishing_claim_ahead(at timestamptz, lease interval, max_rows integer,
                                       ahead interval)
RETURNS SETOF publishing_targets
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH chosen AS (
        SELECT t.id FROM publishing_targets t
        WHERE (t.status = 'pending' AND t.due_at <= at + ahead)
           OR (t.status = 'publishing' AND t.lease_until <= at)
        ORDER BY t.due_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE publishing_targets t
    SET status = 'publishing', lease_token = gen_random_uuid(),
        lease_until = at + ahead + lease, updated_at = at
    FROM chosen WHERE t.id = chosen.id
    RETURNING t.*
$$;

-- publishing_claim_due stays: replicas of the previous version still call it during a
-- rolling upgrade (the two claims exclude each other through the same row locks).

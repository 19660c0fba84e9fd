-- When the delivery worker next has something to do across brands (SECURITY DEFINER: it
-- only names a time): the earliest pending attempt or expiring lease. The worker sleeps
-- until then (or a NOTIFY, or a finished delivery) instead of polling on a short timer.
CREATE FUNCTION webhook_next_due() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT min(CASE WHEN status = 'pending' THEN next_attempt_at ELSE lease_until END)
    FROM webhook_events WHERE status IN ('pending', 'delivering')
$$;

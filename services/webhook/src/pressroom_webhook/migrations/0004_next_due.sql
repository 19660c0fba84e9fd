-- When the delivery worker next has something to do across brands (SECURITY DEFINER: it
-- only names a time): the earliest pending attempt or expiring lease. The worker sleeps
-- until then (or a NOTIFY, or a finished delivery) instead of polling on a short timer.
CREATE FUNCTION webhook_next_due() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    -- Two index reads (webhook_events_due_idx is partial on these statuses), not a walk over
    -- every pending row: a dead endpoint can hold days of retries.
    SELECT least(
        (SELECT min(next_attempt_at) FROM webhook_events WHERE status = 'pending'),
        (SELECT min(lease_until) FROM webhook_events WHERE status = 'delivering'))
$$;

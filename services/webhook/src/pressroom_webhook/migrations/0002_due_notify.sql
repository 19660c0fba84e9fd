-- Wake the delivery workers when new deliveries are queued (they also poll as a fallback).
CREATE FUNCTION webhook_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pressroom_webhook_due', '');
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_events_due AFTER INSERT OR UPDATE OF next_attempt_at ON webhook_events
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_notify();

-- A row the broker refuses for good (too large, invalid topic, not authorized) is parked
-- instead of stopping the relay: parked_at and error say why; an operator retries it
-- (clears both) or discards it (deletes the row; the event stays in the store).
ALTER TABLE outbox ADD COLUMN parked_at timestamptz, ADD COLUMN error text;
CREATE INDEX outbox_parked_idx ON outbox (id) WHERE parked_at IS NOT NULL;

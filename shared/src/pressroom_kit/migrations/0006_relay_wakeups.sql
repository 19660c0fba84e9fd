-- Commits wake the relay only while it waits for them.
--
-- One NOTIFY per committing transaction costs every command a queue insert under a
-- database-wide lock inside its commit (so inside the writers' lock), a signal to the
-- relay's backend and a message to the relay's process; under load the relay does not need
-- them, since it fetches again a few milliseconds after each batch anyway. So the leading
-- relay says here whether it waits: it sets waiting = false once busy, and before it waits
-- it sets waiting = true in a transaction that takes the writers' lock (pressroom_kit.outbox
-- Relay._announce_waiting) and then fetches once more. Every outbox insert runs under that
-- lock too, and this trigger reads the flag with a fresh snapshot, so a commit either came
-- before the flag (and that last fetch sees its rows) or sees it and notifies: no wake-up
-- is lost. With no relay (or an older one) the flag stays true and every commit notifies.
CREATE TABLE outbox_relay_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    waiting   boolean NOT NULL DEFAULT true
);
INSERT INTO outbox_relay_state DEFAULT VALUES;

-- SECURITY DEFINER: the flag is read as the owner, so a writer whose role is granted the
-- new table only after this migration (a replica still running during a rolling upgrade)
-- keeps committing.
CREATE OR REPLACE FUNCTION pressroom_outbox_notify() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    IF coalesce((SELECT waiting FROM outbox_relay_state), true) THEN
        PERFORM pg_notify('pressroom_outbox', '');
    END IF;
    RETURN NULL;
END $$;

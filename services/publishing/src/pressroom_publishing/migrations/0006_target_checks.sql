-- How many times in a row the platform could not be asked about the target's open attempt
-- (a transient failure of find_published); after max_retries the scheduler gives up and
-- the platform becomes unconfirmed for a person to settle.
ALTER TABLE publishing_targets ADD COLUMN checks integer NOT NULL DEFAULT 0;

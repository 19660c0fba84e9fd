-- A transaction's staged event-store appends and outbox rows, written at its very end.
--
-- The client first hands the rows over in the transaction-local setting pressroom.writes (a
-- parametrized set_config, outside any lock), then sends "SELECT pressroom_flush_writes();
-- COMMIT" as one simple query. The writers' advisory lock is taken here and released by that
-- COMMIT, so it is held only while the server inserts and commits: never across a round trip
-- to a client whose event loop may be busy with other requests.
CREATE FUNCTION pressroom_flush_writes() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    staged jsonb := NULLIF(current_setting('pressroom.writes', true), '')::jsonb;
    conflict record;
BEGIN
    IF staged IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('pressroom.writes', '', true);
    PERFORM pg_advisory_xact_lock(7250002);
    -- A new statement, so a new snapshot: it sees every writer that committed before the
    -- lock was granted. The unique (stream_id, version) key stays the last word.
    SELECT x.stream_id, x.expected, v.actual
    INTO conflict
    FROM jsonb_to_recordset(staged->'streams') AS x(stream_id text, expected integer),
         LATERAL (SELECT coalesce(max(e.version), 0) AS actual
                  FROM events e WHERE e.stream_id = x.stream_id) AS v
    WHERE v.actual <> x.expected
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'stream % is at version %, expected %',
            conflict.stream_id, conflict.actual, conflict.expected
            USING ERRCODE = 'PR409', DETAIL = conflict.stream_id, HINT = conflict.actual::text;
    END IF;
    INSERT INTO events (event_id, stream_id, stream_type, version, type, schema_version,
                        data, metadata, brand_id, occurred_at)
    SELECT e.event_id, e.stream_id, e.stream_type, e.version, e.type, e.schema_version,
           e.data, e.metadata, e.brand_id, e.occurred_at
    FROM ROWS FROM (jsonb_to_recordset(staged->'events') AS (
             event_id uuid, stream_id text, stream_type text, version integer, type text,
             schema_version integer, data jsonb, metadata jsonb, brand_id uuid,
             occurred_at timestamptz)) WITH ORDINALITY
         AS e(event_id, stream_id, stream_type, version, type, schema_version, data,
              metadata, brand_id, occurred_at, ord)
    ORDER BY e.ord;
    INSERT INTO outbox (event_id, topic, key, headers, payload)
    SELECT o.event_id, o.topic, o.key, o.headers, o.payload
    FROM ROWS FROM (jsonb_to_recordset(staged->'outbox') AS (
             event_id uuid, topic text, key text, headers jsonb, payload jsonb)) WITH ORDINALITY
         AS o(event_id, topic, key, headers, payload, ord)
    ORDER BY o.ord;
END $$;

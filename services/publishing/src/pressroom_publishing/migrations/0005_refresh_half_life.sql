-- A token is refreshed when it expires within REFRESH_AHEAD_S *and* has lived half its life.
-- With the first rule alone, a token whose whole life is no longer than REFRESH_AHEAD_S (the
-- sandbox's and Google's 1-hour tokens against the 1-hour default) was due at once: every
-- worker pass refreshed it again. t.updated_at is when the tokens row was last written, that
-- is when the current token was issued.
CREATE OR REPLACE FUNCTION publishing_connections_claim(at timestamptz, lease interval,
                                                        max_rows integer,
                                                        refresh_before timestamptz,
                                                        verify_before timestamptz,
                                                        warn_until timestamptz)
RETURNS TABLE (connection_id uuid, brand_id uuid, platform text, lease_token uuid,
               lease_until timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH chosen AS (
        SELECT t.connection_id FROM platform_connection_tokens t
        JOIN platform_connections c ON c.id = t.connection_id
        WHERE c.status IN ('connected', 'error')
          AND (t.lease_until IS NULL OR t.lease_until <= at)
          AND ((c.status = 'connected' AND t.refresh_token_enc IS NOT NULL
                AND t.expires_at <= refresh_before
                AND at >= t.updated_at + (t.expires_at - t.updated_at) / 2)
               OR coalesce(c.last_verified_at, c.created_at) <= verify_before
               OR (c.status = 'connected' AND t.refresh_token_enc IS NULL
                   AND t.expires_at <= warn_until))
        ORDER BY t.expires_at NULLS LAST
        LIMIT max_rows
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE platform_connection_tokens t
    SET lease_token = gen_random_uuid(), lease_until = at + lease
    FROM chosen WHERE t.connection_id = chosen.connection_id
    RETURNING t.connection_id, t.brand_id, t.platform, t.lease_token, t.lease_until
$$;

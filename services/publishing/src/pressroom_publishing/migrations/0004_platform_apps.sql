-- OAuth apps Pressroom registered on a federated platform's instance (Mastodon: one app per
-- instance, POST /api/v1/apps, on the first authorize there). Shared by every brand that
-- connects an account on that instance, so the table has no brand and no row-level
-- security; it holds no brand's data. The client secret is sealed (SecretBox, context
-- "platform_app:<id>:client_secret"). One app per platform, instance and redirect URI: a
-- changed PRESSROOM_PUBLIC_URL registers a new app (the old one's redirect URI no longer
-- matches), and connections made with the old app keep finding theirs by client id.
CREATE TABLE platform_apps (
    id                uuid        PRIMARY KEY,
    platform          text        NOT NULL,
    instance_url      text        NOT NULL,  -- normalised: scheme://host[:port]
    redirect_uri      text        NOT NULL,
    client_id         text        NOT NULL,
    client_secret_enc text        NOT NULL,
    created_at        timestamptz NOT NULL,
    UNIQUE (platform, instance_url, redirect_uri),
    UNIQUE (platform, instance_url, client_id)
);

-- The `error` status: the platform answers, but refuses the token for a reason that is
-- neither an expired nor a revoked grant (a 403 on verify: account suspended, scopes
-- withdrawn; or the token now speaks for another account). Such a connection is not used for
-- publishing, and the worker keeps verifying it, so it comes back to `connected` by itself
-- once the platform accepts it again. The claim below therefore also hands out `error`
-- connections whose verification is due (never for a refresh or an expiry warning).
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
                AND t.expires_at <= refresh_before)
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

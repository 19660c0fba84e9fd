-- Connections: one per brand and platform. The connection is an event-sourced aggregate and
-- platform_connections is its projection (never a token in it or in any event); the sealed
-- tokens live in platform_connection_tokens, written in the same transaction as the
-- connection's events, so a projection rebuild never touches a secret.
CREATE TABLE platform_connections (
    id               uuid        PRIMARY KEY,
    brand_id         uuid        NOT NULL,
    platform         text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('connected', 'expired', 'revoked', 'error')),
    account_id       text        NOT NULL,
    account_name     text,
    scopes           text[]      NOT NULL DEFAULT '{}',
    extra            jsonb       NOT NULL DEFAULT '{}',  -- non-secret platform details (instance URL, ...)
    token_expires_at timestamptz,
    last_verified_at timestamptz,
    last_refreshed_at timestamptz,
    last_error       text,
    connected_by     text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    UNIQUE (brand_id, platform)
);
SELECT pressroom_enable_tenant_rls('platform_connections');

-- No foreign key to platform_connections on purpose: a projection rebuild truncates and
-- refills that table, which must not take the tokens with it. A disconnect deletes its row.
-- Lock order: every transaction that changes a connection locks its tokens row first
-- (SELECT ... FOR UPDATE), then appends the connection's events; a refresh holds that lock
-- across one bounded platform call so that only one replica ever spends a refresh token.
CREATE TABLE platform_connection_tokens (
    connection_id     uuid        PRIMARY KEY,
    brand_id          uuid        NOT NULL,
    platform          text        NOT NULL,
    access_token_enc  text        NOT NULL,  -- AES-GCM, "<key id>:<base64 nonce+ciphertext>"
    refresh_token_enc text,
    expires_at        timestamptz,
    generation        integer     NOT NULL DEFAULT 1,  -- bumped on every new token: one refresh wins
    updated_at        timestamptz NOT NULL,
    -- The connection worker's lease (pressroom_kit.leases): one replica tends a connection.
    lease_token       uuid,
    lease_until       timestamptz
);
CREATE INDEX platform_connection_tokens_expiry_idx ON platform_connection_tokens (expires_at);
SELECT pressroom_enable_tenant_rls('platform_connection_tokens');

-- OAuth authorizations in flight: the signed state names one of these rows, which a callback
-- consumes once (used_at), before it expires.
CREATE TABLE oauth_states (
    id                uuid        PRIMARY KEY,
    brand_id          uuid        NOT NULL,
    user_id           text        NOT NULL,
    platform          text        NOT NULL,
    redirect_uri      text        NOT NULL,
    code_verifier_enc text,
    extra             jsonb       NOT NULL DEFAULT '{}',
    expires_at        timestamptz NOT NULL,
    used_at           timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX oauth_states_expiry_idx ON oauth_states (expires_at);
SELECT pressroom_enable_tenant_rls('oauth_states');

-- The connection worker claims connections that need tending across brands. Row-level
-- security keeps the runtime role inside one brand, so the claim runs as this function's
-- owner: it only hands out leases (kit convention: $1 now, $2 the lease duration); every
-- read and write after it happens in the connection's tenant transaction. A connection is
-- due when its token should be renewed (it has a refresh token and expires before
-- refresh_before), when it was not verified since verify_before, or when its token cannot be
-- renewed and expires before warn_until (scheduled posts may find it dead).
CREATE FUNCTION publishing_connections_claim(at timestamptz, lease interval, max_rows integer,
                                             refresh_before timestamptz,
                                             verify_before timestamptz,
                                             warn_until timestamptz)
RETURNS TABLE (connection_id uuid, brand_id uuid, platform text, lease_token uuid,
               lease_until timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH chosen AS (
        SELECT t.connection_id FROM platform_connection_tokens t
        JOIN platform_connections c ON c.id = t.connection_id
        WHERE c.status = 'connected'
          AND (t.lease_until IS NULL OR t.lease_until <= at)
          AND ((t.refresh_token_enc IS NOT NULL AND t.expires_at <= refresh_before)
               OR coalesce(c.last_verified_at, c.created_at) <= verify_before
               OR (t.refresh_token_enc IS NULL AND t.expires_at <= warn_until))
        ORDER BY t.expires_at NULLS LAST
        LIMIT max_rows
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE platform_connection_tokens t
    SET lease_token = gen_random_uuid(), lease_until = at + lease
    FROM chosen WHERE t.connection_id = chosen.connection_id
    RETURNING t.connection_id, t.brand_id, t.platform, t.lease_token, t.lease_until
$$;

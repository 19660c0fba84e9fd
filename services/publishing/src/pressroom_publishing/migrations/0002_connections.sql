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

CREATE TABLE platform_connection_tokens (
    connection_id     uuid        PRIMARY KEY REFERENCES platform_connections (id) ON DELETE CASCADE,
    brand_id          uuid        NOT NULL,
    access_token_enc  text        NOT NULL,  -- AES-GCM, "<key id>:<base64 nonce+ciphertext>"
    refresh_token_enc text,
    expires_at        timestamptz,
    generation        integer     NOT NULL DEFAULT 1,  -- bumped on every new token: one refresh wins
    updated_at        timestamptz NOT NULL
);
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
SELECT pressroom_enable_tenant_rls('oauth_states');

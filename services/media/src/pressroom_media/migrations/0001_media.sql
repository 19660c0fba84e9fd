-- The asset aggregate's projections (media_assets, media_usage_logs, storage_quotas) and the
-- quota reservations of uploads in flight (plain rows with an expiry, not events).
CREATE TABLE media_assets (
    id           uuid        PRIMARY KEY,
    brand_id     uuid        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('image', 'video')),
    category     text,
    filename     text        NOT NULL,
    content_type text        NOT NULL,
    size_bytes   bigint      NOT NULL CHECK (size_bytes >= 0),
    hash         text        NOT NULL,
    tags         text[]      NOT NULL DEFAULT '{}',
    metadata     jsonb       NOT NULL,
    files        jsonb       NOT NULL,
    used_in      text[]      NOT NULL DEFAULT '{}',
    usage_count  integer     NOT NULL DEFAULT 0,
    uploaded_by  text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    CONSTRAINT media_assets_brand_hash_key UNIQUE (brand_id, hash)
);
CREATE INDEX media_assets_brand_created_idx ON media_assets (brand_id, created_at DESC, id DESC);
CREATE INDEX media_assets_tags_idx ON media_assets USING gin (tags);
CREATE INDEX media_assets_brand_size_idx ON media_assets (brand_id, size_bytes);
SELECT pressroom_enable_tenant_rls('media_assets');

CREATE TABLE media_usage_logs (
    id           uuid        PRIMARY KEY,
    brand_id     uuid        NOT NULL,
    asset_id     uuid        NOT NULL,
    used_in      text        NOT NULL,
    action       text        NOT NULL,
    used_by_user text,
    source_event uuid,
    created_at   timestamptz NOT NULL
);
CREATE INDEX media_usage_logs_asset_idx ON media_usage_logs (asset_id, created_at DESC, id DESC);
SELECT pressroom_enable_tenant_rls('media_usage_logs');

CREATE TABLE storage_quotas (
    brand_id          uuid        PRIMARY KEY,
    limit_bytes       bigint      NOT NULL,
    used_bytes        bigint      NOT NULL CHECK (used_bytes >= 0),
    warning_threshold real        NOT NULL,
    warning_active    boolean     NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL
);
SELECT pressroom_enable_tenant_rls('storage_quotas');

CREATE TABLE media_quota_reservations (
    id         uuid        PRIMARY KEY,
    brand_id   uuid        NOT NULL,
    asset_id   uuid        NOT NULL,
    bytes      bigint      NOT NULL CHECK (bytes >= 0),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX media_quota_reservations_brand_idx ON media_quota_reservations (brand_id, expires_at);
SELECT pressroom_enable_tenant_rls('media_quota_reservations');

-- Reservations left behind by crashed uploads expire; the sweeper claims them across brands
-- (row-level security keeps the runtime role inside one brand, so the claim runs as this
-- function's owner and only hands out what to clean) and removes the files they stored.
CREATE FUNCTION media_claim_expired_reservations(at timestamptz, max_rows integer)
RETURNS TABLE (brand_id uuid, asset_id uuid)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    DELETE FROM media_quota_reservations r
    WHERE r.id IN (
        SELECT x.id FROM media_quota_reservations x WHERE x.expires_at <= at
        ORDER BY x.expires_at LIMIT max_rows FOR UPDATE SKIP LOCKED
    )
    RETURNING r.brand_id, r.asset_id
$$;

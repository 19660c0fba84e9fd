-- Sync and metrics: what the analytics service knows of brands and connections (local copies
-- of other services' events), the daily numbers publishing collects from the platforms, the
-- published posts and their daily numbers, and one log row per sync request.

CREATE TABLE analytics_brands (
    brand_id   uuid        PRIMARY KEY,
    name       text,
    timezone   text        NOT NULL DEFAULT 'UTC',
    updated_at timestamptz NOT NULL
);
SELECT pressroom_enable_tenant_rls('analytics_brands');

-- One row per brand and platform from publishing.connection.*: which platforms a sync asks
-- for by default and which brands the daily sync visits. updated_at is the event's time, so
-- an older event delivered late does not undo a newer one.
CREATE TABLE analytics_connections (
    brand_id   uuid        NOT NULL,
    platform   text        NOT NULL,
    status     text        NOT NULL CHECK (status IN ('connected', 'expired', 'revoked')),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (brand_id, platform)
);
CREATE INDEX analytics_connections_connected_idx ON analytics_connections (brand_id)
    WHERE status = 'connected';
SELECT pressroom_enable_tenant_rls('analytics_connections');

-- One row per brand, platform and (local) date; the primary key is the upsert's unique key.
-- engagement_rate is derived, never sent: engagement / reach, 0 when reach is 0.
-- collected_at is when publishing read the numbers: an answer older than the row's (a late
-- answer of an earlier sync) does not overwrite newer numbers.
CREATE TABLE analytics_metrics (
    brand_id        uuid             NOT NULL,
    platform        text             NOT NULL,
    date            date             NOT NULL,
    reach           bigint           NOT NULL DEFAULT 0,
    impressions     bigint           NOT NULL DEFAULT 0,
    engagement      bigint           NOT NULL DEFAULT 0,
    followers       bigint           NOT NULL DEFAULT 0,
    engagement_rate double precision GENERATED ALWAYS AS (
        CASE WHEN reach > 0 THEN engagement::double precision / reach ELSE 0 END) STORED,
    collected_at    timestamptz      NOT NULL,
    synced_at       timestamptz      NOT NULL,
    sync_id         uuid,
    PRIMARY KEY (brand_id, platform, date)
);
CREATE INDEX analytics_metrics_date_idx ON analytics_metrics (brand_id, date);
SELECT pressroom_enable_tenant_rls('analytics_metrics');

-- Posts published (publishing.post.published.v1), so per-post numbers have a home before
-- any sync; plan_id links a post to the auto-plan it came from.
CREATE TABLE analytics_posts (
    brand_id         uuid        NOT NULL,
    post_id          uuid        NOT NULL,
    platform         text        NOT NULL,
    platform_post_id text,
    published_at     timestamptz,
    media_kind       text,
    plan_id          uuid,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (brand_id, post_id, platform)
);
CREATE INDEX analytics_posts_platform_id_idx ON analytics_posts (brand_id, platform, platform_post_id);
SELECT pressroom_enable_tenant_rls('analytics_posts');

CREATE TABLE analytics_post_metrics (
    brand_id         uuid        NOT NULL,
    post_id          uuid,
    platform         text        NOT NULL,
    platform_post_id text        NOT NULL,
    date             date        NOT NULL,
    reach            bigint      NOT NULL DEFAULT 0,
    impressions      bigint      NOT NULL DEFAULT 0,
    engagement       bigint      NOT NULL DEFAULT 0,
    likes            bigint      NOT NULL DEFAULT 0,
    comments         bigint      NOT NULL DEFAULT 0,
    shares           bigint      NOT NULL DEFAULT 0,
    collected_at     timestamptz NOT NULL,
    synced_at        timestamptz NOT NULL,
    sync_id          uuid,
    UNIQUE (brand_id, platform, platform_post_id, date)
);
CREATE INDEX analytics_post_metrics_date_idx ON analytics_post_metrics (brand_id, date);
SELECT pressroom_enable_tenant_rls('analytics_post_metrics');

-- One row per sync: running until every platform asked has answered (completed, partial or
-- failed) or the wait ran out (timed_out). answers holds each platform's answer as it came
-- (status, counts, error, collected_at). created_at orders the list (keyset pagination).
CREATE TABLE analytics_sync_logs (
    id           uuid        PRIMARY KEY,
    brand_id     uuid        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('running', 'completed', 'partial',
                     'failed', 'timed_out')),
    trigger      text        NOT NULL CHECK (trigger IN ('manual', 'daily', 'backfill')),
    platforms    text[]      NOT NULL,
    from_date    date        NOT NULL,
    to_date      date        NOT NULL,
    requested_by text,
    created_at   timestamptz NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    items_synced integer     NOT NULL DEFAULT 0,
    items_failed integer     NOT NULL DEFAULT 0,
    duration_ms  integer,
    answers      jsonb       NOT NULL DEFAULT '{}',
    error        text
);
CREATE INDEX analytics_sync_logs_brand_idx ON analytics_sync_logs (brand_id, created_at DESC, id DESC);
CREATE INDEX analytics_sync_logs_running_idx ON analytics_sync_logs (started_at)
    WHERE status = 'running';
SELECT pressroom_enable_tenant_rls('analytics_sync_logs');

-- The daily sync's claim: one row per brand and UTC day, inserted in the transaction that
-- requests the sync, so two replicas request it once.
CREATE TABLE analytics_daily_syncs (
    brand_id uuid        NOT NULL,
    day      date        NOT NULL,
    sync_id  uuid        NOT NULL,
    PRIMARY KEY (brand_id, day)
);
SELECT pressroom_enable_tenant_rls('analytics_daily_syncs');

-- Cross-brand lookups of the workers. Row-level security keeps the runtime role inside one
-- brand, so these run as the owner; they only name brands and rows, every write happens
-- later in that brand's own transaction (which locks and rechecks the row).
CREATE FUNCTION analytics_daily_due(day date, max_rows integer)
RETURNS TABLE (brand_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT DISTINCT c.brand_id FROM analytics_connections c
    WHERE c.status = 'connected'
      AND NOT EXISTS (SELECT 1 FROM analytics_daily_syncs d
                      WHERE d.brand_id = c.brand_id AND d.day = analytics_daily_due.day)
    LIMIT max_rows
$$;

CREATE FUNCTION analytics_overdue_syncs(cutoff timestamptz, max_rows integer)
RETURNS TABLE (id uuid, brand_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT l.id, l.brand_id FROM analytics_sync_logs l
    WHERE l.status = 'running' AND l.started_at < cutoff
    ORDER BY l.started_at
    LIMIT max_rows
$$;

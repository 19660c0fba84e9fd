-- Posts are an event-sourced aggregate; publishing_jobs is its projection (rebuildable).
-- publishing_targets is work state, one row per post and platform, written by the commands
-- in the same transaction as the post's events; publishing_logs records every attempt.
-- publishing_media and publishing_brands are local copies of other services' events.
CREATE TABLE publishing_jobs (
    id                uuid        PRIMARY KEY,
    brand_id          uuid        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('draft', 'awaiting_approval',
                          'scheduled', 'publishing', 'published', 'partially_published',
                          'failed', 'cancelled', 'rejected')),
    text              text        NOT NULL,
    media_ids         uuid[]      NOT NULL DEFAULT '{}',
    link              text,
    platforms         text[]      NOT NULL,
    overrides         jsonb       NOT NULL DEFAULT '{}',
    scheduled_at      timestamptz,
    requires_approval boolean,
    author            text,
    approval_locked   boolean     NOT NULL DEFAULT false,
    results           jsonb       NOT NULL DEFAULT '{}',
    retry_count       integer     NOT NULL DEFAULT 0,
    published_at      timestamptz,
    last_error        text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX publishing_jobs_brand_idx ON publishing_jobs (brand_id, created_at DESC, id DESC);
CREATE INDEX publishing_jobs_calendar_idx ON publishing_jobs (brand_id, scheduled_at);
SELECT pressroom_enable_tenant_rls('publishing_jobs');

CREATE TABLE publishing_targets (
    post_id          uuid        NOT NULL,
    platform         text        NOT NULL,
    id               uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),  -- the lease key
    brand_id         uuid        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'publishing', 'published',
                         'failed', 'unconfirmed', 'cancelled')),
    scheduled_at     timestamptz NOT NULL,  -- when the post is meant to go out
    due_at           timestamptz NOT NULL,  -- when the next attempt may run (retries move it)
    attempts         integer     NOT NULL DEFAULT 0,  -- every attempt ever (numbers the logs)
    round_start      integer     NOT NULL DEFAULT 0,  -- attempts before the latest retry request
    attempt_open     boolean     NOT NULL DEFAULT false,  -- an attempt began, its outcome is not recorded
    client_reference text        NOT NULL,  -- the idempotency key sent to the platform
    platform_post_id text,
    url              text,
    error_code       text,
    last_error       text,
    lease_token      uuid,
    lease_until      timestamptz,
    published_at     timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (post_id, platform)
);
CREATE INDEX publishing_targets_due_idx ON publishing_targets (due_at) WHERE status = 'pending';
CREATE INDEX publishing_targets_leased_idx ON publishing_targets (lease_until)
    WHERE status = 'publishing';
CREATE INDEX publishing_targets_connection_idx ON publishing_targets (brand_id, platform, scheduled_at)
    WHERE status = 'pending';
SELECT pressroom_enable_tenant_rls('publishing_targets');

CREATE TABLE publishing_logs (
    id               bigserial   PRIMARY KEY,
    post_id          uuid        NOT NULL,
    brand_id         uuid        NOT NULL,
    platform         text        NOT NULL,
    attempt          integer     NOT NULL,
    status           text        NOT NULL CHECK (status IN ('started', 'published', 'retrying',
                         'failed', 'unconfirmed', 'found', 'not_found')),
    client_reference text        NOT NULL,
    platform_post_id text,
    url              text,
    error_code       text,
    message          text,
    details          jsonb       NOT NULL DEFAULT '{}',
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz
);
CREATE INDEX publishing_logs_post_idx ON publishing_logs (post_id, id);
SELECT pressroom_enable_tenant_rls('publishing_logs');

CREATE TABLE publishing_media (
    asset_id     uuid        PRIMARY KEY,
    brand_id     uuid        NOT NULL,
    kind         text        NOT NULL,
    filename     text,
    content_type text        NOT NULL,
    size_bytes   bigint      NOT NULL,
    width        integer,
    height       integer,
    duration_s   double precision,
    updated_at   timestamptz NOT NULL
);
SELECT pressroom_enable_tenant_rls('publishing_media');

CREATE TABLE publishing_brands (
    brand_id          uuid        PRIMARY KEY,
    timezone          text        NOT NULL DEFAULT 'UTC',
    approval_required boolean     NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL
);
SELECT pressroom_enable_tenant_rls('publishing_brands');

-- The scheduler claims due targets across brands. Row-level security keeps the runtime role
-- inside one brand, so the claim runs as this function's owner: it only hands out leases;
-- every later read or write happens under the row's brand context, fenced on the token.
CREATE FUNCTION publishing_claim_due(at timestamptz, lease interval, max_rows integer)
RETURNS TABLE (id uuid, post_id uuid, platform text, brand_id uuid, lease_token uuid,
               lease_until timestamptz)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH chosen AS (
        SELECT t.id FROM publishing_targets t
        -- Checked on the row itself: FOR UPDATE rechecks it against the latest version, so
        -- a lease renewed after this statement's snapshot is not taken.
        WHERE (t.status = 'pending' AND t.due_at <= at)
           OR (t.status = 'publishing' AND t.lease_until <= at)
        ORDER BY t.due_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE publishing_targets t
    SET status = 'publishing', lease_token = gen_random_uuid(), lease_until = at + lease,
        updated_at = at
    FROM chosen WHERE t.id = chosen.id
    RETURNING t.id, t.post_id, t.platform, t.brand_id, t.lease_token, t.lease_until
$$;

-- When the next pending target comes due, across brands: the scheduler sleeps until then
-- (or a NOTIFY, or its poll interval) instead of finding it a poll late.
CREATE FUNCTION publishing_next_due() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT min(due_at) FROM publishing_targets WHERE status = 'pending'
$$;

-- The due backlog across brands, for the scheduler's gauge.
CREATE FUNCTION publishing_due_backlog(at timestamptz) RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    SELECT count(*) FROM publishing_targets WHERE status = 'pending' AND due_at <= at
$$;

-- Wake the schedulers when targets are queued or their due time moves (they also poll).
-- Not on status: a claim's own update would wake every replica again.
CREATE FUNCTION publishing_targets_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pressroom_publishing_due', '');
    RETURN NULL;
END $$;
CREATE TRIGGER publishing_targets_due AFTER INSERT OR UPDATE OF due_at ON publishing_targets
    FOR EACH STATEMENT EXECUTE FUNCTION publishing_targets_notify();

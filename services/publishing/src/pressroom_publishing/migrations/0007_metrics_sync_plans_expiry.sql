-- Posts made from an analytics plan carry its id and the slot's advice; an approval that
-- expired is shown on the post until it is submitted again.
ALTER TABLE publishing_jobs ADD COLUMN plan_id uuid;
ALTER TABLE publishing_jobs ADD COLUMN plan_slot jsonb;
ALTER TABLE publishing_jobs ADD COLUMN approval_expired_at timestamptz;
CREATE INDEX publishing_jobs_plan_idx ON publishing_jobs (brand_id, plan_id) WHERE plan_id IS NOT NULL;

-- Metrics syncs asked for by analytics (analytics.sync.requested.v1): one work row per
-- sync and platform, written by the inbox handler (a redelivery or a resend adds nothing),
-- answered by the metrics worker, which writes publishing.metrics.collected.v1 in the same
-- transaction that marks the row done. Work state, not a projection.
CREATE TABLE publishing_metric_syncs (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),  -- the lease key
    brand_id     uuid        NOT NULL,
    sync_id      uuid        NOT NULL,
    platform     text        NOT NULL,
    since        date        NOT NULL,
    until        date        NOT NULL,
    timezone     text        NOT NULL DEFAULT 'UTC',
    status       text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),
    answer       text        CHECK (answer IN ('ok', 'failed', 'not_connected', 'not_supported')),
    attempts     integer     NOT NULL DEFAULT 0,  -- claims so far (a crash counts too)
    due_at       timestamptz NOT NULL,            -- when the next attempt may run
    last_error   text,
    lease_token  uuid,
    lease_until  timestamptz,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    UNIQUE (brand_id, sync_id, platform)
);
CREATE INDEX publishing_metric_syncs_due_idx ON publishing_metric_syncs (due_at)
    WHERE status = 'pending';
SELECT pressroom_enable_tenant_rls('publishing_metric_syncs');

-- The worker claims due rows across brands (row-level security keeps the runtime role in
-- one brand, so the claim runs as the owner; it only hands out leases, everything after it
-- runs in the row's brand, fenced on the token). A row under an unexpired lease is skipped;
-- one whose holder died is taken again once its lease ran out. Each claim counts an attempt.
CREATE FUNCTION publishing_metric_syncs_claim(at timestamptz, lease interval, max_rows integer)
RETURNS SETOF publishing_metric_syncs
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH chosen AS (
        SELECT s.id FROM publishing_metric_syncs s
        WHERE s.status = 'pending' AND s.due_at <= at
          AND (s.lease_until IS NULL OR s.lease_until <= at)
        ORDER BY s.due_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE publishing_metric_syncs s
    SET lease_token = gen_random_uuid(), lease_until = at + lease, attempts = s.attempts + 1,
        updated_at = at
    FROM chosen WHERE s.id = chosen.id
    RETURNING s.*
$$;

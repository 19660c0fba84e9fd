-- Endpoints are an event-sourced aggregate (this is its projection); deliveries and attempts
-- are a work queue and its log, kept as plain tables.
CREATE TABLE webhook_endpoints (
    id                   uuid        PRIMARY KEY,
    brand_id             uuid        NOT NULL,
    url                  text        NOT NULL,
    provider             text        NOT NULL CHECK (provider IN ('generic', 'zapier', 'make', 'slack')),
    event_types          text[]      NOT NULL,
    description          text        NOT NULL DEFAULT '',
    enabled              boolean     NOT NULL,
    secret_enc           text        NOT NULL,
    previous_secret_enc  text,
    previous_valid_until timestamptz,
    disabled_reason      text,
    deleted              boolean     NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX webhook_endpoints_brand_idx ON webhook_endpoints (brand_id) WHERE NOT deleted;
SELECT pressroom_enable_tenant_rls('webhook_endpoints');

CREATE TABLE webhook_endpoint_health (
    endpoint_id     uuid        PRIMARY KEY,
    brand_id        uuid        NOT NULL,
    failing_since   timestamptz,
    last_success_at timestamptz
);
SELECT pressroom_enable_tenant_rls('webhook_endpoint_health');

CREATE TABLE webhook_events (
    id                 uuid        PRIMARY KEY,
    brand_id           uuid        NOT NULL,
    endpoint_id        uuid        NOT NULL,
    event_id           uuid        NOT NULL,
    event_type         text        NOT NULL,
    idempotency_key    text        NOT NULL UNIQUE,
    payload            jsonb       NOT NULL,
    status             text        NOT NULL CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts           integer     NOT NULL DEFAULT 0,
    max_attempts       integer     NOT NULL,
    next_attempt_at    timestamptz NOT NULL,
    lease_until        timestamptz,
    last_error         text,
    last_response_code integer,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    delivered_at       timestamptz
);
CREATE INDEX webhook_events_due_idx ON webhook_events (next_attempt_at)
    WHERE status IN ('pending', 'delivering');
CREATE INDEX webhook_events_endpoint_idx ON webhook_events (endpoint_id, created_at);
SELECT pressroom_enable_tenant_rls('webhook_events');

CREATE TABLE webhook_attempts (
    id               bigserial   PRIMARY KEY,
    webhook_event_id uuid        NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    brand_id         uuid        NOT NULL,
    attempt          integer     NOT NULL,
    status           text        NOT NULL CHECK (status IN ('succeeded', 'failed')),
    response_code    integer,
    error            text,
    backoff_ms       integer,
    response_body    text,
    duration_ms      integer     NOT NULL,
    attempted_at     timestamptz NOT NULL
);
CREATE INDEX webhook_attempts_event_idx ON webhook_attempts (webhook_event_id, attempt);
SELECT pressroom_enable_tenant_rls('webhook_attempts');

-- The delivery worker claims due work across brands. Row-level security keeps the runtime
-- role inside one brand, so the claim runs as this function's owner: it only hands out
-- leases, and every later read or write happens under the row's brand context.
CREATE FUNCTION webhook_claim_due(at timestamptz, max_rows integer, per_endpoint integer,
                                  lease interval)
RETURNS TABLE (id uuid, brand_id uuid, endpoint_id uuid)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH active AS (
        SELECT e.endpoint_id, count(*) AS n FROM webhook_events e
        WHERE e.status = 'delivering' AND e.lease_until > at
        GROUP BY e.endpoint_id
    ), due AS (
        SELECT e.id, e.next_attempt_at,
               row_number() OVER (PARTITION BY e.endpoint_id ORDER BY e.next_attempt_at) AS rn,
               coalesce(a.n, 0) AS busy
        FROM webhook_events e LEFT JOIN active a USING (endpoint_id)
        WHERE (e.status = 'pending' AND e.next_attempt_at <= at)
           OR (e.status = 'delivering' AND e.lease_until <= at)
    ), chosen AS (
        SELECT w.id FROM webhook_events w
        WHERE w.id IN (SELECT due.id FROM due WHERE due.rn + due.busy <= per_endpoint)
        ORDER BY w.next_attempt_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE webhook_events w
    SET status = 'delivering', lease_until = at + lease, updated_at = at
    FROM chosen WHERE w.id = chosen.id
    RETURNING w.id, w.brand_id, w.endpoint_id
$$;

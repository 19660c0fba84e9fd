-- Escalations: a brand's rules, one work row per approval round and rule (leased by the
-- scheduler), the history of every step, and the per-recipient settings that decide the
-- language, the timezone of working hours and what someone unsubscribed from.
CREATE TABLE escalation_rules (
    id                uuid        PRIMARY KEY,
    brand_id          uuid        NOT NULL,
    rule_type         text        NOT NULL CHECK (rule_type ~ '^(reminder|escalate)_[1-9][0-9]{0,3}h$'),
    trigger_hours     integer     NOT NULL CHECK (trigger_hours BETWEEN 1 AND 8760),
    target_type       text        NOT NULL DEFAULT 'role' CHECK (target_type = 'role'),
    escalate_to_role  text        NOT NULL CHECK (escalate_to_role IN ('viewer', 'manager', 'admin')),
    notify_via        text[]      NOT NULL CHECK (cardinality(notify_via) > 0
                          AND notify_via <@ ARRAY['email', 'slack']),
    -- Derived from notify_via, so the two can never disagree.
    send_email        boolean     GENERATED ALWAYS AS ('email' = ANY (notify_via)) STORED,
    send_slack        boolean     GENERATED ALWAYS AS ('slack' = ANY (notify_via)) STORED,
    enabled           boolean     NOT NULL DEFAULT true,
    respect_timezone  boolean     NOT NULL DEFAULT true,
    slack_webhook_url text,       -- sealed with SecretBox (context: the rule id), never returned
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    UNIQUE (brand_id, rule_type)
);
SELECT pressroom_enable_tenant_rls('escalation_rules');

-- A brand's default rules are made once, at its first approval; this row remembers that, so
-- an admin who deleted every rule does not get them back.
CREATE TABLE escalation_defaults (
    brand_id   uuid        PRIMARY KEY,
    created_at timestamptz NOT NULL
);
SELECT pressroom_enable_tenant_rls('escalation_defaults');

CREATE TABLE escalation_events (
    id               uuid        PRIMARY KEY,
    brand_id         uuid        NOT NULL,
    approval_id      uuid        NOT NULL,
    post_id          uuid        NOT NULL,
    rule_id          uuid        REFERENCES escalation_rules (id) ON DELETE SET NULL,
    rule_type        text        NOT NULL,
    target_role      text        NOT NULL,
    channels         text[]      NOT NULL,
    respect_timezone boolean     NOT NULL,
    requested_at     timestamptz NOT NULL,  -- the approval round this step belongs to
    due_at           timestamptz NOT NULL,  -- requested_at + trigger_hours
    status           text        NOT NULL CHECK (status IN ('pending', 'sent', 'failed',
                         'resolved', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,  -- due_at, moved by working hours and retries
    lease_token      uuid,
    lease_until      timestamptz,
    recipients       integer     NOT NULL DEFAULT 0,
    last_error       text,
    sent_at          timestamptz,
    closed_at        timestamptz,
    created_at       timestamptz NOT NULL,
    -- A redelivered request (same round) schedules nothing twice.
    UNIQUE (approval_id, rule_id, requested_at)
);
CREATE INDEX escalation_events_due_idx ON escalation_events (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX escalation_events_approval_idx ON escalation_events (approval_id, due_at);
SELECT pressroom_enable_tenant_rls('escalation_events');

CREATE TABLE escalation_history (
    id            bigserial   PRIMARY KEY,
    brand_id      uuid        NOT NULL,
    escalation_id uuid        NOT NULL REFERENCES escalation_events (id) ON DELETE CASCADE,
    approval_id   uuid        NOT NULL,
    step          text        NOT NULL CHECK (step IN ('created', 'sent', 'failed', 'retried',
                      'skipped', 'deferred', 'resolved', 'cancelled')),
    channel       text,
    recipient     text,       -- the member's user id (never the address: it may be erased)
    detail        jsonb       NOT NULL DEFAULT '{}',
    at            timestamptz NOT NULL
);
CREATE INDEX escalation_history_event_idx ON escalation_history (escalation_id, id);
CREATE INDEX escalation_history_approval_idx ON escalation_history (approval_id, id);
SELECT pressroom_enable_tenant_rls('escalation_history');

CREATE TABLE client_settings (
    brand_id              uuid        NOT NULL,
    client_id             text        NOT NULL,  -- a member's user id, or a client's own id
    email                 text,
    name                  text,
    timezone              text,
    language              text        NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'es', 'fr', 'de')),
    email_preferences     jsonb       NOT NULL DEFAULT '{}',
    unsubscribed_from_all boolean     NOT NULL DEFAULT false,
    unsubscribed_types    text[]      NOT NULL DEFAULT '{}',
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (brand_id, client_id)
);
CREATE INDEX client_settings_email_idx ON client_settings (brand_id, lower(email));
SELECT pressroom_enable_tenant_rls('client_settings');

-- The scheduler claims due escalations across brands; RLS keeps the runtime role inside one
-- brand, so the claim runs as the owner and only hands out leases. Everything after it runs
-- in the row's brand, fenced on the token (pressroom_kit.leases).
CREATE FUNCTION escalation_claim_due(at timestamptz, lease interval, max_rows integer)
RETURNS SETOF escalation_events
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
    WITH chosen AS (
        SELECT e.id FROM escalation_events e
        WHERE e.status = 'pending' AND e.next_attempt_at <= at
          AND (e.lease_until IS NULL OR e.lease_until <= at)
        ORDER BY e.next_attempt_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    UPDATE escalation_events e
    SET lease_token = gen_random_uuid(), lease_until = at + lease
    FROM chosen WHERE e.id = chosen.id
    RETURNING e.*
$$;

-- When the next pending escalation comes due, across brands (the scheduler sleeps until it).
CREATE FUNCTION escalation_next_due() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT min(next_attempt_at) FROM escalation_events WHERE status = 'pending'
$$;

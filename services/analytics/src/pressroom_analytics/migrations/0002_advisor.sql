-- The advisor's tables: goals with their progress, the insights regenerated after each
-- sync, the weights feedback teaches, and monthly auto-plans with their slots and the posts
-- publishing made of them. Every table is brand-owned, with row-level security.

-- A goal: a target for one metric (one platform, or all together when platform is null)
-- between the day it was created (start_date, the brand's timezone) and its deadline.
-- due_at is the instant the deadline day ends in the brand's timezone: the deadline worker
-- marks a goal still active then as missed.
CREATE TABLE analytics_goals (
    id           uuid             PRIMARY KEY,
    brand_id     uuid             NOT NULL,
    name         text,
    metric       text             NOT NULL CHECK (metric IN ('reach', 'engagement', 'followers',
                                      'impressions', 'engagementRate')),
    platform     text,
    target       double precision NOT NULL CHECK (target > 0),
    start_date   date             NOT NULL,
    deadline     date             NOT NULL,
    due_at       timestamptz      NOT NULL,
    status       text             NOT NULL CHECK (status IN ('active', 'achieved', 'missed')),
    current      double precision NOT NULL DEFAULT 0,
    measured_at  timestamptz,
    achieved_at  timestamptz,
    missed_at    timestamptz,
    created_by   text,
    created_at   timestamptz      NOT NULL,
    updated_at   timestamptz      NOT NULL
);
CREATE INDEX analytics_goals_brand_idx ON analytics_goals (brand_id, created_at DESC, id DESC);
CREATE INDEX analytics_goals_due_idx ON analytics_goals (due_at) WHERE status = 'active';
SELECT pressroom_enable_tenant_rls('analytics_goals');

-- Active goals whose deadline has passed, across brands (the deadline worker then decides
-- each one in its brand's own transaction, FOR UPDATE SKIP LOCKED, so two replicas never
-- both decide one goal).
CREATE FUNCTION analytics_goals_due(at timestamptz, max_rows integer)
RETURNS TABLE (id uuid, brand_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT g.id, g.brand_id FROM analytics_goals g
    WHERE g.status = 'active' AND g.due_at <= at
    ORDER BY g.due_at
    LIMIT max_rows
$$;

-- The latest generation of insights, one row per (category, type, platform): an upsert
-- keeps an insight's id across regenerations, so feedback and links stay meaningful.
CREATE TABLE analytics_insights (
    id           uuid             PRIMARY KEY,
    brand_id     uuid             NOT NULL,
    category     text             NOT NULL CHECK (category IN ('timing', 'format', 'frequency')),
    type         text             NOT NULL CHECK (type IN ('best_hour', 'best_weekday',
                                      'media_vs_text', 'video_vs_image', 'frequency')),
    platform     text             NOT NULL,
    kind         text             NOT NULL CHECK (kind IN ('insight', 'insufficient_data')),
    title        text             NOT NULL,
    explanation  text             NOT NULL,
    evidence     jsonb            NOT NULL DEFAULT '{}',
    sample_size  integer          NOT NULL,
    confidence   double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    generation   uuid             NOT NULL,
    generated_at timestamptz      NOT NULL,
    UNIQUE (brand_id, category, type, platform)
);
SELECT pressroom_enable_tenant_rls('analytics_insights');

-- What feedback taught: one weight per (brand, category, type), 1.0 when absent.
CREATE TABLE advisor_weights (
    brand_id   uuid             NOT NULL,
    category   text             NOT NULL,
    type       text             NOT NULL,
    weight     double precision NOT NULL CHECK (weight >= 0.1 AND weight <= 5),
    updated_at timestamptz      NOT NULL,
    PRIMARY KEY (brand_id, category, type)
);
SELECT pressroom_enable_tenant_rls('advisor_weights');

CREATE TABLE advisor_feedback (
    id              uuid             PRIMARY KEY,
    brand_id        uuid             NOT NULL,
    insight_id      uuid             NOT NULL,
    category        text             NOT NULL,
    type            text             NOT NULL,
    feedback        text             NOT NULL CHECK (feedback IN ('accepted', 'rejected',
                                         'dismissed')),
    previous_weight double precision NOT NULL,
    new_weight      double precision NOT NULL,
    given_by        text,
    created_at      timestamptz      NOT NULL
);
CREATE INDEX advisor_feedback_brand_idx ON advisor_feedback (brand_id, created_at DESC);
SELECT pressroom_enable_tenant_rls('advisor_feedback');

-- A monthly plan: draft until approved (then publishing creates one draft post per slot).
CREATE TABLE auto_plans (
    id           uuid        PRIMARY KEY,
    brand_id     uuid        NOT NULL,
    month        text        NOT NULL CHECK (month ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    status       text        NOT NULL CHECK (status IN ('draft', 'approved')),
    timezone     text        NOT NULL,
    summary      jsonb       NOT NULL DEFAULT '{}',
    generated_by text,
    generated_at timestamptz NOT NULL,
    approved_by  text,
    approved_at  timestamptz,
    UNIQUE (brand_id, month)
);
CREATE INDEX auto_plans_brand_idx ON auto_plans (brand_id, generated_at DESC, id DESC);
SELECT pressroom_enable_tenant_rls('auto_plans');

CREATE TABLE auto_plan_slots (
    id           uuid             PRIMARY KEY,
    plan_id      uuid             NOT NULL REFERENCES auto_plans (id) ON DELETE CASCADE,
    brand_id     uuid             NOT NULL,
    platform     text             NOT NULL,
    scheduled_at timestamptz      NOT NULL,
    local_time   text             NOT NULL,  -- the wall time in the plan's timezone, ISO
    format       text,
    confidence   double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    reason       text
);
CREATE INDEX auto_plan_slots_plan_idx ON auto_plan_slots (plan_id, scheduled_at);
SELECT pressroom_enable_tenant_rls('auto_plan_slots');

-- The posts publishing made from a plan: the set of post ids, so a post published on
-- several platforms, or an event resent, counts once.
CREATE TABLE auto_plan_posts (
    plan_id      uuid        NOT NULL REFERENCES auto_plans (id) ON DELETE CASCADE,
    post_id      uuid        NOT NULL,
    brand_id     uuid        NOT NULL,
    created_at   timestamptz,
    published_at timestamptz,
    PRIMARY KEY (plan_id, post_id)
);
SELECT pressroom_enable_tenant_rls('auto_plan_posts');

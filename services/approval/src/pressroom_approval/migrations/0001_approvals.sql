-- Approvals are an event-sourced aggregate (one stream per post); post_approvals is its
-- projection (rebuildable). approval_comments is the discussion on an approval (plain
-- rows, audited). approval_brands and approval_members are local copies of the gateway's
-- brand events: the review page's timezone, and who can be notified by role.
CREATE TABLE post_approvals (
    id                uuid        PRIMARY KEY,
    brand_id          uuid        NOT NULL,
    post_id           uuid        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('pending', 'approved', 'rejected',
                          'expired', 'voided')),
    locked            boolean     NOT NULL DEFAULT false,
    submission        integer,
    post_version      integer,
    author            text,
    submitted_by      text,
    platforms         text[]      NOT NULL DEFAULT '{}',
    texts             jsonb       NOT NULL DEFAULT '{}',
    media_by_platform jsonb       NOT NULL DEFAULT '{}',
    scheduled_at      timestamptz,  -- the post's publish time (a late approval may move it)
    requested_at      timestamptz NOT NULL,
    decided_at        timestamptz,
    decided_by        text,
    reason            text,
    comment           text,
    expired_at        timestamptz,
    voided_at         timestamptz,
    published_at      timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    UNIQUE (brand_id, post_id)
);
CREATE INDEX post_approvals_list_idx ON post_approvals (brand_id, created_at DESC, id DESC);
CREATE INDEX post_approvals_status_idx ON post_approvals (brand_id, status, created_at DESC, id DESC);
-- The expiry worker's scan: pending approvals by their post's time.
CREATE INDEX post_approvals_due_idx ON post_approvals (scheduled_at) WHERE status = 'pending';
SELECT pressroom_enable_tenant_rls('post_approvals');

CREATE TABLE approval_comments (
    id           uuid        PRIMARY KEY,
    seq          bigint      GENERATED ALWAYS AS IDENTITY,  -- the order they were written in
    brand_id     uuid        NOT NULL,
    -- No foreign key: post_approvals is a projection, and a rebuild swaps its rows.
    approval_id  uuid        NOT NULL,
    author_id    text        NOT NULL,  -- a user id, or client:<email or link> for a reviewer
    author_email text,
    author_name  text,
    body         text        NOT NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX approval_comments_approval_idx ON approval_comments (approval_id, seq);
SELECT pressroom_enable_tenant_rls('approval_comments');

CREATE TABLE approval_brands (
    brand_id   uuid        PRIMARY KEY,
    name       text        NOT NULL,
    timezone   text        NOT NULL DEFAULT 'UTC',
    updated_at timestamptz NOT NULL
);
SELECT pressroom_enable_tenant_rls('approval_brands');

CREATE TABLE approval_members (
    brand_id   uuid        NOT NULL,
    user_id    text        NOT NULL,
    email      text,
    role       text        NOT NULL CHECK (role IN ('viewer', 'manager', 'admin')),
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (brand_id, user_id)
);
CREATE INDEX approval_members_role_idx ON approval_members (brand_id, role);
SELECT pressroom_enable_tenant_rls('approval_members');

-- The expiry worker finds due approvals across brands. Row-level security keeps the
-- runtime role inside one brand, so the scan runs as this function's owner: it only names
-- candidates; each is then locked, checked and expired in its own brand's transaction.
CREATE FUNCTION approval_expiry_candidates(at timestamptz, max_rows integer)
RETURNS TABLE (id uuid, brand_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT a.id, a.brand_id FROM post_approvals a
    WHERE a.status = 'pending' AND a.scheduled_at <= at
    ORDER BY a.scheduled_at
    LIMIT max_rows
$$;

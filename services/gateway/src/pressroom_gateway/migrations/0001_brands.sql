CREATE TABLE brands (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL,
    timezone    text        NOT NULL,
    settings    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
SELECT pressroom_enable_tenant_rls('brands', 'id');

CREATE TABLE brand_users (
    brand_id  uuid        NOT NULL,
    user_id   text        NOT NULL,
    email     text,
    role      text        NOT NULL CHECK (role IN ('admin', 'manager', 'viewer')),
    added_at  timestamptz NOT NULL,
    PRIMARY KEY (brand_id, user_id)
);
SELECT pressroom_enable_tenant_rls('brand_users');

-- Review links: people without an account review one approval through a signed link
-- (pressroom_approval.review.tokens). The token itself is never stored: it is derived from
-- the row's id, brand and expiry with the signing key. A link is revocable (revoked_at) and
-- decides once (used_at, set in the same transaction as the decision: of two forms posted
-- at once, one decides and the other gets a 409).
CREATE TABLE review_links (
    id            uuid        PRIMARY KEY,
    brand_id      uuid        NOT NULL,
    approval_id   uuid        NOT NULL,
    name          text        NOT NULL,
    email         text,
    created_by    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoked_by    text,
    used_at       timestamptz,
    used_decision text        CHECK (used_decision IN ('approve', 'reject'))
);
CREATE INDEX review_links_approval_idx ON review_links (brand_id, approval_id, created_at, id);
SELECT pressroom_enable_tenant_rls('review_links');

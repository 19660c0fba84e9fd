-- Tombstones of removed members: brand.member_removed.v1 deletes the approval_members row,
-- and without a trace of the removal a resent, older brand.member_added.v1 (a publisher
-- resending under a new event id) would insert the member again. member_added writes only
-- when its event is newer than the removal; a newer member_added clears the tombstone.
-- Holds the user id and a time only (no email).
CREATE TABLE approval_member_removals (
    brand_id   uuid        NOT NULL,
    user_id    text        NOT NULL,
    removed_at timestamptz NOT NULL,
    PRIMARY KEY (brand_id, user_id)
);
SELECT pressroom_enable_tenant_rls('approval_member_removals');

-- The audit log: append-only, hash-chained per brand, personal data kept apart.
--
-- audit_logs holds the chained part of every entry. Nothing in it is personal data: the
-- actor is an account id (or "system", or a pseudonym for a reviewer known only by email)
-- and actor_ref, a keyed hash (HMAC, key outside the database) of the actor's id. The
-- email, IP, user agent and name of an entry live in audit_personal_data, keyed by the
-- entry's id; erasure deletes those rows and the chain still verifies.
--
-- Writers never insert into audit_logs themselves: pressroom_approval.audit.record() inserts
-- into audit_pending, and a deferred constraint trigger seals the transaction's pending rows
-- at COMMIT (audit_seal). Sealing takes the brands' head rows (audit_heads) in brand_id
-- order, so a transaction that writes entries of several brands (a consumer batch) cannot
-- deadlock against another one, and no head lock is held while the transaction does
-- anything else: the heads are the last locks any transaction takes, held only for the
-- commit itself.
CREATE TABLE audit_logs (
    id          uuid        PRIMARY KEY,
    brand_id    uuid        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq > 0),
    at          timestamptz NOT NULL,
    actor_id    text        NOT NULL,
    actor_ref   text        NOT NULL,
    action      text        NOT NULL,
    post_id     uuid,
    approval_id uuid,
    metadata    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    prev_hash   bytea       NOT NULL,
    hash        bytea       NOT NULL,
    UNIQUE (brand_id, seq)
);
CREATE INDEX audit_logs_at_idx ON audit_logs (brand_id, at DESC, id DESC);
CREATE INDEX audit_logs_post_idx ON audit_logs (brand_id, post_id, at DESC, id DESC)
    WHERE post_id IS NOT NULL;
CREATE INDEX audit_logs_actor_idx ON audit_logs (brand_id, actor_ref, at DESC, id DESC);
SELECT pressroom_enable_tenant_rls('audit_logs');

-- Append-only for every role, the owner included. The one way around it is a maintenance
-- transaction run by a superuser on purpose (a legal retention purge):
--   BEGIN; SET LOCAL pressroom.audit_maintenance = 'on'; DELETE FROM audit_logs ...; COMMIT;
-- (the chain then no longer verifies from the purged point, which verify reports).
CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('pressroom.audit_maintenance', true) = 'on'
       AND (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION '% is append-only (%)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Only the sealer (a SECURITY DEFINER function, so it runs as the tables' owner) writes
-- chained rows and moves the heads; the runtime role can neither forge an entry nor move a
-- head (which would break the chain from there on).
CREATE FUNCTION audit_owner_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
        RAISE EXCEPTION '% rows are written by pressroom_approval.audit.record()', TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_logs_sealed_only BEFORE INSERT ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_owner_only();

-- One row per brand: the last sealed entry's seq and hash. Updated only inside audit_seal.
CREATE TABLE audit_heads (
    brand_id uuid   PRIMARY KEY,
    seq      bigint NOT NULL,
    hash     bytea  NOT NULL
);
SELECT pressroom_enable_tenant_rls('audit_heads');
CREATE TRIGGER audit_heads_sealed_only BEFORE INSERT OR UPDATE OR DELETE ON audit_heads
    FOR EACH ROW EXECUTE FUNCTION audit_owner_only();

-- Personal data of an entry: deleted by erasure, never chained.
CREATE TABLE audit_personal_data (
    audit_id   uuid PRIMARY KEY,
    brand_id   uuid NOT NULL,
    actor_ref  text NOT NULL,
    subject    text NOT NULL,  -- the actor's id as given (may be "client:<email>")
    email      text,
    ip         text,
    user_agent text,
    name       text
);
CREATE INDEX audit_personal_data_ref_idx ON audit_personal_data (actor_ref);
CREATE INDEX audit_personal_data_email_idx ON audit_personal_data (lower(email));
SELECT pressroom_enable_tenant_rls('audit_personal_data');

-- Entries written by a transaction that has not committed yet; empty outside one.
CREATE TABLE audit_pending (
    ord         bigserial   PRIMARY KEY,
    tx          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id          uuid        NOT NULL,
    brand_id    uuid        NOT NULL,
    at          timestamptz NOT NULL,
    actor_id    text        NOT NULL,
    actor_ref   text        NOT NULL,
    action      text        NOT NULL,
    post_id     uuid,
    approval_id uuid,
    metadata    jsonb       NOT NULL
);
CREATE INDEX audit_pending_tx_idx ON audit_pending (tx, brand_id, ord);
SELECT pressroom_enable_tenant_rls('audit_pending');

-- The canonical bytes an entry's hash covers (after prev_hash): each field as
-- "<length in characters>:<text>" or "-" for NULL, joined by "|". The time is whole
-- microseconds since 1970 UTC, metadata is jsonb's own text form. pressroom_approval.audit
-- .chain.canonical() builds the same bytes in Python, which verify uses.
CREATE FUNCTION audit_field(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN value IS NULL THEN '-' ELSE length(value)::text || ':' || value END
$$;
CREATE FUNCTION audit_canonical(id uuid, brand_id uuid, seq bigint, at timestamptz,
                                actor_id text, actor_ref text, action text, post_id uuid,
                                approval_id uuid, metadata jsonb)
RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(concat_ws('|',
        audit_field(id::text), audit_field(brand_id::text), audit_field(seq::text),
        audit_field(floor(extract(epoch FROM at) * 1000000)::bigint::text),
        audit_field(actor_id), audit_field(actor_ref), audit_field(action),
        audit_field(post_id::text), audit_field(approval_id::text),
        audit_field(metadata::text)), 'UTF8')
$$;

-- Seals this transaction's pending entries, at COMMIT: brand by brand in brand_id order
-- (the lock order of the heads), entries of a brand in the order they were recorded.
CREATE FUNCTION audit_seal() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public AS $$
DECLARE
    me xid8 := pg_current_xact_id();
    b uuid;
    p record;
    head_seq bigint;
    head_hash bytea;
    h bytea;
BEGIN
    FOR b IN SELECT DISTINCT brand_id FROM audit_pending WHERE tx = me ORDER BY brand_id LOOP
        INSERT INTO audit_heads (brand_id, seq, hash)
        VALUES (b, 0, decode(repeat('00', 32), 'hex'))
        ON CONFLICT (brand_id) DO NOTHING;
        SELECT seq, hash INTO head_seq, head_hash FROM audit_heads WHERE brand_id = b FOR UPDATE;
        FOR p IN SELECT * FROM audit_pending WHERE tx = me AND brand_id = b ORDER BY ord LOOP
            head_seq := head_seq + 1;
            h := sha256(head_hash || audit_canonical(p.id, p.brand_id, head_seq, p.at,
                        p.actor_id, p.actor_ref, p.action, p.post_id, p.approval_id,
                        p.metadata));
            INSERT INTO audit_logs (id, brand_id, seq, at, actor_id, actor_ref, action, post_id,
                                    approval_id, metadata, prev_hash, hash)
            VALUES (p.id, p.brand_id, head_seq, p.at, p.actor_id, p.actor_ref, p.action,
                    p.post_id, p.approval_id, p.metadata, head_hash, h);
            head_hash := h;
        END LOOP;
        UPDATE audit_heads SET seq = head_seq, hash = head_hash WHERE brand_id = b;
    END LOOP;
    DELETE FROM audit_pending WHERE tx = me;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER audit_pending_seal AFTER INSERT ON audit_pending
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_seal();

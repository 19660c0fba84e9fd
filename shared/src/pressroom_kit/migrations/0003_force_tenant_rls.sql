-- Row-level security binds the tables' owner too (FORCE), so a process connected as the
-- owner by mistake sees no brand's rows instead of every brand's. The owner keeps one way
-- through, taken on purpose: a transaction that sets app.all_brands = 'on' (migrations,
-- projection rebuilds: pressroom_kit.db.set_all_brands), or a SECURITY DEFINER function it
-- owns (cross-brand work queues such as webhook_claim_due), as before. The setting opens
-- nothing for any other role: the policy applies to the owner only and checks that the
-- querying user is the owner (a view owned by it, queried by the runtime role, does not).
-- Superusers and BYPASSRLS roles skip policies whatever is set; services refuse to run as
-- them (pressroom_kit.db.check_runtime_role).

CREATE FUNCTION pressroom_all_brands(owner name) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT current_user = owner
       AND (current_setting('app.all_brands', true) = 'on' OR session_user <> current_user)
$$;

CREATE FUNCTION pressroom_force_tenant_rls(target regclass) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    owner name := (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = target);
BEGIN
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
    EXECUTE format('DROP POLICY IF EXISTS owner_maintenance ON %s', target);
    EXECUTE format(
        'CREATE POLICY owner_maintenance ON %s TO %I '
        'USING (pressroom_all_brands(%L)) WITH CHECK (pressroom_all_brands(%L))',
        target, owner, owner, owner);
END $$;

CREATE OR REPLACE FUNCTION pressroom_enable_tenant_rls(target regclass,
                                                       brand_column text DEFAULT 'brand_id')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
    EXECUTE format(
        'CREATE POLICY tenant_isolation ON %s USING (%I = pressroom_current_brand()) '
        'WITH CHECK (%I = pressroom_current_brand())',
        target, brand_column, brand_column);
    PERFORM pressroom_force_tenant_rls(target);
END $$;

-- Tables made before this migration.
SELECT pressroom_force_tenant_rls(p.polrelid)
FROM pg_policy p
WHERE p.polname = 'tenant_isolation';

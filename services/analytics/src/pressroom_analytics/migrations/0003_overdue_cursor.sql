-- The timeout worker pages overdue syncs by (started_at, id): a sync whose ending fails
-- stays running and is tried again next round, and never hides the syncs behind it (the
-- first page would otherwise return it first every time). The older function stays for
-- replicas of the previous version during a rolling upgrade.
CREATE FUNCTION analytics_overdue_syncs_after(
    cutoff timestamptz, after_started timestamptz, after_id uuid, max_rows integer
)
RETURNS TABLE (id uuid, brand_id uuid, started_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    SELECT l.id, l.brand_id, l.started_at FROM analytics_sync_logs l
    WHERE l.status = 'running' AND l.started_at < cutoff
      AND (l.started_at, l.id) > (after_started, after_id)
    ORDER BY l.started_at, l.id
    LIMIT max_rows
$$;

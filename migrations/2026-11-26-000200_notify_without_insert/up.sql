-- NOTIFY serializes committing transactions (PostgreSQL takes a global lock on its notification
-- queue at commit): on every insert it cut POST /deploy from 6,270 to 4,060 requests/s with p99
-- 17 → 25 ms. New rows are no longer announced by this trigger; the accepting node claims them
-- itself and, when it has no free capacity, announces pending work at most every 100 ms
-- (see the supervisor). Cancels, releases and queued destroys are still announced here.
CREATE OR REPLACE FUNCTION multicloud_notify() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = 'pending' AND OLD.status IS DISTINCT FROM 'pending' THEN
        PERFORM pg_notify('multicloud', 'pending:' || NEW.deployment_id);
    ELSIF TG_OP = 'UPDATE' AND NEW.status = 'running' THEN
        IF NEW.cancel_requested_at IS NOT NULL AND OLD.cancel_requested_at IS NULL THEN
            PERFORM pg_notify('multicloud', 'cancel:' || NEW.deployment_id);
        ELSIF NEW.lease_expires_at <= now() AND OLD.lease_expires_at > now() THEN
            PERFORM pg_notify('multicloud', 'released:' || NEW.deployment_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER deployments_notify ON deployments;
CREATE TRIGGER deployments_notify
    AFTER UPDATE OF status, cancel_requested_at, lease_expires_at ON deployments
    FOR EACH ROW EXECUTE FUNCTION multicloud_notify();

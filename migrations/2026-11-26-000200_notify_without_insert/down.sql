CREATE OR REPLACE FUNCTION multicloud_notify() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'pending' AND (TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM 'pending') THEN
        PERFORM pg_notify('multicloud', 'pending:' || NEW.deployment_id);
    ELSIF NEW.status = 'running' AND TG_OP = 'UPDATE' THEN
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
    AFTER INSERT OR UPDATE OF status, cancel_requested_at, lease_expires_at ON deployments
    FOR EACH ROW EXECUTE FUNCTION multicloud_notify();

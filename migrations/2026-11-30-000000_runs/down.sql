DROP TRIGGER runs_notify ON runs;
DROP FUNCTION multicloud_run_notify();
CREATE FUNCTION multicloud_notify() RETURNS trigger AS $$
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
CREATE TRIGGER deployments_notify
    AFTER UPDATE OF status, cancel_requested_at, lease_expires_at ON deployments
    FOR EACH ROW EXECUTE FUNCTION multicloud_notify();
DROP INDEX deployment_logs_run_idx;
ALTER TABLE deployment_logs DROP CONSTRAINT deployment_logs_run_fk;
ALTER TABLE deployment_logs DROP COLUMN run_id;
DROP TABLE runs;
DROP TABLE template_sources;
DROP INDEX deployments_drift_idx;
CREATE INDEX deployments_lease_idx ON deployments (lease_expires_at) WHERE status = 'running';
ALTER TABLE deployments DROP COLUMN drift;
ALTER TABLE deployments DROP COLUMN applied_run_id;
UPDATE deployments SET status = 'pending' WHERE status = 'planned';
ALTER TABLE deployments DROP CONSTRAINT deployments_status_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check
    CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'destroyed'));

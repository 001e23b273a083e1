DROP TRIGGER deployments_notify ON deployments;
DROP FUNCTION multicloud_notify();

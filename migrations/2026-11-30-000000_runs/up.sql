-- Deployments become long-lived stacks with a history of runs (design.md §10). A run is one
-- operation on a deployment (deploy, plan, update, destroy, drift_check); the queue, leases,
-- cancel and recovery move from deployments to runs. The deployment row keeps the current
-- status, parameters and outputs, mirrored from its applying runs in the same transaction, so
-- every endpoint that exists reads it as before.

ALTER TABLE deployments DROP CONSTRAINT deployments_status_check;
ALTER TABLE deployments ADD CONSTRAINT deployments_status_check
    CHECK (status IN ('pending', 'running', 'planned', 'completed', 'failed', 'cancelled', 'destroyed'));
-- The last run whose apply completed (its parameters and outputs are the deployment's).
ALTER TABLE deployments ADD COLUMN applied_run_id TEXT;
-- The result of the last drift check: {status, checked_at, run_id, resources}.
ALTER TABLE deployments ADD COLUMN drift JSONB;
-- The queue is in runs now. A deployment accepted with `auto_apply` gets its deploy run when a
-- runner claims it (`POST /deploy` writes one row, as before: the run's row would halve the
-- accept rate), so pending deployments stay indexed; leases are the runs'.
DROP INDEX deployments_lease_idx;
CREATE INDEX deployments_drift_idx ON deployments ((drift ->> 'status'), created_at DESC)
    WHERE drift IS NOT NULL;

-- The exact template sources runs ran, by sha256 (a destroy, drift check or plan of a deployment
-- uses the source it was last applied with, even after the file changed or was removed).
CREATE TABLE template_sources (
    hash       TEXT PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
    source     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    run_id              TEXT PRIMARY KEY CHECK (run_id ~ '^run-[0-9a-f]{12,}$'),
    -- FIFO order of the runs of a deployment (created_at ties within one transaction).
    queue_seq           BIGSERIAL NOT NULL,
    deployment_id       TEXT NOT NULL REFERENCES deployments (deployment_id) ON DELETE CASCADE,
    kind                TEXT NOT NULL
        CHECK (kind IN ('deploy', 'plan', 'update', 'destroy', 'drift_check')),
    status              TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'planned', 'completed', 'no_changes', 'failed',
                          'cancelled', 'discarded')),
    -- false: the run stops at `planned` until POST /deployments/{id}/apply (or discard).
    auto_apply          BOOLEAN NOT NULL DEFAULT true,
    -- The plan was confirmed: the run applies its saved plan.
    approved_at         TIMESTAMPTZ,
    parameters          JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- The template source the run ran (sha256 in template_sources), and for an update the one
    -- the deployment was applied with when it was queued; `applied` or `latest`: which one an
    -- update plans with.
    template_hash       TEXT REFERENCES template_sources (hash),
    base_template_hash  TEXT REFERENCES template_sources (hash),
    template_version    TEXT CHECK (template_version IN ('applied', 'latest')),
    plan_summary        JSONB,
    -- The saved plan (terraform's plan file), encrypted with the secrets key.
    saved_plan          BYTEA,
    outputs             JSONB,
    error_message       TEXT,
    progress            SMALLINT NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts            INTEGER NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_expires_at    TIMESTAMPTZ,
    cancel_requested_at TIMESTAMPTZ,
    requested_by        TEXT,
    approved_by         TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at          TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX runs_deployment_idx ON runs (deployment_id, queue_seq DESC);
CREATE INDEX runs_pending_idx ON runs (queue_seq) WHERE status = 'pending';
-- One deploy run per deployment (made once, by whichever node claims it first).
CREATE UNIQUE INDEX runs_one_deploy_idx ON runs (deployment_id) WHERE kind = 'deploy';
CREATE INDEX runs_lease_idx ON runs (lease_expires_at) WHERE status = 'running';

-- Every existing deployment gets the runs it had: its deploy run and, when a destroy was
-- queued, a destroy run after it. Ids are derived from the deployment id so the migration is
-- deterministic.
INSERT INTO runs (run_id, deployment_id, kind, status, parameters, outputs, error_message,
                  progress, attempts, lease_owner, lease_expires_at, cancel_requested_at,
                  created_at, started_at, completed_at, updated_at)
SELECT 'run-' || substr(md5(d.deployment_id || '/deploy'), 1, 16), d.deployment_id, 'deploy',
       CASE WHEN d.operation = 'deploy' THEN d.status
            WHEN d.outputs IS NOT NULL THEN 'completed' ELSE 'failed' END,
       d.parameters, d.outputs,
       CASE WHEN d.operation = 'deploy' THEN d.error_message END,
       CASE WHEN d.operation = 'deploy' THEN d.progress ELSE 100 END,
       CASE WHEN d.operation = 'deploy' THEN d.attempts ELSE 1 END,
       CASE WHEN d.operation = 'deploy' THEN d.lease_owner END,
       CASE WHEN d.operation = 'deploy' THEN d.lease_expires_at END,
       CASE WHEN d.operation = 'deploy' THEN d.cancel_requested_at END,
       d.created_at,
       CASE WHEN d.operation = 'deploy' THEN d.started_at ELSE d.created_at END,
       CASE WHEN d.operation = 'deploy' THEN d.completed_at ELSE d.created_at END,
       d.updated_at
FROM deployments d ORDER BY d.created_at, d.deployment_id;

INSERT INTO runs (run_id, deployment_id, kind, status, parameters, error_message, progress,
                  attempts, lease_owner, lease_expires_at, cancel_requested_at, created_at,
                  started_at, completed_at, updated_at)
SELECT 'run-' || substr(md5(d.deployment_id || '/destroy'), 1, 16), d.deployment_id, 'destroy',
       CASE WHEN d.status = 'destroyed' THEN 'completed' ELSE d.status END,
       d.parameters, d.error_message, d.progress, d.attempts, d.lease_owner, d.lease_expires_at,
       d.cancel_requested_at, COALESCE(d.started_at, d.updated_at), d.started_at, d.completed_at,
       d.updated_at
FROM deployments d WHERE d.operation = 'destroy' ORDER BY d.created_at, d.deployment_id;

UPDATE deployments d SET applied_run_id = r.run_id
FROM runs r
WHERE r.deployment_id = d.deployment_id AND r.kind = 'deploy' AND r.status = 'completed';

-- Log lines belong to a run. A destroy's lines start at its "run started" line.
ALTER TABLE deployment_logs ADD COLUMN run_id TEXT;
UPDATE deployment_logs l SET run_id = 'run-' || substr(md5(l.deployment_id || CASE
        WHEN d.operation = 'destroy' AND l.seq >= COALESCE((
            SELECT min(s.seq) FROM deployment_logs s
            WHERE s.deployment_id = l.deployment_id AND s.stream = 'system'
              AND s.line LIKE 'run started on % operation destroy)'), 9223372036854775807)
        THEN '/destroy' ELSE '/deploy' END), 1, 16)
FROM deployments d WHERE d.deployment_id = l.deployment_id;
ALTER TABLE deployment_logs ALTER COLUMN run_id SET NOT NULL;
ALTER TABLE deployment_logs ADD CONSTRAINT deployment_logs_run_fk
    FOREIGN KEY (run_id) REFERENCES runs (run_id) ON DELETE CASCADE;
CREATE INDEX deployment_logs_run_idx ON deployment_logs (run_id, seq);

-- The queue lives in runs now: its notifications come from there ('pending:<run id>' when an
-- existing run becomes pending again, 'cancel:<run id>', 'released:<run id>').
DROP TRIGGER deployments_notify ON deployments;
DROP FUNCTION multicloud_notify();
CREATE FUNCTION multicloud_run_notify() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = 'pending' AND OLD.status IS DISTINCT FROM 'pending' THEN
        PERFORM pg_notify('multicloud', 'pending:' || NEW.run_id);
    ELSIF TG_OP = 'UPDATE' AND NEW.status = 'running' THEN
        IF NEW.cancel_requested_at IS NOT NULL AND OLD.cancel_requested_at IS NULL THEN
            PERFORM pg_notify('multicloud', 'cancel:' || NEW.run_id);
        ELSIF NEW.lease_expires_at <= now() AND OLD.lease_expires_at > now() THEN
            PERFORM pg_notify('multicloud', 'released:' || NEW.run_id);
        END IF;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER runs_notify
    AFTER UPDATE OF status, cancel_requested_at, lease_expires_at ON runs
    FOR EACH ROW EXECUTE FUNCTION multicloud_run_notify();

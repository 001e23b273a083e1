-- Teams (design.md §10): who did what (audit_events), and signed webhooks delivered from an
-- outbox written in the same transaction as the status change they announce.

-- The token name that asked for a deployment; a runner copies it onto the deploy run it makes.
ALTER TABLE deployments ADD COLUMN requested_by TEXT;

-- One row per state-changing request (allowed or refused) and per refused read (401/403).
-- Never parameter values, bodies or tokens: names, ids, outcomes.
CREATE TABLE audit_events (
    audit_id    BIGSERIAL PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    -- The token's name; 'anonymous' when the daemon has no tokens; '-' when none matched.
    actor       TEXT NOT NULL,
    role        TEXT CHECK (role IN ('viewer', 'operator', 'approver', 'admin')),
    -- What was asked, e.g. deployment.create, run.apply, webhook.delete.
    action      TEXT NOT NULL,
    -- The route, e.g. 'POST /deployments/{id}/apply'.
    route       TEXT NOT NULL,
    -- The deployment, webhook or resource group acted on, and the run when there is one.
    target      TEXT,
    run_id      TEXT,
    -- ok, or why not: unauthorized, forbidden, not_found, conflict, invalid, rate_limited, ...
    outcome     TEXT NOT NULL,
    status_code SMALLINT NOT NULL,
    error_code  TEXT,
    request_id  TEXT,
    client_addr TEXT
);
-- Written by every accepted deployment: no B-tree beyond the key (each one measurably slowed
-- POST /deploy). Listings page backwards on audit_id; time ranges and retention use a BRIN
-- index (rows arrive in time order), which costs next to nothing to keep.
CREATE INDEX audit_events_at_idx ON audit_events USING brin (at);

CREATE TABLE webhooks (
    webhook_id    TEXT PRIMARY KEY CHECK (webhook_id ~ '^wh-[0-9a-f]{16}$'),
    url           TEXT NOT NULL,
    events        TEXT[] NOT NULL,
    -- The signing secret, encrypted with the secrets key; never returned.
    secret_sealed BYTEA NOT NULL,
    created_by    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The outbox: one row per event, written by the triggers below in the transaction that made
-- the change, only when some webhook subscribes to its type.
CREATE TABLE webhook_events (
    event_id      TEXT PRIMARY KEY,
    event_type    TEXT NOT NULL,
    deployment_id TEXT,
    run_id        TEXT,
    payload       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhook_events_created_idx ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
    delivery_id      BIGSERIAL PRIMARY KEY,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL REFERENCES webhook_events (event_id) ON DELETE CASCADE,
    status           TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    last_attempt_at  TIMESTAMPTZ,
    last_status_code SMALLINT,
    last_error       TEXT,
    response_excerpt TEXT,
    delivered_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (webhook_id, delivery_id DESC);

-- Writes one event (and a delivery per subscribed webhook) and wakes the delivering nodes.
-- The payload is a summary: ids, names, statuses, plan counts, never parameters or outputs.
CREATE FUNCTION multicloud_webhook_event(kind TEXT, dep TEXT, run TEXT, run_status TEXT) RETURNS void AS $$
DECLARE
    ev TEXT;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE kind = ANY (events)) THEN
        RETURN;
    END IF;
    ev := 'evt-' || md5(random()::text || clock_timestamp()::text || kind || coalesce(run, dep));
    INSERT INTO webhook_events (event_id, event_type, deployment_id, run_id, payload)
    SELECT ev, kind, dep, run, jsonb_build_object(
        'id', ev,
        'type', kind,
        'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'deployment', (SELECT jsonb_build_object(
                'deployment_id', d.deployment_id, 'template_name', d.template_name,
                'provider_type', d.provider_type, 'resource_group', d.resource_group,
                'status', d.status, 'operation', d.operation, 'drift', d.drift ->> 'status')
            FROM deployments d WHERE d.deployment_id = dep),
        'run', (SELECT jsonb_build_object(
                'run_id', r.run_id, 'kind', r.kind, 'status', coalesce(run_status, r.status),
                'auto_apply', r.auto_apply, 'requested_by', r.requested_by,
                'approved_by', r.approved_by,
                'plan', CASE WHEN r.plan_summary IS NULL THEN NULL ELSE jsonb_build_object(
                    'add', r.plan_summary -> 'add', 'change', r.plan_summary -> 'change',
                    'destroy', r.plan_summary -> 'destroy') END,
                'error_message', r.error_message,
                'created_at', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'completed_at', to_char(r.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
            FROM runs r WHERE r.run_id = run));
    INSERT INTO webhook_deliveries (webhook_id, event_id)
    SELECT webhook_id, ev FROM webhooks WHERE kind = ANY (events);
    PERFORM pg_notify('multicloud', 'webhook:' || ev);
END
$$ LANGUAGE plpgsql;

-- Deferred to the end of the transaction, so the payload shows the deployment as that
-- transaction left it (a run's status and its deployment's mirror change in one transaction).
CREATE FUNCTION multicloud_run_event() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'pending' THEN
            PERFORM multicloud_webhook_event('run.pending', NEW.deployment_id, NEW.run_id, NEW.status);
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        PERFORM multicloud_webhook_event(CASE NEW.status
                WHEN 'planned' THEN 'run.planned'
                WHEN 'completed' THEN 'run.completed'
                WHEN 'no_changes' THEN 'run.completed'
                WHEN 'failed' THEN 'run.failed'
                WHEN 'cancelled' THEN 'run.cancelled'
            END, NEW.deployment_id, NEW.run_id, NEW.status)
        WHERE NEW.status IN ('planned', 'completed', 'no_changes', 'failed', 'cancelled');
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER runs_webhook_event
    AFTER INSERT OR UPDATE OF status ON runs
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION multicloud_run_event();

CREATE FUNCTION multicloud_deployment_event() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'destroyed' AND OLD.status IS DISTINCT FROM 'destroyed' THEN
        PERFORM multicloud_webhook_event('deployment.destroyed', NEW.deployment_id,
            (SELECT r.run_id FROM runs r WHERE r.deployment_id = NEW.deployment_id
               AND r.kind = 'destroy' ORDER BY r.queue_seq DESC LIMIT 1), NULL);
    END IF;
    IF NEW.drift ->> 'status' = 'drifted'
       AND (OLD.drift IS NULL OR OLD.drift ->> 'status' IS DISTINCT FROM 'drifted') THEN
        PERFORM multicloud_webhook_event('deployment.drifted', NEW.deployment_id,
            NEW.drift ->> 'run_id', NULL);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER deployments_webhook_event
    AFTER UPDATE OF status, drift ON deployments
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION multicloud_deployment_event();

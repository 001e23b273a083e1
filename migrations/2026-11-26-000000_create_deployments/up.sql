-- The queue and the source of truth: one row per deployment, its log lines, and where its
-- terraform state lives. Status and operation are text with CHECK constraints so that an
-- unknown value is an error in Rust (TryFrom), never a panic.
CREATE TABLE deployments (
    deployment_id       TEXT PRIMARY KEY CHECK (deployment_id ~ '^deploy-[0-9a-f]{12,}$'),
    provider_type       TEXT NOT NULL,
    cloud_provider      TEXT NOT NULL,
    template_name       TEXT NOT NULL,
    resource_group      TEXT,
    subscription_id     TEXT,
    location            TEXT,
    status              TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'destroyed')),
    operation           TEXT NOT NULL DEFAULT 'deploy' CHECK (operation IN ('deploy', 'destroy')),
    parameters          JSONB NOT NULL DEFAULT '{}'::jsonb,
    outputs             JSONB,
    error_message       TEXT,
    progress            SMALLINT NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    attempts            INTEGER NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_expires_at    TIMESTAMPTZ,
    cancel_requested_at TIMESTAMPTZ,
    idempotency_key     TEXT UNIQUE,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at          TIMESTAMPTZ,
    completed_at        TIMESTAMPTZ,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Listing: newest first with a (created_at, deployment_id) keyset cursor.
CREATE INDEX deployments_created_at_idx ON deployments (created_at DESC, deployment_id DESC);
CREATE INDEX deployments_status_idx ON deployments (status, created_at DESC);
CREATE INDEX deployments_template_idx ON deployments (template_name, created_at DESC);
CREATE INDEX deployments_provider_idx ON deployments (provider_type, created_at DESC);
CREATE INDEX deployments_resource_group_idx ON deployments (resource_group, created_at DESC);
-- Claiming: the oldest pending rows, and running rows whose lease ran out.
CREATE INDEX deployments_pending_idx ON deployments (created_at) WHERE status = 'pending';
CREATE INDEX deployments_lease_idx ON deployments (lease_expires_at) WHERE status = 'running';

-- Append-only log lines, in order per deployment.
CREATE TABLE deployment_logs (
    deployment_id TEXT NOT NULL REFERENCES deployments (deployment_id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    stream        TEXT NOT NULL,
    line          TEXT NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);

-- Where each deployment's terraform state is kept.
CREATE TABLE terraform_states (
    deployment_id  TEXT PRIMARY KEY REFERENCES deployments (deployment_id) ON DELETE CASCADE,
    backend_type   TEXT NOT NULL,
    backend_config JSONB NOT NULL DEFAULT '{}'::jsonb,
    workspace      TEXT NOT NULL,
    state_version  INTEGER NOT NULL DEFAULT 0,
    last_modified  TIMESTAMPTZ NOT NULL DEFAULT now()
);

//! Domain types and rules: deployments, their runs and statuses, provider types, plan
//! summaries, roles and audit entries, webhooks.
//! No diesel, actix or HTTP here; the other layers convert to and from these.

mod access;
mod deployment;
mod plan;
mod provider;
mod run;
mod webhook;

pub use access::{AuditEntry, AuditEvent, AuditFilter, Caller, Role};
pub use deployment::{
    CancelResult, Deployment, DeploymentId, DeploymentStatus, ListFilter, LogLine, NewDeployment,
    NewLogLine, Operation, RunOutcome, UnknownValue,
};
pub use plan::{ChangeAction, PlanSummary, ResourceChange};
pub use provider::ProviderType;
pub use run::{
    DriftStatus, NewRun, Run, RunId, RunKind, RunPhase, RunStatus, TemplateVersion, mirrored_status,
};
pub use webhook::{
    AttemptResult, Delivery, DueDelivery, EventType, NewWebhook, Webhook, WebhookId,
};

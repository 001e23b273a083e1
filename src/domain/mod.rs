//! Domain types and rules: deployments, their runs and statuses, provider types and plan
//! summaries.
//! No diesel, actix or HTTP here; the other layers convert to and from these.

mod deployment;
mod plan;
mod provider;
mod run;

pub use deployment::{
    CancelResult, Deployment, DeploymentId, DeploymentStatus, ListFilter, LogLine, NewDeployment,
    NewLogLine, Operation, RunOutcome, UnknownValue,
};
pub use plan::{ChangeAction, PlanSummary, ResourceChange};
pub use provider::ProviderType;
pub use run::{
    DriftStatus, NewRun, Run, RunId, RunKind, RunPhase, RunStatus, TemplateVersion, mirrored_status,
};

//! Domain types and rules: deployments, their statuses, provider types and plan summaries.
//! No diesel, actix or HTTP here; the other layers convert to and from these.

mod deployment;
mod plan;
mod provider;

pub use deployment::{
    Deployment, DeploymentId, DeploymentStatus, LogLine, NewDeployment, NewLogLine, Operation,
    RunOutcome, UnknownValue,
};
pub use plan::{ChangeAction, PlanSummary, ResourceChange};
pub use provider::ProviderType;

//! Domain types and rules: deployments, their statuses and provider types.
//! No diesel, actix or HTTP here; the other layers convert to and from these.

mod deployment;
mod provider;

pub use deployment::{
    Deployment, DeploymentId, DeploymentStatus, LogLine, NewDeployment, NewLogLine, Operation,
    RunOutcome, UnknownValue,
};
pub use provider::ProviderType;

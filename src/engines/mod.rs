//! Engines run one deployment operation to the end. They are plain async code (no actors):
//! the deployment actor hands them a [`RunJob`], receives [`RunEvent`]s (log lines, progress)
//! through a channel, may ask them to stop through a watch channel, and gets a result.

pub mod arm;
pub mod process;
pub mod terraform;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tokio::sync::{mpsc, watch};

use crate::catalog::Template;
use crate::domain::{Deployment, PlanSummary, ProviderType, Run};

/// Everything an engine needs for one run.
#[derive(Debug, Clone)]
pub struct RunJob {
    /// The deployment as this run sees it: the run's parameters (opened), its operation
    /// (destroy, or deploy for every run that converges on the template) and attempt.
    pub deployment: Deployment,
    pub run: Run,
    /// The plan a confirmed run applies (opened), for `RunPhase::ApplySaved`.
    pub saved_plan: Option<Vec<u8>>,
    /// The template source to run instead of the template file: the one the deployment was
    /// applied with (terraform: the `.tf` source; azure: the ARM JSON).
    pub source: Option<String>,
    pub template: Arc<Template>,
    /// `<data_dir>/workspaces/<deployment_id>`.
    pub workspace: PathBuf,
    pub timeout: Duration,
    pub cancel_grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Lines the daemon itself writes into a run's log (steps starting, ...).
    System,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::System => "system",
        }
    }
}

/// What an engine reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    Log {
        stream: Stream,
        line: String,
    },
    Progress(u8),
    /// The exact template source the run runs (kept, so later runs can use it again).
    Source(String),
}

pub type EventSender = mpsc::UnboundedSender<RunEvent>;

/// Why a run is asked to stop before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Cancel,
    Shutdown,
}

pub type StopSignal = watch::Receiver<Option<StopReason>>;

/// What a successful run gives back.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineOutput {
    Deployed {
        outputs: serde_json::Value,
    },
    Destroyed,
    /// What a plan (or a drift check) found, and the saved plan to apply when the run is
    /// confirmed (none for speculative plans and drift checks).
    Planned {
        summary: PlanSummary,
        plan: Option<Vec<u8>>,
    },
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EngineError {
    /// The tool reported an error; the text is what the user needs to read.
    #[error("{0}")]
    Failed(String),
    #[error("timed out after {0} s")]
    TimedOut(u64),
    #[error("stopped: {0:?}")]
    Stopped(StopReason),
    /// The engine can't run here at all (missing binary, unsupported provider).
    #[error("{0}")]
    Unavailable(String),
    /// Something the run depends on was briefly away (terraform's state backend in PostgreSQL
    /// during an outage): the run is given back and retried, not failed.
    #[error("{0}")]
    Transient(String),
}

/// A deployment engine. Object-safe so the registry can hold any of them.
pub trait Engine {
    fn run(
        &self,
        job: RunJob,
        events: EventSender,
        stop: StopSignal,
    ) -> LocalBoxFuture<'static, Result<EngineOutput, EngineError>>;
}

/// The engines of this process, by provider type.
pub struct Engines {
    pub terraform: terraform::TerraformEngine,
    pub arm: arm::ArmEngine,
}

impl Engines {
    pub fn for_provider(&self, provider_type: ProviderType) -> Result<&dyn Engine, EngineError> {
        match provider_type {
            ProviderType::TerraformAws
            | ProviderType::TerraformGcp
            | ProviderType::TerraformAzure => Ok(&self.terraform),
            ProviderType::Azure => Ok(&self.arm),
        }
    }
}

/// Replaces every occurrence of a secret in `text`. Short values (under 4 characters) are left
/// alone: masking "1" or "us" everywhere would destroy the log without protecting anything.
pub fn mask_secrets(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "********");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let secrets = vec!["hunter22".to_string(), "ab".to_string()];
        assert_eq!(mask_secrets("pw=hunter22 ab", &secrets), "pw=******** ab");
    }
}

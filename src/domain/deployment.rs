use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;

use super::{PlanSummary, ProviderType, RunStatus};

/// A stored value that is not one this version knows (a newer daemon wrote it, or a hand edit).
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// `deploy-` followed by lowercase hex: 16 random hex digits for new ids, at least 12 accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DeploymentId(String);

impl DeploymentId {
    pub fn generate() -> DeploymentId {
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        DeploymentId(format!("deploy-{hex}"))
    }

    /// Accepts only well-formed ids, so a path such as `../x` never reaches the database or disk.
    pub fn parse(value: &str) -> Option<DeploymentId> {
        let hex = value.strip_prefix("deploy-")?;
        let ok = hex.len() >= 12
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| DeploymentId(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The seven status words of the original service minus none: design.md §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    Pending,
    Running,
    /// Its first run planned and waits for a decision (`auto_apply: false`).
    Planned,
    Completed,
    Failed,
    Cancelled,
    Destroyed,
}

impl DeploymentStatus {
    pub const ALL: [DeploymentStatus; 7] = [
        DeploymentStatus::Pending,
        DeploymentStatus::Running,
        DeploymentStatus::Planned,
        DeploymentStatus::Completed,
        DeploymentStatus::Failed,
        DeploymentStatus::Cancelled,
        DeploymentStatus::Destroyed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentStatus::Pending => "pending",
            DeploymentStatus::Running => "running",
            DeploymentStatus::Planned => "planned",
            DeploymentStatus::Completed => "completed",
            DeploymentStatus::Failed => "failed",
            DeploymentStatus::Cancelled => "cancelled",
            DeploymentStatus::Destroyed => "destroyed",
        }
    }

    /// A run has ended; nothing moves it except a new run. (A planned deployment waits for a
    /// decision: nothing happens to it by itself either.)
    pub fn is_terminal(self) -> bool {
        !matches!(self, DeploymentStatus::Pending | DeploymentStatus::Running)
    }

    /// The transitions of design.md §3. Every write in the database is guarded by the expected
    /// previous status; this function states the same rules for the code that decides.
    pub fn can_transition_to(self, next: DeploymentStatus) -> bool {
        use DeploymentStatus::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Pending, Cancelled)
                | (Running, Completed | Failed | Cancelled | Destroyed | Planned)
                | (Running, Pending) // lease released on shutdown, run again later
                | (Planned, Pending | Cancelled) // applied or discarded
                | (Completed | Failed | Cancelled, Pending) // destroy or update queued
        )
    }
}

impl FromStr for DeploymentStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeploymentStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "status",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Deploy,
    Destroy,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Deploy => "deploy",
            Operation::Destroy => "destroy",
        }
    }
}

impl FromStr for Operation {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deploy" => Ok(Operation::Deploy),
            "destroy" => Ok(Operation::Destroy),
            _ => Err(UnknownValue {
                kind: "operation",
                value: s.to_string(),
            }),
        }
    }
}

/// A deployment as the rest of the program sees it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub id: DeploymentId,
    pub provider_type: ProviderType,
    pub template_name: String,
    pub resource_group: Option<String>,
    pub subscription_id: Option<String>,
    pub location: Option<String>,
    /// The management group of a management-group-scope Azure deployment.
    pub management_group: Option<String>,
    pub status: DeploymentStatus,
    pub operation: Operation,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub outputs: Option<serde_json::Value>,
    pub error_message: Option<String>,
    pub progress: u8,
    pub attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// The run whose apply the deployment's parameters and outputs come from.
    pub applied_run_id: Option<String>,
    /// The last drift check's result.
    pub drift: Option<serde_json::Value>,
}

impl Deployment {
    /// Seconds from start to completion, or to now while the run goes on.
    pub fn duration_seconds(&self) -> Option<f64> {
        let start = self.started_at?;
        let end = self.completed_at.unwrap_or_else(Utc::now);
        Some(((end - start).num_milliseconds().max(0) as f64) / 1000.0)
    }
}

/// What `POST /deploy` inserts.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub id: DeploymentId,
    pub provider_type: ProviderType,
    pub template_name: String,
    pub resource_group: Option<String>,
    pub subscription_id: Option<String>,
    pub location: Option<String>,
    /// The management group of a management-group-scope Azure deployment.
    pub management_group: Option<String>,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub idempotency_key: Option<String>,
    /// The name of the token that asked for it.
    pub requested_by: Option<String>,
}

/// One stored line of a run's output.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub seq: i64,
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

/// A line a run produced, not stored yet: `at` is when it was read, not when it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogLine {
    pub at: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

/// Filters of `GET /deployments`; all optional. The cursor is the last row of the previous page.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub provider_type: Option<String>,
    pub template_name: Option<String>,
    pub resource_group: Option<String>,
    pub drift: Option<super::DriftStatus>,
    pub before: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

/// The result of a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// It was pending (or waited for a decision) and is cancelled now.
    Cancelled,
    /// It is running; its owner was asked to stop it.
    Requested,
    /// It had already finished.
    AlreadyFinished,
    NotFound,
}

/// How a run ended (or stopped to wait for a decision), as the deployment actor reports it to
/// persistence.
#[derive(Debug, Clone)]
pub enum RunOutcome {
    /// Applied (deploy, update): the deployment's outputs now.
    Completed {
        outputs: serde_json::Value,
    },
    Destroyed,
    /// Planned; waits for apply or discard. `plan` is the saved plan to apply (sealed).
    Planned {
        summary: PlanSummary,
        plan: Vec<u8>,
    },
    /// The plan of a gated run found nothing to change: nothing to approve.
    NoChanges {
        summary: PlanSummary,
    },
    /// A speculative plan's result.
    Speculative {
        summary: PlanSummary,
    },
    /// A drift check's result: what differs between the cloud and the state.
    DriftChecked {
        summary: PlanSummary,
    },
    Failed {
        error: String,
    },
    Cancelled {
        reason: String,
    },
}

impl RunOutcome {
    pub fn status(&self) -> RunStatus {
        match self {
            RunOutcome::Completed { .. }
            | RunOutcome::Destroyed
            | RunOutcome::DriftChecked { .. } => RunStatus::Completed,
            RunOutcome::Speculative { summary } if !summary.is_empty() => RunStatus::Completed,
            RunOutcome::Speculative { .. } | RunOutcome::NoChanges { .. } => RunStatus::NoChanges,
            RunOutcome::Planned { .. } => RunStatus::Planned,
            RunOutcome::Failed { .. } => RunStatus::Failed,
            RunOutcome::Cancelled { .. } => RunStatus::Cancelled,
        }
    }

    /// The plan summary it carries, if any.
    pub fn summary(&self) -> Option<&PlanSummary> {
        match self {
            RunOutcome::Planned { summary, .. }
            | RunOutcome::NoChanges { summary }
            | RunOutcome::Speculative { summary }
            | RunOutcome::DriftChecked { summary } => Some(summary),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_generated_and_parsed_strictly() {
        let id = DeploymentId::generate();
        assert_eq!(id.as_str().len(), "deploy-".len() + 16);
        assert_eq!(DeploymentId::parse(id.as_str()), Some(id));
        for bad in [
            "deploy-",
            "deploy-abc",
            "deploy-ABCDEF123456",
            "x-0123456789ab",
            "deploy-../../etc",
            "deploy-0123456789ab\0",
        ] {
            assert_eq!(DeploymentId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn transitions_follow_the_design() {
        use DeploymentStatus::*;
        assert!(Pending.can_transition_to(Running));
        assert!(Pending.can_transition_to(Cancelled));
        assert!(Running.can_transition_to(Completed));
        assert!(Completed.can_transition_to(Pending));
        assert!(!Completed.can_transition_to(Running));
        assert!(!Destroyed.can_transition_to(Pending));
        assert!(!Cancelled.can_transition_to(Running));
        assert!(!Pending.can_transition_to(Completed));
    }

    #[test]
    fn statuses_round_trip_and_unknown_is_an_error() {
        for st in DeploymentStatus::ALL {
            assert_eq!(st.as_str().parse::<DeploymentStatus>().ok(), Some(st));
        }
        assert!("archived".parse::<DeploymentStatus>().is_err());
    }
}

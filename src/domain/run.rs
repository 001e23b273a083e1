//! Runs: one operation on a deployment (design.md §10). A deployment is a long-lived stack;
//! every deploy, plan, update, destroy and drift check of it is a run with its own status,
//! log lines, lease and result. The queue is made of runs.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;

use super::{DeploymentId, DeploymentStatus, Operation, PlanSummary, UnknownValue};

/// `run-` followed by lowercase hex: 16 random hex digits for new ids, at least 12 accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    pub fn generate() -> RunId {
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        RunId(format!("run-{hex}"))
    }

    /// Accepts only well-formed ids.
    pub fn parse(value: &str) -> Option<RunId> {
        let hex = value.strip_prefix("run-")?;
        let ok = hex.len() >= 12
            && hex.len() <= 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| RunId(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// The first apply of a deployment.
    Deploy,
    /// A speculative plan: never applies, never waits behind other runs.
    Plan,
    /// New parameters (or template version) applied to an existing deployment.
    Update,
    Destroy,
    /// `plan -refresh-only` / what-if with the applied parameters: never changes the cloud.
    DriftCheck,
}

impl RunKind {
    pub const ALL: [RunKind; 5] = [
        RunKind::Deploy,
        RunKind::Plan,
        RunKind::Update,
        RunKind::Destroy,
        RunKind::DriftCheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Deploy => "deploy",
            RunKind::Plan => "plan",
            RunKind::Update => "update",
            RunKind::Destroy => "destroy",
            RunKind::DriftCheck => "drift_check",
        }
    }

    /// Runs that only read (plans, drift checks) neither wait for nor block the deployment's
    /// queue; the others run one at a time, in order.
    pub fn is_speculative(self) -> bool {
        matches!(self, RunKind::Plan | RunKind::DriftCheck)
    }

    /// The operation an engine performs for it: everything but a destroy converges the
    /// deployment on its template.
    pub fn operation(self) -> Operation {
        match self {
            RunKind::Destroy => Operation::Destroy,
            _ => Operation::Deploy,
        }
    }
}

impl FromStr for RunKind {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "run kind",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for RunKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run is: `pending → running → planned → (apply) → completed`, or one of the other ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Pending,
    Running,
    /// Planned, waiting for a decision (apply or discard).
    Planned,
    Completed,
    /// The plan found nothing to change; nothing was applied.
    NoChanges,
    Failed,
    Cancelled,
    /// Its plan was discarded.
    Discarded,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Pending,
        RunStatus::Running,
        RunStatus::Planned,
        RunStatus::Completed,
        RunStatus::NoChanges,
        RunStatus::Failed,
        RunStatus::Cancelled,
        RunStatus::Discarded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Planned => "planned",
            RunStatus::Completed => "completed",
            RunStatus::NoChanges => "no_changes",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Discarded => "discarded",
        }
    }

    /// The run holds its deployment's queue (a planned run waits for a decision).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunStatus::Pending | RunStatus::Running | RunStatus::Planned
        )
    }

    /// Nothing more happens to the run.
    pub fn is_final(self) -> bool {
        !self.is_active()
    }
}

impl FromStr for RunStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "run status",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run as the rest of the program sees it.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: RunId,
    /// Its place in the deployment's queue (and the runs listing's cursor).
    pub seq: i64,
    pub deployment_id: DeploymentId,
    pub kind: RunKind,
    pub status: RunStatus,
    pub auto_apply: bool,
    /// The plan was confirmed: this run applies its saved plan.
    pub approved_at: Option<DateTime<Utc>>,
    /// The parameters this run uses (sensitive ones sealed as stored).
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// sha256 of the template source the run ran (known once it started).
    pub template_hash: Option<String>,
    /// An update: the source the deployment was applied with when the update was queued.
    pub base_template_hash: Option<String>,
    /// An update: which template version it plans with.
    pub template_version: Option<TemplateVersion>,
    pub plan_summary: Option<PlanSummary>,
    /// Whether a saved plan is stored (the bytes are only loaded to apply them).
    pub has_saved_plan: bool,
    pub outputs: Option<serde_json::Value>,
    pub error_message: Option<String>,
    pub progress: u8,
    pub attempts: u32,
    pub lease_owner: Option<String>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub requested_by: Option<String>,
    pub approved_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl Run {
    /// What the engine does in this attempt.
    pub fn phase(&self) -> RunPhase {
        match self.kind {
            RunKind::DriftCheck => RunPhase::DriftCheck,
            RunKind::Plan => RunPhase::Plan,
            _ if self.approved_at.is_some() => RunPhase::ApplySaved,
            _ if self.auto_apply => RunPhase::PlanAndApply,
            _ => RunPhase::Plan,
        }
    }

    /// Whether the run uses the source its deployment was applied with rather than the
    /// template file as it is now: everything but a first deploy and an update asked to move
    /// to the latest version.
    pub fn uses_applied_source(&self) -> bool {
        match self.kind {
            RunKind::Deploy => false,
            RunKind::Update | RunKind::Plan => {
                self.template_version != Some(TemplateVersion::Latest)
            }
            _ => true,
        }
    }

    /// Seconds from start to completion, or to now while the run goes on.
    pub fn duration_seconds(&self) -> Option<f64> {
        let start = self.started_at?;
        let end = self.completed_at.unwrap_or_else(Utc::now);
        Some(((end - start).num_milliseconds().max(0) as f64) / 1000.0)
    }
}

/// The engine's work in one attempt of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    /// Plan and apply in one go (no decision needed): today's deploy and destroy.
    PlanAndApply,
    /// Plan only, keep the plan and its summary (a gated run, or a speculative plan).
    Plan,
    /// Apply exactly the saved plan of a confirmed run.
    ApplySaved,
    /// Compare the cloud with the state; never changes anything.
    DriftCheck,
}

/// Which template source a run of an existing deployment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateVersion {
    /// The source the deployment was last applied with (kept in PostgreSQL), even when the
    /// file changed or is gone.
    Applied,
    /// The template file as it is now in the catalog.
    Latest,
}

impl TemplateVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateVersion::Applied => "applied",
            TemplateVersion::Latest => "latest",
        }
    }

    pub fn parse(s: &str) -> Option<TemplateVersion> {
        match s {
            "applied" => Some(TemplateVersion::Applied),
            "latest" => Some(TemplateVersion::Latest),
            _ => None,
        }
    }
}

/// What a new run needs.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub kind: RunKind,
    pub auto_apply: bool,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Updates: which template source to plan with (default: the applied one).
    pub template_version: Option<TemplateVersion>,
    pub requested_by: Option<String>,
}

impl NewRun {
    pub fn new(kind: RunKind, parameters: serde_json::Map<String, serde_json::Value>) -> NewRun {
        NewRun {
            id: RunId::generate(),
            kind,
            auto_apply: true,
            parameters,
            template_version: None,
            requested_by: None,
        }
    }
}

/// Drift: how the cloud compares with what was last applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    InSync,
    Drifted,
    /// The check could not tell (it failed).
    Unknown,
}

impl DriftStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftStatus::InSync => "in_sync",
            DriftStatus::Drifted => "drifted",
            DriftStatus::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<DriftStatus> {
        [
            DriftStatus::InSync,
            DriftStatus::Drifted,
            DriftStatus::Unknown,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// The deployment status a run's status shows as, for the runs that the deployment mirrors.
pub fn mirrored_status(kind: RunKind, status: RunStatus) -> DeploymentStatus {
    match status {
        RunStatus::Pending => DeploymentStatus::Pending,
        RunStatus::Running => DeploymentStatus::Running,
        RunStatus::Planned => DeploymentStatus::Planned,
        RunStatus::Completed | RunStatus::NoChanges if kind == RunKind::Destroy => {
            DeploymentStatus::Destroyed
        }
        RunStatus::Completed | RunStatus::NoChanges => DeploymentStatus::Completed,
        RunStatus::Failed => DeploymentStatus::Failed,
        RunStatus::Cancelled | RunStatus::Discarded => DeploymentStatus::Cancelled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_and_words_round_trip() {
        let id = RunId::generate();
        assert_eq!(RunId::parse(id.as_str()), Some(id));
        assert_eq!(RunId::parse("run-../x"), None);
        assert_eq!(RunId::parse("deploy-0123456789ab"), None);
        for k in RunKind::ALL {
            assert_eq!(k.as_str().parse::<RunKind>().ok(), Some(k));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().ok(), Some(s));
        }
        assert!("archived".parse::<RunStatus>().is_err());
    }

    #[test]
    fn only_reading_runs_skip_the_queue_and_planned_holds_it() {
        assert!(RunKind::Plan.is_speculative() && RunKind::DriftCheck.is_speculative());
        assert!(!RunKind::Update.is_speculative());
        assert!(RunStatus::Planned.is_active());
        assert!(RunStatus::NoChanges.is_final());
        assert_eq!(
            mirrored_status(RunKind::Destroy, RunStatus::Completed),
            DeploymentStatus::Destroyed
        );
        assert_eq!(
            mirrored_status(RunKind::Deploy, RunStatus::Discarded),
            DeploymentStatus::Cancelled
        );
    }
}

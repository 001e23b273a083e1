//! Who may do what, and the record of who did (design.md §10): roles, the caller of a
//! request, and audit entries. Audit entries carry names, ids and outcomes, never parameter
//! values, bodies or tokens.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::UnknownValue;

/// A token's role. Each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything a deployment shows (never secrets).
    Viewer,
    /// Viewer + deploy, plan, update, drift check, cancel, destroy, create resource groups.
    Operator,
    /// Operator + apply or discard planned runs.
    Approver,
    /// Everything: webhooks, resource-group deletion, the audit trail.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Approver, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl FromStr for Role {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "role",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a request: a configured token's name and role. Without configured tokens every
/// request is `anonymous` with the admin role (allowed on a loopback bind only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub const ANONYMOUS: &'static str = "anonymous";
    /// The actor of a request whose token matched nothing.
    pub const UNKNOWN: &'static str = "-";

    pub fn anonymous() -> Caller {
        Caller {
            name: Self::ANONYMOUS.into(),
            role: Role::Admin,
        }
    }
}

/// One audit row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub actor: String,
    pub role: Option<Role>,
    /// e.g. `deployment.create`, `run.apply`, `webhook.delete`.
    pub action: String,
    /// e.g. `POST /deployments/{id}/apply`.
    pub route: String,
    pub target: Option<String>,
    pub run_id: Option<String>,
    /// `ok`, or why not (`unauthorized`, `forbidden`, `conflict`, `invalid`, ...).
    pub outcome: String,
    pub status_code: u16,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

impl AuditEntry {
    /// The outcome word of an HTTP status.
    pub fn outcome_of(status: u16) -> &'static str {
        match status {
            200..=399 => "ok",
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            409 => "conflict",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            422 => "invalid",
            429 => "rate_limited",
            500..=599 => "error",
            _ => "refused",
        }
    }

    /// This entry as a success with `status`, on `target` (and `run_id`).
    pub fn succeeded(
        mut self,
        status: u16,
        target: impl Into<String>,
        run_id: Option<String>,
    ) -> AuditEntry {
        self.outcome = Self::outcome_of(status).into();
        self.status_code = status;
        self.target = Some(target.into());
        if run_id.is_some() {
            self.run_id = run_id;
        }
        self
    }
}

/// A stored audit row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub audit_id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: Option<String>,
    pub action: String,
    pub route: String,
    pub target: Option<String>,
    pub run_id: Option<String>,
    pub outcome: String,
    pub status_code: i16,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

/// `GET /audit` filters; newest first, keyset paging on `audit_id`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_before() {
        assert!(Role::Admin.allows(Role::Approver));
        assert!(Role::Approver.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Operator.allows(Role::Approver));
        assert!(!Role::Viewer.allows(Role::Operator));
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().ok(), Some(r));
        }
        assert!("root".parse::<Role>().is_err());
    }
}

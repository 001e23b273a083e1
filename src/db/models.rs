//! Row types: what diesel reads and writes. Converted to and from `domain` types here, so that
//! no diesel derive leaks out of `db`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{deployment_logs, deployments};
use crate::domain::{Deployment, DeploymentId, LogLine, NewDeployment, ProviderType, UnknownValue};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = deployments, check_for_backend(diesel::pg::Pg))]
pub struct DeploymentRow {
    pub deployment_id: String,
    pub provider_type: String,
    pub cloud_provider: String,
    pub template_name: String,
    pub resource_group: Option<String>,
    pub subscription_id: Option<String>,
    pub location: Option<String>,
    pub status: String,
    pub operation: String,
    pub parameters: serde_json::Value,
    pub outputs: Option<serde_json::Value>,
    pub error_message: Option<String>,
    pub progress: i16,
    pub attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = deployments)]
pub struct NewDeploymentRow {
    pub deployment_id: String,
    pub provider_type: String,
    pub cloud_provider: String,
    pub template_name: String,
    pub resource_group: Option<String>,
    pub subscription_id: Option<String>,
    pub location: Option<String>,
    pub parameters: serde_json::Value,
    pub idempotency_key: Option<String>,
}

impl From<&NewDeployment> for NewDeploymentRow {
    fn from(d: &NewDeployment) -> Self {
        NewDeploymentRow {
            deployment_id: d.id.to_string(),
            provider_type: d.provider_type.as_str().into(),
            cloud_provider: d.provider_type.cloud().into(),
            template_name: d.template_name.clone(),
            resource_group: d.resource_group.clone(),
            subscription_id: d.subscription_id.clone(),
            location: d.location.clone(),
            parameters: serde_json::Value::Object(d.parameters.clone()),
            idempotency_key: d.idempotency_key.clone(),
        }
    }
}

impl TryFrom<DeploymentRow> for Deployment {
    type Error = UnknownValue;

    fn try_from(row: DeploymentRow) -> Result<Self, Self::Error> {
        let id = DeploymentId::parse(&row.deployment_id).ok_or_else(|| UnknownValue {
            kind: "deployment id",
            value: row.deployment_id.clone(),
        })?;
        let provider_type =
            ProviderType::parse(&row.provider_type).ok_or_else(|| UnknownValue {
                kind: "provider type",
                value: row.provider_type.clone(),
            })?;
        let parameters = match row.parameters {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        Ok(Deployment {
            id,
            provider_type,
            template_name: row.template_name,
            resource_group: row.resource_group,
            subscription_id: row.subscription_id,
            location: row.location,
            status: row.status.parse()?,
            operation: row.operation.parse()?,
            parameters,
            outputs: row.outputs,
            error_message: row.error_message,
            progress: row.progress.clamp(0, 100) as u8,
            attempts: row.attempts.max(0) as u32,
            lease_owner: row.lease_owner,
            lease_expires_at: row.lease_expires_at,
            cancel_requested_at: row.cancel_requested_at,
            created_at: row.created_at,
            started_at: row.started_at,
            completed_at: row.completed_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deployment_logs, check_for_backend(diesel::pg::Pg))]
pub struct LogRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

impl From<LogRow> for LogLine {
    fn from(r: LogRow) -> Self {
        LogLine {
            seq: r.seq,
            at: r.at,
            stream: r.stream,
            line: r.line,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = deployment_logs)]
pub struct NewLogRow<'a> {
    pub deployment_id: &'a str,
    pub seq: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub stream: &'a str,
    pub line: &'a str,
}

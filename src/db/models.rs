//! Row types: what diesel reads and writes. Converted to and from `domain` types here, so that
//! no diesel derive leaks out of `db`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use super::schema::{audit_events, deployment_logs, deployments, runs, webhooks};
use crate::domain::{
    AuditEntry, AuditEvent, Delivery, Deployment, DeploymentId, DueDelivery, LogLine,
    NewDeployment, NewRun, NewWebhook, PlanSummary, ProviderType, Run, RunId, TemplateVersion,
    UnknownValue, Webhook,
};

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
    pub applied_run_id: Option<String>,
    pub drift: Option<serde_json::Value>,
    pub management_group: Option<String>,
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
    pub requested_by: Option<String>,
    pub management_group: Option<String>,
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
            requested_by: d.requested_by.clone(),
            management_group: d.management_group.clone(),
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
            management_group: row.management_group,
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
            applied_run_id: row.applied_run_id,
            drift: row.drift,
        })
    }
}

/// A run as stored, without its saved plan's bytes (they are read only to apply them).
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = runs, check_for_backend(diesel::pg::Pg))]
pub struct RunRow {
    pub run_id: String,
    pub queue_seq: i64,
    pub deployment_id: String,
    pub kind: String,
    pub status: String,
    pub auto_apply: bool,
    pub approved_at: Option<DateTime<Utc>>,
    pub parameters: serde_json::Value,
    pub template_hash: Option<String>,
    pub base_template_hash: Option<String>,
    pub template_version: Option<String>,
    pub plan_summary: Option<serde_json::Value>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    #[diesel(select_expression = runs::saved_plan.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<runs::saved_plan>)]
    pub has_saved_plan: bool,
    pub outputs: Option<serde_json::Value>,
    pub error_message: Option<String>,
    pub progress: i16,
    pub attempts: i32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub requested_by: Option<String>,
    pub approved_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = runs)]
pub struct NewRunRow {
    pub run_id: String,
    pub deployment_id: String,
    pub kind: String,
    pub auto_apply: bool,
    pub parameters: serde_json::Value,
    pub template_version: Option<String>,
    pub base_template_hash: Option<String>,
    pub requested_by: Option<String>,
}

impl NewRunRow {
    pub fn new(deployment_id: &str, r: &NewRun) -> NewRunRow {
        NewRunRow {
            run_id: r.id.to_string(),
            deployment_id: deployment_id.to_string(),
            kind: r.kind.as_str().into(),
            auto_apply: r.auto_apply,
            parameters: serde_json::Value::Object(r.parameters.clone()),
            template_version: r.template_version.map(|v| v.as_str().to_string()),
            base_template_hash: None,
            requested_by: r.requested_by.clone(),
        }
    }
}

impl TryFrom<RunRow> for Run {
    type Error = UnknownValue;

    fn try_from(row: RunRow) -> Result<Self, Self::Error> {
        let unknown = |kind: &'static str, value: &str| UnknownValue {
            kind,
            value: value.to_string(),
        };
        let id = RunId::parse(&row.run_id).ok_or_else(|| unknown("run id", &row.run_id))?;
        let deployment_id = DeploymentId::parse(&row.deployment_id)
            .ok_or_else(|| unknown("deployment id", &row.deployment_id))?;
        let plan_summary = match row.plan_summary {
            None => None,
            Some(v) => Some(
                serde_json::from_value::<PlanSummary>(v)
                    .map_err(|e| unknown("plan summary", &e.to_string()))?,
            ),
        };
        Ok(Run {
            id,
            seq: row.queue_seq,
            deployment_id,
            kind: row.kind.parse()?,
            status: row.status.parse()?,
            auto_apply: row.auto_apply,
            approved_at: row.approved_at,
            parameters: match row.parameters {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
            template_hash: row.template_hash,
            base_template_hash: row.base_template_hash,
            template_version: match row.template_version.as_deref() {
                None => None,
                Some(v) => {
                    Some(TemplateVersion::parse(v).ok_or_else(|| unknown("template version", v))?)
                }
            },
            plan_summary,
            has_saved_plan: row.has_saved_plan,
            outputs: row.outputs,
            error_message: row.error_message,
            progress: row.progress.clamp(0, 100) as u8,
            attempts: row.attempts.max(0) as u32,
            lease_owner: row.lease_owner,
            cancel_requested_at: row.cancel_requested_at,
            requested_by: row.requested_by,
            approved_by: row.approved_by,
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
    pub run_id: String,
    pub at: DateTime<Utc>,
    pub stream: String,
    pub line: String,
}

impl From<LogRow> for LogLine {
    fn from(r: LogRow) -> Self {
        LogLine {
            seq: r.seq,
            run_id: r.run_id,
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
    pub run_id: &'a str,
    pub seq: i64,
    pub at: chrono::DateTime<chrono::Utc>,
    pub stream: &'a str,
    pub line: &'a str,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditRow {
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

impl From<&AuditEntry> for NewAuditRow {
    fn from(e: &AuditEntry) -> Self {
        NewAuditRow {
            actor: e.actor.clone(),
            role: e.role.map(|r| r.as_str().to_string()),
            action: e.action.clone(),
            route: e.route.clone(),
            target: e.target.clone(),
            run_id: e.run_id.clone(),
            outcome: e.outcome.clone(),
            status_code: i16::try_from(e.status_code).unwrap_or(i16::MAX),
            error_code: e.error_code.clone(),
            request_id: e.request_id.clone(),
            client_addr: e.client_addr.clone(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
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

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> Self {
        AuditEvent {
            audit_id: r.audit_id,
            at: r.at,
            actor: r.actor,
            role: r.role,
            action: r.action,
            route: r.route,
            target: r.target,
            run_id: r.run_id,
            outcome: r.outcome,
            status_code: r.status_code,
            error_code: r.error_code,
            request_id: r.request_id,
            client_addr: r.client_addr,
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = webhooks)]
pub struct NewWebhookRow {
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret_sealed: Vec<u8>,
    pub created_by: Option<String>,
}

impl From<&NewWebhook> for NewWebhookRow {
    fn from(w: &NewWebhook) -> Self {
        NewWebhookRow {
            webhook_id: w.id.to_string(),
            url: w.url.clone(),
            events: w.events.iter().map(|e| e.as_str().to_string()).collect(),
            secret_sealed: w.secret_sealed.clone(),
            created_by: Some(w.created_by.clone()),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhooks, check_for_backend(diesel::pg::Pg))]
pub struct WebhookRow {
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<WebhookRow> for Webhook {
    fn from(r: WebhookRow) -> Self {
        Webhook {
            webhook_id: r.webhook_id,
            url: r.url,
            events: r.events,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Clone, QueryableByName)]
pub struct DeliveryRow {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub delivery_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub webhook_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub event_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub event_type: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub status: String,
    #[diesel(sql_type = diesel::sql_types::Int4)]
    pub attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub next_attempt_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub last_attempt_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Int2>)]
    pub last_status_code: Option<i16>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub last_error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub response_excerpt: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub delivered_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl From<DeliveryRow> for Delivery {
    fn from(r: DeliveryRow) -> Self {
        Delivery {
            next_attempt_at: (r.status == "pending").then_some(r.next_attempt_at),
            delivery_id: r.delivery_id,
            webhook_id: r.webhook_id,
            event_id: r.event_id,
            event_type: r.event_type,
            status: r.status,
            attempts: r.attempts,
            last_attempt_at: r.last_attempt_at,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            response_excerpt: r.response_excerpt,
            delivered_at: r.delivered_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Clone, QueryableByName)]
pub struct DueDeliveryRow {
    #[diesel(sql_type = diesel::sql_types::Int8)]
    pub delivery_id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub webhook_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub url: String,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    pub secret_sealed: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub event_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub event_type: String,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub payload: serde_json::Value,
    #[diesel(sql_type = diesel::sql_types::Int4)]
    pub attempts: i32,
}

impl From<DueDeliveryRow> for DueDelivery {
    fn from(r: DueDeliveryRow) -> Self {
        DueDelivery {
            delivery_id: r.delivery_id,
            webhook_id: r.webhook_id,
            url: r.url,
            secret_sealed: r.secret_sealed,
            event_id: r.event_id,
            event_type: r.event_type,
            payload: r.payload,
            attempt: r.attempts,
        }
    }
}

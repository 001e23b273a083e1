//! `GET /audit` (admin): the audit trail, newest first, with filters and keyset paging.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::envelope::{self, AppError};
use crate::actors::persistence::ListAudit;
use crate::domain::AuditFilter;

pub const MAX_AUDIT_LIMIT: i64 = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    target: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

fn filter_text(field: &str, v: Option<String>) -> Result<Option<String>, AppError> {
    match v {
        Some(s) if s.is_empty() || s.len() > 200 || s.chars().any(char::is_control) => Err(
            AppError::invalid(field, "must be 1-200 characters without control characters"),
        ),
        other => Ok(other),
    }
}

fn instant(field: &str, v: Option<String>) -> Result<Option<DateTime<Utc>>, AppError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                AppError::invalid(
                    field,
                    "must be an RFC 3339 time such as 2026-12-01T00:00:00Z",
                )
            })
    })
    .transpose()
}

pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<AuditQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    let (limit, before) = super::keyset_page(q.limit, q.cursor.as_deref(), 100, MAX_AUDIT_LIMIT)?;
    let filter = AuditFilter {
        actor: filter_text("actor", q.actor)?,
        action: filter_text("action", q.action)?,
        outcome: filter_text("outcome", q.outcome)?,
        target: filter_text("target", q.target)?,
        since: instant("since", q.since)?,
        until: instant("until", q.until)?,
        before,
        limit: limit + 1,
    };
    let mut events = state.persistence.call(ListAudit(filter)).await?;
    let more = events.len() as i64 > limit;
    events.truncate(limit as usize);
    let next_cursor = if more {
        events.last().map(|e| e.audit_id.to_string())
    } else {
        None
    };
    Ok(envelope::ok(
        format!("{} audit events", events.len()),
        json!({ "events": events, "count": events.len(), "next_cursor": next_cursor }),
    ))
}

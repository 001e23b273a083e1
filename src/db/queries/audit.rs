//! The `audit_events` table: who did what, written in the transaction of the change it
//! describes (or alone, for a refusal), listed newest first, pruned by age.

use chrono::{DateTime, Utc};
use diesel::pg::PgConnection;
use diesel::prelude::*;

use crate::db::models::{AuditRow, NewAuditRow};
use crate::db::schema::audit_events;
use crate::domain::AuditFilter;

pub fn insert(conn: &mut PgConnection, row: &NewAuditRow) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(row)
        .execute(conn)
        .map(|_| ())
}

/// Newest first; `filter.before` pages (exclusive `audit_id`).
pub fn list(conn: &mut PgConnection, filter: &AuditFilter) -> QueryResult<Vec<AuditRow>> {
    let mut q = audit_events::table
        .select(AuditRow::as_select())
        .order(audit_events::audit_id.desc())
        .limit(filter.limit)
        .into_boxed();
    if let Some(v) = &filter.actor {
        q = q.filter(audit_events::actor.eq(v));
    }
    if let Some(v) = &filter.action {
        q = q.filter(audit_events::action.eq(v));
    }
    if let Some(v) = &filter.outcome {
        q = q.filter(audit_events::outcome.eq(v));
    }
    if let Some(v) = &filter.target {
        q = q.filter(audit_events::target.eq(v));
    }
    if let Some(v) = filter.since {
        q = q.filter(audit_events::at.ge(v));
    }
    if let Some(v) = filter.until {
        q = q.filter(audit_events::at.lt(v));
    }
    if let Some(v) = filter.before {
        q = q.filter(audit_events::audit_id.lt(v));
    }
    q.load(conn)
}

/// Deletes rows older than `cutoff`, at most `limit` at a time (a big backlog goes in steps).
pub fn prune(conn: &mut PgConnection, cutoff: DateTime<Utc>, limit: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM audit_events WHERE audit_id IN ( \
            SELECT audit_id FROM audit_events WHERE at < $1 ORDER BY audit_id LIMIT $2)",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .execute(conn)
}

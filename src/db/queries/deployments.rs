//! The `deployments` table: accept, find, list. Its status, progress and results are mirrored
//! from its runs (see `runs`), which are the queue.

use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamptz};

use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;

use super::with::With;
use crate::db::models::{DeploymentRow, NewAuditRow, NewDeploymentRow, NewRunRow};
use crate::db::schema::{audit_events, deployments, runs};
use crate::domain::ListFilter;

/// Inserts accepted deployments, the first runs of those that wait for a decision and their
/// audit rows as one statement (see `with`): outside a transaction it is one round trip and
/// one commit. A single accept uses single-row inserts, which diesel keeps prepared.
pub fn insert_accepted(
    conn: &mut PgConnection,
    rows: &[NewDeploymentRow],
    runs: &[NewRunRow],
    audits: &[NewAuditRow],
) -> QueryResult<Vec<DeploymentRow>> {
    type Part<'a> = Box<dyn QueryFragment<Pg> + Send + 'a>;
    let mut parts: Vec<Part<'_>> = Vec::new();
    match runs {
        [] => {}
        [one] => parts.push(Box::new(diesel::insert_into(runs::table).values(one))),
        many => parts.push(Box::new(diesel::insert_into(runs::table).values(many))),
    }
    match audits {
        [] => {}
        [one] => parts.push(Box::new(
            diesel::insert_into(audit_events::table).values(one),
        )),
        many => parts.push(Box::new(
            diesel::insert_into(audit_events::table).values(many),
        )),
    }
    match rows {
        [] => Ok(Vec::new()),
        [one] => With::new(
            parts,
            diesel::insert_into(deployments::table)
                .values(one)
                .returning(DeploymentRow::as_returning()),
        )
        .get_results(conn),
        many => With::new(
            parts,
            diesel::insert_into(deployments::table)
                .values(many)
                .returning(DeploymentRow::as_returning()),
        )
        .get_results(conn),
    }
}

pub fn find(conn: &mut PgConnection, id: &str) -> QueryResult<Option<DeploymentRow>> {
    deployments::table
        .find(id)
        .select(DeploymentRow::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_idempotency_key(
    conn: &mut PgConnection,
    key: &str,
) -> QueryResult<Option<DeploymentRow>> {
    deployments::table
        .filter(deployments::idempotency_key.eq(key))
        .select(DeploymentRow::as_select())
        .first(conn)
        .optional()
}

/// Newest first, keyset-paginated on (created_at, deployment_id) so a deep page costs the same
/// as the first.
pub fn list(conn: &mut PgConnection, f: &ListFilter) -> QueryResult<Vec<DeploymentRow>> {
    let mut q = deployments::table
        .select(DeploymentRow::as_select())
        .into_boxed();
    if let Some(s) = &f.status {
        q = q.filter(deployments::status.eq(s.clone()));
    }
    if let Some(p) = &f.provider_type {
        q = q.filter(deployments::provider_type.eq(p.clone()));
    }
    if let Some(t) = &f.template_name {
        q = q.filter(deployments::template_name.eq(t.clone()));
    }
    if let Some(rg) = &f.resource_group {
        q = q.filter(deployments::resource_group.eq(rg.clone()));
    }
    if let Some(drift) = f.drift {
        q = q.filter(
            sql::<diesel::sql_types::Bool>(
                "deployments.drift IS NOT NULL AND deployments.drift ->> 'status' = ",
            )
            .bind::<Text, _>(drift.as_str()),
        );
    }
    if let Some((at, id)) = &f.before {
        // A row-value comparison walks the (created_at DESC, deployment_id DESC) index straight
        // to the cursor; the equivalent `a < x OR (a = x AND b < y)` made PostgreSQL filter
        // every newer row (92 ms p99 at 90,000 rows deep, against 8 ms for the first page).
        q = q.filter(
            sql::<diesel::sql_types::Bool>(
                "(deployments.created_at, deployments.deployment_id) < (",
            )
            .bind::<Timestamptz, _>(*at)
            .sql(", ")
            .bind::<Text, _>(id.clone())
            .sql(")"),
        );
    }
    q.order((
        deployments::created_at.desc(),
        deployments::deployment_id.desc(),
    ))
    .limit(f.limit)
    .load(conn)
}

/// Deployments per status, for metrics.
pub fn count_by_status(conn: &mut PgConnection) -> QueryResult<Vec<(String, i64)>> {
    deployments::table
        .group_by(deployments::status)
        .select((deployments::status, diesel::dsl::count_star()))
        .load(conn)
}

/// Proves the database answers (`/health`).
pub fn ping(conn: &mut PgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT 1").execute(conn).map(|_| ())
}

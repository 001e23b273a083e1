//! The `deployments` table: accept, find, list. Its status, progress and results are mirrored
//! from its runs (see `runs`), which are the queue.

use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamptz};

use crate::db::models::{DeploymentRow, NewAuditRow, NewDeploymentRow, NewRunRow};
use crate::db::schema::deployments;
use crate::domain::ListFilter;

/// Inserts an accepted deployment, its first run when it has one now (a deploy that waits for
/// a decision), and the request's audit row, in one statement: one round trip, because
/// `POST /deploy` is the hot path. Answers the deployment.
pub fn insert_accepted(
    conn: &mut PgConnection,
    row: &NewDeploymentRow,
    run: Option<&NewRunRow>,
    audit: Option<&NewAuditRow>,
) -> QueryResult<DeploymentRow> {
    use diesel::sql_types::{Bool, Jsonb, Nullable, SmallInt};
    diesel::sql_query(
        "WITH d AS ( \
            INSERT INTO deployments (deployment_id, provider_type, cloud_provider, template_name, \
                resource_group, subscription_id, location, parameters, idempotency_key, \
                requested_by) \
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING * \
         ), r AS ( \
            INSERT INTO runs (run_id, deployment_id, kind, auto_apply, parameters, requested_by) \
            SELECT $11, d.deployment_id, $12, $13, $14, d.requested_by FROM d \
            WHERE $11::text IS NOT NULL \
         ), a AS ( \
            INSERT INTO audit_events (actor, role, action, route, target, run_id, outcome, \
                status_code, request_id, client_addr) \
            SELECT $15, $16, $17, $18, d.deployment_id, $11, $19, $20, $21, $22 FROM d \
            WHERE $15::text IS NOT NULL \
         ) \
         SELECT * FROM d",
    )
    .bind::<Text, _>(&row.deployment_id)
    .bind::<Text, _>(&row.provider_type)
    .bind::<Text, _>(&row.cloud_provider)
    .bind::<Text, _>(&row.template_name)
    .bind::<Nullable<Text>, _>(&row.resource_group)
    .bind::<Nullable<Text>, _>(&row.subscription_id)
    .bind::<Nullable<Text>, _>(&row.location)
    .bind::<Jsonb, _>(&row.parameters)
    .bind::<Nullable<Text>, _>(&row.idempotency_key)
    .bind::<Nullable<Text>, _>(&row.requested_by)
    .bind::<Nullable<Text>, _>(run.map(|r| &r.run_id))
    .bind::<Nullable<Text>, _>(run.map(|r| &r.kind))
    .bind::<Nullable<Bool>, _>(run.map(|r| r.auto_apply))
    .bind::<Nullable<Jsonb>, _>(run.map(|r| &r.parameters))
    .bind::<Nullable<Text>, _>(audit.map(|a| &a.actor))
    .bind::<Nullable<Text>, _>(audit.and_then(|a| a.role.as_ref()))
    .bind::<Nullable<Text>, _>(audit.map(|a| &a.action))
    .bind::<Nullable<Text>, _>(audit.map(|a| &a.route))
    .bind::<Nullable<Text>, _>(audit.map(|a| &a.outcome))
    .bind::<Nullable<SmallInt>, _>(audit.map(|a| a.status_code))
    .bind::<Nullable<Text>, _>(audit.and_then(|a| a.request_id.as_ref()))
    .bind::<Nullable<Text>, _>(audit.and_then(|a| a.client_addr.as_ref()))
    .get_result(conn)
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

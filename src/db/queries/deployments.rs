//! The `deployments` table: accept, list, claim, lease, finish. Every status change is a guarded
//! UPDATE (compare-and-set on the expected status and, for a run, its lease owner), so two nodes
//! can never both win a transition.

use chrono::{DateTime, Utc};
use diesel::dsl::{now, sql};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};

use crate::db::models::{DeploymentRow, NewDeploymentRow};
use crate::db::schema::deployments;
use crate::domain::RunOutcome;

pub fn insert(conn: &mut PgConnection, row: &NewDeploymentRow) -> QueryResult<DeploymentRow> {
    diesel::insert_into(deployments::table)
        .values(row)
        .returning(DeploymentRow::as_returning())
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

/// Filters of `GET /deployments`; all optional. The cursor is the last row of the previous page.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<String>,
    pub provider_type: Option<String>,
    pub template_name: Option<String>,
    pub resource_group: Option<String>,
    pub before: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
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

/// Ends every `running` run whose lease expired after `max_attempts` claims: it was interrupted
/// that many times and is not tried again. Returns how many rows it ended.
pub fn fail_exhausted(conn: &mut PgConnection, max_attempts: i32) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE deployments SET status = 'failed', \
            error_message = format('interrupted %s times (the node running it stopped or died); not retried', attempts), \
            completed_at = now(), updated_at = now(), lease_owner = NULL, lease_expires_at = NULL \
         WHERE status = 'running' AND lease_expires_at < now() AND attempts >= $1",
    )
    .bind::<Integer, _>(max_attempts)
    .execute(conn)
}

/// Claims up to `limit` runs for `node`: the oldest pending rows, and running rows whose owner's
/// lease expired (a dead node's work, which re-runs and converges because terraform state is in
/// PostgreSQL). `FOR UPDATE SKIP LOCKED` in a CTE lets several daemons claim at once without
/// waiting on each other or taking the same row; the outer WHERE re-checks the predicate.
pub fn claim(
    conn: &mut PgConnection,
    node: &str,
    lease_secs: i64,
    limit: i64,
    max_attempts: i32,
    exclude: &[String],
) -> QueryResult<Vec<DeploymentRow>> {
    diesel::sql_query(
        "WITH picked AS ( \
            SELECT deployment_id FROM deployments \
            WHERE (status = 'pending' \
               OR (status = 'running' AND lease_expires_at < now() AND attempts < $4)) \
              AND deployment_id <> ALL($5) \
            ORDER BY created_at \
            LIMIT $3 \
            FOR UPDATE SKIP LOCKED \
         ) \
         UPDATE deployments d SET \
            started_at = CASE WHEN d.status = 'pending' THEN now() ELSE d.started_at END, \
            progress = CASE WHEN d.status = 'pending' THEN 0 ELSE d.progress END, \
            status = 'running', \
            lease_owner = $1, \
            lease_expires_at = now() + make_interval(secs => $2), \
            attempts = d.attempts + 1, \
            completed_at = NULL, \
            updated_at = now() \
         FROM picked \
         WHERE d.deployment_id = picked.deployment_id \
           AND (d.status = 'pending' OR (d.status = 'running' AND d.lease_expires_at < now())) \
         RETURNING d.*",
    )
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(lease_secs)
    .bind::<BigInt, _>(limit)
    .bind::<Integer, _>(max_attempts)
    .bind::<Array<Text>, _>(exclude)
    .load(conn)
}

/// Extends the leases `node` holds on `ids`. Returns the ids it still owns, with whether a
/// cancel was requested for them.
pub fn renew_leases(
    conn: &mut PgConnection,
    node: &str,
    ids: &[String],
    lease_secs: i64,
) -> QueryResult<Vec<(String, bool)>> {
    diesel::update(
        deployments::table
            .filter(deployments::deployment_id.eq_any(ids))
            .filter(deployments::status.eq("running"))
            .filter(deployments::lease_owner.eq(node)),
    )
    .set(deployments::lease_expires_at.eq(lease_end(lease_secs)))
    .returning((
        deployments::deployment_id,
        deployments::cancel_requested_at.is_not_null(),
    ))
    .get_results(conn)
}

fn lease_end(secs: i64) -> diesel::expression::SqlLiteral<Nullable<Timestamptz>> {
    // `secs` is an integer from our own configuration, never user input.
    sql::<Nullable<Timestamptz>>(&format!("now() + interval '{} seconds'", secs.max(0)))
}

/// Records progress of a run this node owns. Returns false when the lease was lost.
pub fn set_progress(
    conn: &mut PgConnection,
    id: &str,
    node: &str,
    progress: i16,
) -> QueryResult<bool> {
    diesel::update(
        deployments::table
            .find(id)
            .filter(deployments::status.eq("running"))
            .filter(deployments::lease_owner.eq(node)),
    )
    .set((
        deployments::progress.eq(progress.clamp(0, 100)),
        deployments::updated_at.eq(now),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// Writes the end of a run: compare-and-set on `running` and this node's lease. Returns false
/// when another node owns the run now (our lease expired) and nothing was written.
pub fn finish(
    conn: &mut PgConnection,
    id: &str,
    node: &str,
    outcome: &RunOutcome,
) -> QueryResult<bool> {
    let (outputs, error, progress): (Option<serde_json::Value>, Option<&str>, Option<i16>) =
        match outcome {
            RunOutcome::Completed { outputs } => (Some(outputs.clone()), None, Some(100)),
            RunOutcome::Destroyed => (None, None, Some(100)),
            RunOutcome::Failed { error } => (None, Some(error), None),
            RunOutcome::Cancelled { reason } => (None, Some(reason), None),
        };
    let target = deployments::table
        .find(id)
        .filter(deployments::status.eq("running"))
        .filter(deployments::lease_owner.eq(node));
    let status = outcome.status().as_str();
    let common = (
        deployments::status.eq(status),
        deployments::error_message.eq(error),
        deployments::completed_at.eq(now),
        deployments::updated_at.eq(now),
        deployments::lease_owner.eq(None::<String>),
        deployments::lease_expires_at.eq(None::<DateTime<Utc>>),
    );
    let n = match (outputs, progress) {
        (Some(outputs), _) => diesel::update(target)
            .set((
                common,
                deployments::outputs.eq(outputs),
                deployments::progress.eq(100),
            ))
            .execute(conn)?,
        (None, Some(p)) => diesel::update(target)
            .set((common, deployments::progress.eq(p)))
            .execute(conn)?,
        (None, None) => diesel::update(target).set(common).execute(conn)?,
    };
    Ok(n == 1)
}

/// A run whose node died after a cancel was requested is not run again: it ends `cancelled`.
pub fn cancel_orphaned(conn: &mut PgConnection) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE deployments SET status = 'cancelled', \
            error_message = 'cancelled by request (the node running it stopped before it could)', \
            completed_at = now(), updated_at = now(), lease_owner = NULL, lease_expires_at = NULL \
         WHERE status = 'running' AND lease_expires_at < now() AND cancel_requested_at IS NOT NULL",
    )
    .execute(conn)
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

/// Gives a run back (shutdown): its lease ends now, so the next start of this node or any
/// other node reclaims it at once. Returns false when this node did not own it.
pub fn release(conn: &mut PgConnection, id: &str, node: &str) -> QueryResult<bool> {
    diesel::update(
        deployments::table
            .find(id)
            .filter(deployments::status.eq("running"))
            .filter(deployments::lease_owner.eq(node)),
    )
    .set((
        deployments::lease_expires_at.eq(now),
        deployments::updated_at.eq(now),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// The result of a cancel request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// It was pending and is cancelled now.
    Cancelled,
    /// It is running; its owner was asked to stop it.
    Requested,
    /// It had already finished, with this status.
    AlreadyFinished,
    NotFound,
}

/// `pending` → `cancelled` at once; `running` → `cancel_requested_at` set for its owner.
pub fn cancel(conn: &mut PgConnection, id: &str) -> QueryResult<CancelResult> {
    let pending = diesel::update(
        deployments::table
            .find(id)
            .filter(deployments::status.eq("pending")),
    )
    .set((
        deployments::status.eq("cancelled"),
        deployments::error_message.eq("cancelled by request before it started"),
        deployments::completed_at.eq(now),
        deployments::updated_at.eq(now),
    ))
    .execute(conn)?;
    if pending == 1 {
        return Ok(CancelResult::Cancelled);
    }
    let running = diesel::update(
        deployments::table
            .find(id)
            .filter(deployments::status.eq("running")),
    )
    .set((
        deployments::cancel_requested_at.eq(now),
        deployments::updated_at.eq(now),
    ))
    .execute(conn)?;
    if running == 1 {
        return Ok(CancelResult::Requested);
    }
    Ok(match find(conn, id)? {
        Some(_) => CancelResult::AlreadyFinished,
        None => CancelResult::NotFound,
    })
}

/// Queues a destroy run: `completed | failed` → `pending` with `operation = destroy`.
/// Returns the row when it moved, None when it was in another state.
pub fn queue_destroy(conn: &mut PgConnection, id: &str) -> QueryResult<Option<DeploymentRow>> {
    diesel::update(
        deployments::table
            .find(id)
            .filter(deployments::status.eq_any(["completed", "failed"])),
    )
    .set((
        deployments::status.eq("pending"),
        deployments::operation.eq("destroy"),
        deployments::progress.eq(0),
        deployments::attempts.eq(0),
        deployments::error_message.eq(None::<String>),
        deployments::cancel_requested_at.eq(None::<DateTime<Utc>>),
        deployments::completed_at.eq(None::<DateTime<Utc>>),
        deployments::updated_at.eq(now),
    ))
    .returning(DeploymentRow::as_returning())
    .get_result(conn)
    .optional()
}

//! The `runs` table: the queue. Claims, leases, progress, results, cancel, and the lifecycle
//! verbs (destroy, update, plan, drift check, apply, discard). Every status change is a guarded
//! UPDATE (compare-and-set on the expected status and, for a running run, its lease owner), so
//! two nodes can never both win a transition. The runs of one deployment that change it run one
//! at a time in order (`queue_seq`); plans and drift checks only read and skip that queue.
//!
//! The deployment row shows its current run: every transition of a deploy, destroy, or an
//! applying update is mirrored onto it in the same transaction (`mirror`), and only a completed
//! apply changes its parameters and outputs.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Integer, Jsonb, Nullable, SmallInt, Text};

use crate::db::models::{DeploymentRow, NewRunRow, RunRow};
use crate::db::schema::{deployments, runs, template_sources};
use crate::domain::{
    CancelResult, DeploymentStatus, RunKind, RunOutcome, RunStatus, mirrored_status,
};

/// The columns of a `RunRow` in raw SQL (the plan's bytes stay in the table).
const RUN_COLUMNS: &str = "r.run_id, r.queue_seq, r.deployment_id, r.kind, r.status, r.auto_apply, \
    r.approved_at, r.parameters, r.template_hash, r.base_template_hash, r.template_version, \
    r.plan_summary, \
    (r.saved_plan IS NOT NULL) AS has_saved_plan, r.outputs, r.error_message, r.progress, \
    r.attempts, r.lease_owner, r.lease_expires_at, r.cancel_requested_at, r.requested_by, \
    r.approved_by, r.created_at, r.started_at, r.completed_at, r.updated_at";

/// Kinds that never change the cloud: they neither wait in nor hold a deployment's queue.
const SPECULATIVE: &str = "('plan', 'drift_check')";
const ACTIVE: &str = "('pending', 'running', 'planned')";

fn corrupt(e: crate::domain::UnknownValue) -> diesel::result::Error {
    diesel::result::Error::DeserializationError(Box::new(e))
}

pub fn insert(conn: &mut PgConnection, row: &NewRunRow) -> QueryResult<RunRow> {
    diesel::insert_into(runs::table)
        .values(row)
        .returning(RunRow::as_returning())
        .get_result(conn)
}

pub fn find(conn: &mut PgConnection, id: &str) -> QueryResult<Option<RunRow>> {
    runs::table
        .find(id)
        .select(RunRow::as_select())
        .first(conn)
        .optional()
}

/// A deployment's runs, newest first, keyset-paginated on `queue_seq`.
pub fn list_for(
    conn: &mut PgConnection,
    deployment_id: &str,
    before_seq: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<RunRow>> {
    let mut q = runs::table
        .filter(runs::deployment_id.eq(deployment_id))
        .select(RunRow::as_select())
        .into_boxed();
    if let Some(seq) = before_seq {
        q = q.filter(runs::queue_seq.lt(seq));
    }
    q.order(runs::queue_seq.desc()).limit(limit).load(conn)
}

/// The newest run of a deployment, if any.
pub fn latest_for(conn: &mut PgConnection, deployment_id: &str) -> QueryResult<Option<RunRow>> {
    Ok(list_for(conn, deployment_id, None, 1)?.into_iter().next())
}

/// The saved plan of a run (sealed bytes).
pub fn saved_plan(conn: &mut PgConnection, id: &str) -> QueryResult<Option<Vec<u8>>> {
    runs::table
        .find(id)
        .select(runs::saved_plan)
        .first::<Option<Vec<u8>>>(conn)
        .optional()
        .map(Option::flatten)
}

/// Whether the deployment shows this run: deploys and destroys always (as before runs
/// existed), updates once they apply, plans and drift checks never.
fn mirrors(r: &RunRow) -> bool {
    match r.kind.as_str() {
        "deploy" | "destroy" => true,
        "update" => r.auto_apply || r.approved_at.is_some(),
        _ => false,
    }
}

/// Shows the run on its deployment when it is the one at the head of the deployment's queue
/// (a run waiting behind another is shown once it moves). A completed apply also makes the
/// run's parameters and outputs the deployment's.
pub fn mirror(conn: &mut PgConnection, r: &RunRow) -> QueryResult<()> {
    mirror_run(conn, r, false)
}

/// `mirror`; `at_head`: the caller knows the run is at the head of its deployment's queue (a
/// claim only takes such runs), which saves the query that checks it.
fn mirror_run(conn: &mut PgConnection, r: &RunRow, at_head: bool) -> QueryResult<()> {
    if !mirrors(r) {
        return Ok(());
    }
    let earlier_active: i64 = if at_head {
        0
    } else {
        diesel::sql_query(format!(
            "SELECT count(*) AS n FROM runs e WHERE e.deployment_id = $1 AND e.queue_seq < $2 \
         AND e.kind NOT IN {SPECULATIVE} AND e.status IN {ACTIVE}"
        ))
        .bind::<Text, _>(&r.deployment_id)
        .bind::<BigInt, _>(r.queue_seq)
        .get_result::<Count>(conn)?
        .n
    };
    if earlier_active > 0 {
        return Ok(());
    }
    let kind: RunKind = r.kind.parse().map_err(corrupt)?;
    let status: RunStatus = r.status.parse().map_err(corrupt)?;
    let shown = mirrored_status(kind, status);
    let target = deployments::table.find(&r.deployment_id);
    diesel::update(target)
        .set((
            deployments::status.eq(shown.as_str()),
            deployments::operation.eq(kind.operation().as_str()),
            deployments::progress.eq(r.progress),
            deployments::error_message.eq(&r.error_message),
            deployments::attempts.eq(r.attempts),
            deployments::lease_owner.eq(&r.lease_owner),
            deployments::lease_expires_at.eq(r.lease_expires_at),
            deployments::cancel_requested_at.eq(r.cancel_requested_at),
            deployments::started_at.eq(r.started_at),
            deployments::completed_at.eq(r.completed_at),
            deployments::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)?;
    if status == RunStatus::Completed && kind != RunKind::Destroy {
        diesel::update(target)
            .set((
                deployments::parameters.eq(&r.parameters),
                deployments::outputs.eq(&r.outputs),
                deployments::applied_run_id.eq(&r.run_id),
            ))
            .execute(conn)?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// After a run of the queue ended, the next one waiting (if it is shown) appears as pending.
fn mirror_next(conn: &mut PgConnection, deployment_id: &str) -> QueryResult<()> {
    match current_for(conn, deployment_id)? {
        Some(r) => mirror(conn, &r),
        None => Ok(()),
    }
}

fn mirror_all(conn: &mut PgConnection, rows: &[RunRow]) -> QueryResult<()> {
    for r in rows {
        mirror(conn, r)?;
        if r.status.parse::<RunStatus>().is_ok_and(RunStatus::is_final) {
            mirror_next(conn, &r.deployment_id)?;
        }
    }
    Ok(())
}

/// Ends every `running` run whose lease expired after `max_attempts` claims: it was interrupted
/// that many times and is not tried again. Returns how many it ended.
pub fn fail_exhausted(conn: &mut PgConnection, max_attempts: i32) -> QueryResult<usize> {
    let rows: Vec<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET status = 'failed', \
            error_message = format('interrupted %s times (the node running it stopped or died); not retried', attempts), \
            completed_at = now(), updated_at = now(), lease_owner = NULL, lease_expires_at = NULL \
         WHERE status = 'running' AND lease_expires_at < now() AND attempts >= $1 \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Integer, _>(max_attempts)
    .load(conn)?;
    mirror_all(conn, &rows)?;
    Ok(rows.len())
}

/// A run whose node died after a cancel was requested is not run again: it ends `cancelled`.
pub fn cancel_orphaned(conn: &mut PgConnection) -> QueryResult<usize> {
    let rows: Vec<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET status = 'cancelled', \
            error_message = 'cancelled by request (the node running it stopped before it could)', \
            completed_at = now(), updated_at = now(), lease_owner = NULL, lease_expires_at = NULL \
         WHERE status = 'running' AND lease_expires_at < now() AND cancel_requested_at IS NOT NULL \
         RETURNING {RUN_COLUMNS}"
    ))
    .load(conn)?;
    mirror_all(conn, &rows)?;
    Ok(rows.len())
}

/// Gives up to `limit` pending deployments that have no run yet (accepted with `auto_apply`:
/// `POST /deploy` writes only the deployment) their deploy run, oldest first. The unique deploy
/// run per deployment makes this safe on several nodes at once. Returns how many it made.
pub fn materialize_deploy_runs(conn: &mut PgConnection, limit: i64) -> QueryResult<usize> {
    make_deploy_runs(conn, None, limit)
}

/// Gives one deployment its deploy run if it has none yet (see `materialize_deploy_runs`), so
/// that the verbs on runs (cancel, update, plan, destroy) find it.
pub fn ensure_deploy_run(conn: &mut PgConnection, deployment_id: &str) -> QueryResult<()> {
    make_deploy_runs(conn, Some(deployment_id), 1).map(|_| ())
}

/// The deploy runs of pending deployments without one (all, or one deployment's).
fn make_deploy_runs(
    conn: &mut PgConnection,
    deployment_id: Option<&str>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO runs (run_id, deployment_id, kind, auto_apply, parameters, created_at, \
                           requested_by) \
         SELECT 'run-' || substr(md5(random()::text || d.deployment_id), 1, 16), d.deployment_id, \
                'deploy', true, d.parameters, d.created_at, d.requested_by \
         FROM deployments d \
         WHERE d.status = 'pending' AND ($1 IS NULL OR d.deployment_id = $1) \
           AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.deployment_id = d.deployment_id) \
         ORDER BY d.created_at \
         LIMIT $2 \
         ON CONFLICT (deployment_id) WHERE kind = 'deploy' DO NOTHING",
    )
    .bind::<Nullable<Text>, _>(deployment_id)
    .bind::<BigInt, _>(limit.max(0))
    .execute(conn)
}

/// Claims up to `limit` runs for `node`: the oldest pending runs that are at the head of their
/// deployment's queue (or only read), and running runs whose owner's lease expired (a dead
/// node's work, which re-runs and converges because terraform state is in PostgreSQL).
/// `FOR UPDATE SKIP LOCKED` in a CTE lets several daemons claim at once without waiting on
/// each other or taking the same row; the outer WHERE re-checks the predicate.
pub fn claim(
    conn: &mut PgConnection,
    node: &str,
    lease_secs: i64,
    limit: i64,
    max_attempts: i32,
    exclude: &[String],
) -> QueryResult<Vec<RunRow>> {
    let rows: Vec<RunRow> = diesel::sql_query(format!(
        "WITH picked AS ( \
            SELECT r.run_id FROM runs r \
            WHERE ((r.status = 'pending' AND (r.kind IN {SPECULATIVE} OR NOT EXISTS ( \
                      SELECT 1 FROM runs e WHERE e.deployment_id = r.deployment_id \
                        AND e.queue_seq < r.queue_seq AND e.kind NOT IN {SPECULATIVE} \
                        AND e.status IN {ACTIVE}))) \
               OR (r.status = 'running' AND r.lease_expires_at < now() AND r.attempts < $4)) \
              AND r.run_id <> ALL($5) \
            ORDER BY r.queue_seq \
            LIMIT $3 \
            FOR UPDATE SKIP LOCKED \
         ) \
         UPDATE runs r SET \
            started_at = COALESCE(r.started_at, now()), \
            progress = CASE WHEN r.started_at IS NULL THEN 0 ELSE r.progress END, \
            status = 'running', \
            lease_owner = $1, \
            lease_expires_at = now() + make_interval(secs => $2), \
            attempts = r.attempts + 1, \
            completed_at = NULL, \
            updated_at = now() \
         FROM picked \
         WHERE r.run_id = picked.run_id \
           AND (r.status = 'pending' OR (r.status = 'running' AND r.lease_expires_at < now())) \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(node)
    .bind::<BigInt, _>(lease_secs)
    .bind::<BigInt, _>(limit)
    .bind::<Integer, _>(max_attempts)
    .bind::<Array<Text>, _>(exclude)
    .load(conn)?;
    for r in &rows {
        mirror_run(conn, r, true)?;
    }
    Ok(rows)
}

/// Extends the leases `node` holds on the runs `ids`. Returns the ids it still owns, with
/// whether a cancel was requested for them.
pub fn renew_leases(
    conn: &mut PgConnection,
    node: &str,
    ids: &[String],
    lease_secs: i64,
) -> QueryResult<Vec<(String, bool)>> {
    let rows: Vec<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET lease_expires_at = now() + make_interval(secs => $3) \
         WHERE r.run_id = ANY($2) AND r.status = 'running' AND r.lease_owner = $1 \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(node)
    .bind::<Array<Text>, _>(ids)
    .bind::<BigInt, _>(lease_secs.max(0))
    .load(conn)?;
    mirror_all(conn, &rows)?;
    Ok(rows
        .into_iter()
        .map(|r| (r.run_id, r.cancel_requested_at.is_some()))
        .collect())
}

/// Records progress of a run this node owns. Returns false when the lease was lost.
pub fn set_progress(
    conn: &mut PgConnection,
    id: &str,
    node: &str,
    progress: i16,
) -> QueryResult<bool> {
    let row: Option<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET progress = $3, updated_at = now() \
         WHERE r.run_id = $1 AND r.status = 'running' AND r.lease_owner = $2 \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(id)
    .bind::<Text, _>(node)
    .bind::<SmallInt, _>(progress.clamp(0, 100))
    .get_result(conn)
    .optional()?;
    match row {
        Some(r) => {
            mirror(conn, &r)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Writes the end of a run (or its plan, for a run that waits for a decision): compare-and-set
/// on `running` and this node's lease. Returns None when another node owns the run now (our
/// lease expired) and nothing was written.
pub fn finish(
    conn: &mut PgConnection,
    id: &str,
    node: &str,
    outcome: &RunOutcome,
) -> QueryResult<Option<RunRow>> {
    let status = outcome.status();
    /// What a finish writes: outputs, error, progress and the saved plan.
    type Written<'a> = (
        Option<serde_json::Value>,
        Option<&'a str>,
        Option<i16>,
        Option<&'a [u8]>,
    );
    let (outputs, error, progress, plan): Written<'_> = match outcome {
        RunOutcome::Completed { outputs } => (Some(outputs.clone()), None, Some(100), None),
        RunOutcome::Planned { plan, .. } => (None, None, Some(100), Some(plan)),
        RunOutcome::Failed { error } => (None, Some(error), None, None),
        RunOutcome::Cancelled { reason } => (None, Some(reason), None, None),
        _ => (None, None, Some(100), None),
    };
    let summary = outcome
        .summary()
        .map(|s| serde_json::to_value(s).unwrap_or_default());
    let row: Option<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET status = $3, error_message = $4, outputs = COALESCE($5, r.outputs), \
            plan_summary = COALESCE($6, r.plan_summary), saved_plan = COALESCE($7, r.saved_plan), \
            progress = COALESCE($8, r.progress), \
            completed_at = CASE WHEN $3 = 'planned' THEN NULL ELSE now() END, \
            updated_at = now(), lease_owner = NULL, lease_expires_at = NULL \
         WHERE r.run_id = $1 AND r.status = 'running' AND r.lease_owner = $2 \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(id)
    .bind::<Text, _>(node)
    .bind::<Text, _>(status.as_str())
    .bind::<Nullable<Text>, _>(error)
    .bind::<Nullable<Jsonb>, _>(outputs)
    .bind::<Nullable<Jsonb>, _>(summary)
    .bind::<Nullable<Bytea>, _>(plan)
    .bind::<Nullable<SmallInt>, _>(progress)
    .get_result(conn)
    .optional()?;
    let Some(r) = row else { return Ok(None) };
    mirror_all(conn, std::slice::from_ref(&r))?;
    if let RunOutcome::DriftChecked { summary } = outcome {
        let drift = serde_json::json!({
            "status": if summary.is_empty() { "in_sync" } else { "drifted" },
            "checked_at": r.completed_at,
            "run_id": r.run_id,
            "resources": summary.resources,
        });
        diesel::update(deployments::table.find(&r.deployment_id))
            .set(deployments::drift.eq(drift))
            .execute(conn)?;
    } else if r.kind == "drift_check" && status == RunStatus::Failed {
        let drift = serde_json::json!({
            "status": "unknown", "checked_at": r.completed_at, "run_id": r.run_id,
            "resources": [], "error": r.error_message,
        });
        diesel::update(deployments::table.find(&r.deployment_id))
            .set(deployments::drift.eq(drift))
            .execute(conn)?;
    }
    Ok(Some(r))
}

/// Gives a run back (shutdown): its lease ends now, so the next start of this node or any
/// other node reclaims it at once. Returns false when this node did not own it.
pub fn release(conn: &mut PgConnection, id: &str, node: &str) -> QueryResult<bool> {
    let row: Option<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET lease_expires_at = now(), updated_at = now() \
         WHERE r.run_id = $1 AND r.status = 'running' AND r.lease_owner = $2 \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(id)
    .bind::<Text, _>(node)
    .get_result(conn)
    .optional()?;
    match row {
        Some(r) => {
            mirror(conn, &r)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `pending` or `planned` → `cancelled` at once; `running` → `cancel_requested_at` set for its
/// owner.
pub fn cancel(conn: &mut PgConnection, id: &str) -> QueryResult<CancelResult> {
    let stopped: Option<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET status = 'cancelled', \
            error_message = CASE WHEN r.status = 'planned' THEN 'cancelled by request while its plan waited for a decision' \
                                 ELSE 'cancelled by request before it started' END, \
            completed_at = now(), updated_at = now() \
         WHERE r.run_id = $1 AND r.status IN ('pending', 'planned') \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(id)
    .get_result(conn)
    .optional()?;
    if let Some(r) = stopped {
        mirror_all(conn, std::slice::from_ref(&r))?;
        return Ok(CancelResult::Cancelled);
    }
    let requested: Option<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET cancel_requested_at = now(), updated_at = now() \
         WHERE r.run_id = $1 AND r.status = 'running' \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(id)
    .get_result(conn)
    .optional()?;
    if let Some(r) = requested {
        mirror(conn, &r)?;
        return Ok(CancelResult::Requested);
    }
    Ok(match find(conn, id)? {
        Some(_) => CancelResult::AlreadyFinished,
        None => CancelResult::NotFound,
    })
}

/// The run a cancel of the deployment means: the head of its queue (the run it shows).
pub fn current_for(conn: &mut PgConnection, deployment_id: &str) -> QueryResult<Option<RunRow>> {
    diesel::sql_query(format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE r.deployment_id = $1 \
         AND r.kind NOT IN {SPECULATIVE} AND r.status IN {ACTIVE} ORDER BY r.queue_seq LIMIT 1"
    ))
    .bind::<Text, _>(deployment_id)
    .get_result(conn)
    .optional()
}

/// Serializes the lifecycle verbs of one deployment (destroy, update, plan, apply, discard,
/// cancel) for the rest of the transaction, so each sees the runs the others made, and reads
/// the deployment. A transaction-scoped advisory lock, not a row lock: claims and results
/// update run rows and then the deployment row, and a verb holding the deployment row while
/// it waits for a run row would deadlock with them.
pub fn lock_deployment(
    conn: &mut PgConnection,
    deployment_id: &str,
) -> QueryResult<Option<DeploymentRow>> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 11)) IS NULL")
        .bind::<Text, _>(deployment_id)
        .execute(conn)?;
    deployments::table
        .find(deployment_id)
        .select(DeploymentRow::as_select())
        .first(conn)
        .optional()
}

/// Inserts a run of a locked deployment and shows it when it is at the head of the queue.
pub fn enqueue(conn: &mut PgConnection, row: &NewRunRow) -> QueryResult<RunRow> {
    let run = insert(conn, row)?;
    mirror(conn, &run)?;
    Ok(run)
}

/// The run of the deployment whose plan waits for a decision.
pub fn planned_for(conn: &mut PgConnection, deployment_id: &str) -> QueryResult<Option<RunRow>> {
    diesel::sql_query(format!(
        "SELECT {RUN_COLUMNS} FROM runs r WHERE r.deployment_id = $1 AND r.status = 'planned' \
         ORDER BY r.queue_seq LIMIT 1"
    ))
    .bind::<Text, _>(deployment_id)
    .get_result(conn)
    .optional()
}

/// Whether the deployment has a run of this kind that holds its queue (pending, running or
/// planned).
pub fn has_active(
    conn: &mut PgConnection,
    deployment_id: &str,
    kind: RunKind,
) -> QueryResult<bool> {
    let n = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM runs r WHERE r.deployment_id = $1 AND r.kind = $2 \
         AND r.status IN {ACTIVE}"
    ))
    .bind::<Text, _>(deployment_id)
    .bind::<Text, _>(kind.as_str())
    .get_result::<Count>(conn)?
    .n;
    Ok(n > 0)
}

/// `planned` → `pending` with the decision recorded: the run applies its saved plan next.
/// None when it was not planned any more (another apply or a discard won).
pub fn approve(
    conn: &mut PgConnection,
    run_id: &str,
    approved_by: Option<&str>,
) -> QueryResult<Option<RunRow>> {
    let row: Option<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET status = 'pending', approved_at = now(), approved_by = $2, \
            attempts = 0, cancel_requested_at = NULL, updated_at = now() \
         WHERE r.run_id = $1 AND r.status = 'planned' \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(run_id)
    .bind::<Nullable<Text>, _>(approved_by)
    .get_result(conn)
    .optional()?;
    if let Some(r) = &row {
        mirror(conn, r)?;
    }
    Ok(row)
}

/// `planned` → `discarded`; its saved plan is dropped.
pub fn discard(conn: &mut PgConnection, run_id: &str) -> QueryResult<Option<RunRow>> {
    let row: Option<RunRow> = diesel::sql_query(format!(
        "UPDATE runs r SET status = 'discarded', saved_plan = NULL, \
            error_message = 'plan discarded by request', completed_at = now(), updated_at = now() \
         WHERE r.run_id = $1 AND r.status = 'planned' \
         RETURNING {RUN_COLUMNS}"
    ))
    .bind::<Text, _>(run_id)
    .get_result(conn)
    .optional()?;
    if let Some(r) = &row {
        mirror_all(conn, std::slice::from_ref(r))?;
    }
    Ok(row)
}

/// Scheduled drift checks: queues a check for up to `limit` completed deployments whose last
/// check (or apply) is older than `interval_secs`, oldest first, skipping those with a check
/// already waiting. One node at a time: a node that does not get the transaction-scoped lock
/// queues nothing. Returns the new runs' ids.
pub fn schedule_drift_checks(
    conn: &mut PgConnection,
    interval_secs: i64,
    limit: i64,
) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        run_id: String,
    }
    let locked = diesel::sql_query(format!(
        "SELECT pg_try_advisory_xact_lock({DRIFT_SCHEDULE_LOCK}) AS locked"
    ))
    .get_result::<Locked>(conn)?
    .locked;
    if !locked {
        return Ok(Vec::new());
    }
    let due = "COALESCE((d.drift ->> 'checked_at')::timestamptz, d.completed_at, d.created_at)";
    let ids: Vec<Id> = diesel::sql_query(format!(
        "INSERT INTO runs (run_id, deployment_id, kind, auto_apply, parameters, requested_by)          SELECT 'run-' || substr(md5(random()::text || d.deployment_id), 1, 16), d.deployment_id,                 'drift_check', false, d.parameters, 'schedule'          FROM deployments d          WHERE d.status = 'completed' AND d.applied_run_id IS NOT NULL            AND {due} < now() - make_interval(secs => $1)            AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.deployment_id = d.deployment_id                            AND r.kind = 'drift_check' AND r.status IN ('pending', 'running'))          ORDER BY {due}          LIMIT $2          RETURNING run_id"
    ))
    .bind::<BigInt, _>(interval_secs.max(1))
    .bind::<BigInt, _>(limit.max(0))
    .load(conn)?;
    Ok(ids.into_iter().map(|i| i.run_id).collect())
}

/// The advisory lock key of the drift schedule ("mcdrift").
const DRIFT_SCHEDULE_LOCK: i64 = 0x006d_6364_7269_6674;

/// Keeps a source a run ran (once per content) and records it on the run. Returns its hash.
pub fn record_source(conn: &mut PgConnection, run_id: &str, source: &str) -> QueryResult<String> {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(source.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    diesel::insert_into(template_sources::table)
        .values((
            template_sources::hash.eq(&hash),
            template_sources::source.eq(source),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    diesel::update(runs::table.find(run_id))
        .set(runs::template_hash.eq(&hash))
        .execute(conn)?;
    Ok(hash)
}

/// The template source a deployment was applied with (its applied run's; before any
/// completed apply, its newest run's that recorded one), with its hash.
pub fn applied_source(
    conn: &mut PgConnection,
    deployment_id: &str,
) -> QueryResult<Option<(String, String)>> {
    #[derive(QueryableByName)]
    struct Source {
        #[diesel(sql_type = Text)]
        hash: String,
        #[diesel(sql_type = Text)]
        source: String,
    }
    let found: Option<Source> = diesel::sql_query(
        "SELECT s.hash, s.source FROM runs r \
         JOIN deployments d ON d.deployment_id = r.deployment_id \
         JOIN template_sources s ON s.hash = r.template_hash \
         WHERE r.deployment_id = $1 AND r.kind IN ('deploy', 'update') \
         ORDER BY (r.run_id = d.applied_run_id) DESC, r.queue_seq DESC LIMIT 1",
    )
    .bind::<Text, _>(deployment_id)
    .get_result(conn)
    .optional()?;
    Ok(found.map(|s| (s.hash, s.source)))
}

/// The hash of the source a deployment was applied with (see `applied_source`).
pub fn applied_hash(conn: &mut PgConnection, deployment_id: &str) -> QueryResult<Option<String>> {
    Ok(applied_source(conn, deployment_id)?.map(|(hash, _)| hash))
}

/// Runs per status, for metrics.
pub fn count_by_status(conn: &mut PgConnection) -> QueryResult<Vec<(String, i64)>> {
    runs::table
        .group_by(runs::status)
        .select((runs::status, diesel::dsl::count_star()))
        .load(conn)
}

/// Whether the deployment may be destroyed now (and why not).
pub fn destroy_refusal(d: &DeploymentRow) -> Option<String> {
    let status: Result<DeploymentStatus, _> = d.status.parse();
    match status {
        Ok(DeploymentStatus::Completed | DeploymentStatus::Failed) => None,
        Ok(DeploymentStatus::Cancelled) if d.applied_run_id.is_some() => None,
        _ => Some(format!(
            "deployment {} is {}; only completed or failed deployments can be destroyed",
            d.deployment_id, d.status
        )),
    }
}

//! The messages of the persistence actor: one domain verb each, one transaction each.

use actix::prelude::*;
use diesel::Connection;
use diesel::pg::PgConnection;

use super::{PersistError, PersistenceActor};
use crate::db::models::{
    DeploymentRow, NewAuditRow, NewDeploymentRow, NewRunRow, NewWebhookRow, RunRow,
};
use crate::db::queries::{self, states::StateLocation};
use crate::domain::{
    AttemptResult, AuditEntry, AuditEvent, AuditFilter, CancelResult, Delivery, Deployment,
    DueDelivery, ListFilter, LogLine, NewDeployment, NewLogLine, NewRun, NewWebhook, Run, RunKind,
    RunOutcome, Webhook,
};

fn to_domain(rows: Vec<DeploymentRow>) -> Result<Vec<Deployment>, PersistError> {
    rows.into_iter()
        .map(|r| Deployment::try_from(r).map_err(PersistError::from))
        .collect()
}

impl PersistenceActor {
    fn tx<T>(
        &self,
        f: impl FnOnce(&mut PgConnection) -> Result<T, PersistError>,
    ) -> Result<T, PersistError> {
        let mut conn = self.conn()?;
        conn.transaction(|c| f(c))
    }
}

/// Inserts a `pending` deployment with its first run and commits before answering. With an
/// idempotency key already used, answers the first deployment when the request is the same, a
/// conflict when it differs.
#[derive(Message)]
#[rtype(result = "Result<Created, PersistError>")]
pub struct CreateDeployment(pub NewDeployment, pub NewRun, pub Option<AuditEntry>);

pub struct Created {
    pub deployment: Deployment,
    /// False when an earlier request with the same idempotency key made it.
    pub created: bool,
}

impl Handler<CreateDeployment> for PersistenceActor {
    type Result = Result<Created, PersistError>;

    fn handle(&mut self, msg: CreateDeployment, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| accept_one(conn, &msg))?
    }
}

/// Several accepts in one transaction (group commit: one commit, one WAL flush for all of
/// them). Each answer is its own: an idempotency conflict refuses only that request. Should
/// the database refuse a statement, the batch is rolled back and each accept is made again in
/// a transaction of its own, so one bad row never fails its neighbours.
#[derive(Message)]
#[rtype(result = "Vec<Result<Created, PersistError>>")]
pub struct CreateDeployments(pub Vec<CreateDeployment>);

impl Handler<CreateDeployments> for PersistenceActor {
    type Result = Vec<Result<Created, PersistError>>;

    fn handle(&mut self, msg: CreateDeployments, _: &mut SyncContext<Self>) -> Self::Result {
        // Without idempotency keys a batch is one statement, atomic without a transaction.
        let batch = if msg.0.iter().all(|m| m.0.idempotency_key.is_none()) {
            self.conn()
                .and_then(|mut conn| accept_many(&mut conn, &msg.0))
        } else {
            self.tx(|conn| accept_many(conn, &msg.0))
        };
        match batch {
            Ok(answers) => answers,
            Err(PersistError::Unavailable(m)) => msg
                .0
                .iter()
                .map(|_| Err(PersistError::Unavailable(m.clone())))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, size = msg.0.len(), "a batch of accepts failed; accepting one by one");
                msg.0
                    .iter()
                    .map(|one| self.tx(|conn| accept_one(conn, one)).and_then(|r| r))
                    .collect()
            }
        }
    }
}

/// Accepts inside the caller's transaction: those with an idempotency key one by one (they
/// may answer an earlier deployment), the others with one statement (a batch costs one
/// statement, not a few per accept).
fn accept_many(
    conn: &mut PgConnection,
    msgs: &[CreateDeployment],
) -> Result<Vec<Result<Created, PersistError>>, PersistError> {
    let mut answers: Vec<Option<Result<Created, PersistError>>> = Vec::with_capacity(msgs.len());
    let mut rows = AcceptRows::default();
    for msg in msgs {
        if msg.0.idempotency_key.is_some() {
            answers.push(Some(accept_one(conn, msg)?));
        } else {
            rows.push(msg);
            answers.push(None);
        }
    }
    let mut inserted: std::collections::HashMap<String, DeploymentRow> = rows
        .insert(conn)?
        .into_iter()
        .map(|r| (r.deployment_id.clone(), r))
        .collect();
    let mut ids = rows.deployments.into_iter().map(|r| r.deployment_id);
    answers
        .into_iter()
        .map(|answer| match answer {
            Some(a) => Ok(a),
            None => {
                let id = ids.next().unwrap_or_default();
                let row = inserted.remove(&id).ok_or_else(|| {
                    PersistError::Query(format!("deployment {id} was not returned by its insert"))
                })?;
                Ok(Ok(Created {
                    deployment: row.try_into()?,
                    created: true,
                }))
            }
        })
        .collect()
}

/// The rows of new accepts: their deployments, the first runs of those that wait for a
/// decision (a deploy that needs none gets its run when a runner claims it) and their audit
/// rows.
#[derive(Default)]
struct AcceptRows {
    deployments: Vec<NewDeploymentRow>,
    runs: Vec<NewRunRow>,
    audits: Vec<NewAuditRow>,
}

impl AcceptRows {
    fn push(&mut self, msg: &CreateDeployment) {
        let (new, run, audit) = (&msg.0, &msg.1, &msg.2);
        let row = NewDeploymentRow::from(new);
        let run_row = (!run.auto_apply).then(|| NewRunRow::new(&row.deployment_id, run));
        if let Some(a) = audit {
            let run_id = run_row.as_ref().map(|r| r.run_id.clone());
            self.audits.push(NewAuditRow::from(&a.clone().succeeded(
                202,
                row.deployment_id.clone(),
                run_id,
            )));
        }
        self.runs.extend(run_row);
        self.deployments.push(row);
    }

    fn insert(&self, conn: &mut PgConnection) -> Result<Vec<DeploymentRow>, PersistError> {
        Ok(queries::deployments::insert_accepted(
            conn,
            &self.deployments,
            &self.runs,
            &self.audits,
        )?)
    }
}

/// One accept inside the caller's transaction. `Err`: the database refused a statement (the
/// transaction must roll back); `Ok(Err(_))`: this request is refused (an idempotency key
/// reused with another body), nothing was written for it.
fn accept_one(
    conn: &mut PgConnection,
    msg: &CreateDeployment,
) -> Result<Result<Created, PersistError>, PersistError> {
    let (new, audit) = (&msg.0, &msg.2);
    let row = NewDeploymentRow::from(new);
    if let Some(key) = &new.idempotency_key
        && let Some(existing) = queries::deployments::find_by_idempotency_key(conn, key)?
    {
        let same = existing.provider_type == row.provider_type
            && existing.template_name == row.template_name
            && existing.resource_group == row.resource_group
            && existing.subscription_id == row.subscription_id
            && existing.location == row.location
            && existing.management_group == row.management_group
            && existing.parameters == row.parameters;
        if !same {
            return Ok(Err(PersistError::Conflict(
                "this Idempotency-Key was already used with a different request".into(),
            )));
        }
        if let Some(audit) = audit {
            let audit = audit
                .clone()
                .succeeded(202, existing.deployment_id.clone(), None);
            queries::audit::insert(conn, &NewAuditRow::from(&audit))?;
        }
        return Ok(Ok(Created {
            deployment: existing.try_into()?,
            created: false,
        }));
    }
    let mut rows = AcceptRows::default();
    rows.push(msg);
    let inserted = rows.insert(conn)?.pop().ok_or_else(|| {
        PersistError::Query(format!(
            "deployment {} was not returned by its insert",
            row.deployment_id
        ))
    })?;
    Ok(Ok(Created {
        deployment: inserted.try_into()?,
        created: true,
    }))
}

#[derive(Message)]
#[rtype(result = "Result<Deployment, PersistError>")]
pub struct GetDeployment(pub String);

impl Handler<GetDeployment> for PersistenceActor {
    type Result = Result<Deployment, PersistError>;

    fn handle(&mut self, msg: GetDeployment, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let row = queries::deployments::find(&mut conn, &msg.0)?.ok_or(PersistError::NotFound)?;
        Ok(row.try_into()?)
    }
}

#[derive(Message)]
#[rtype(result = "Result<Vec<Deployment>, PersistError>")]
pub struct ListDeployments(pub ListFilter);

impl Handler<ListDeployments> for PersistenceActor {
    type Result = Result<Vec<Deployment>, PersistError>;

    fn handle(&mut self, msg: ListDeployments, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        to_domain(queries::deployments::list(&mut conn, &msg.0)?)
    }
}

/// A run claimed by this node, with its deployment.
pub struct Claimed {
    pub run: Run,
    pub deployment: Deployment,
}

fn claimed(conn: &mut PgConnection, rows: Vec<RunRow>) -> Result<Vec<Claimed>, PersistError> {
    rows.into_iter()
        .map(|r| {
            let d = queries::deployments::find(conn, &r.deployment_id)?
                .ok_or(PersistError::NotFound)?;
            Ok(Claimed {
                run: r.try_into()?,
                deployment: d.try_into()?,
            })
        })
        .collect()
}

/// Claims up to `limit` runs for `node` (pending runs at the head of their deployment's queue,
/// and expired leases), after ending the runs that were interrupted `max_attempts` times.
#[derive(Message)]
#[rtype(result = "Result<Vec<Claimed>, PersistError>")]
pub struct ClaimRuns {
    pub node: String,
    /// Runs this node still runs (their leases may have expired during an outage).
    pub exclude: Vec<String>,
    pub limit: i64,
    pub lease_secs: i64,
    pub max_attempts: i32,
}

impl Handler<ClaimRuns> for PersistenceActor {
    type Result = Result<Vec<Claimed>, PersistError>;

    fn handle(&mut self, msg: ClaimRuns, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            queries::runs::cancel_orphaned(conn)?;
            let ended = queries::runs::fail_exhausted(conn, msg.max_attempts)?;
            if ended > 0 {
                tracing::warn!(count = ended, "ended runs interrupted too many times");
            }
            if msg.limit <= 0 {
                return Ok(Vec::new());
            }
            queries::runs::materialize_deploy_runs(conn, msg.limit)?;
            let rows = queries::runs::claim(
                conn,
                &msg.node,
                msg.lease_secs,
                msg.limit,
                msg.max_attempts,
                &msg.exclude,
            )?;
            claimed(conn, rows)
        })
    }
}

/// Extends this node's leases on runs; answers the run ids still owned and whether each was
/// asked to cancel.
#[derive(Message)]
#[rtype(result = "Result<Vec<(String, bool)>, PersistError>")]
pub struct RenewLeases {
    pub node: String,
    pub ids: Vec<String>,
    pub lease_secs: i64,
}

impl Handler<RenewLeases> for PersistenceActor {
    type Result = Result<Vec<(String, bool)>, PersistError>;

    fn handle(&mut self, msg: RenewLeases, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            Ok(queries::runs::renew_leases(
                conn,
                &msg.node,
                &msg.ids,
                msg.lease_secs,
            )?)
        })
    }
}

/// Appends a run's lines to its deployment's log; answers the last sequence number.
#[derive(Message)]
#[rtype(result = "Result<i64, PersistError>")]
pub struct AppendLogs {
    pub deployment_id: String,
    pub run_id: String,
    pub lines: Vec<NewLogLine>,
}

impl Handler<AppendLogs> for PersistenceActor {
    type Result = Result<i64, PersistError>;

    fn handle(&mut self, msg: AppendLogs, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            Ok(queries::logs::append(
                conn,
                &msg.deployment_id,
                &msg.run_id,
                &msg.lines,
            )?)
        })
    }
}

/// Which lines of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogScope {
    /// Its newest run's.
    Latest,
    /// One run's.
    Run(String),
    /// Every run's, in order.
    All,
}

/// A page of log lines and the run they belong to (none for `All`).
pub struct LogPage {
    pub lines: Vec<LogLine>,
    pub run: Option<Run>,
}

#[derive(Message)]
#[rtype(result = "Result<LogPage, PersistError>")]
pub struct GetLogs {
    pub deployment_id: String,
    pub scope: LogScope,
    pub after: i64,
    pub limit: i64,
}

impl Handler<GetLogs> for PersistenceActor {
    type Result = Result<LogPage, PersistError>;

    fn handle(&mut self, msg: GetLogs, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let run = match &msg.scope {
            LogScope::All => None,
            LogScope::Latest => queries::runs::latest_for(&mut conn, &msg.deployment_id)?,
            LogScope::Run(id) => {
                Some(queries::runs::find(&mut conn, id)?.ok_or(PersistError::NotFound)?)
            }
        };
        let run_id = run.as_ref().map(|r| r.run_id.clone());
        let rows = match (&msg.scope, &run_id) {
            // A deployment without runs (cannot happen after the migration) has no lines.
            (LogScope::Latest, None) => Vec::new(),
            _ => queries::logs::page(
                &mut conn,
                &msg.deployment_id,
                run_id.as_deref(),
                msg.after,
                msg.limit,
            )?,
        };
        Ok(LogPage {
            lines: rows.into_iter().map(LogLine::from).collect(),
            run: run.map(Run::try_from).transpose()?,
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<bool, PersistError>")]
pub struct SetProgress {
    pub run_id: String,
    pub node: String,
    pub progress: u8,
}

impl Handler<SetProgress> for PersistenceActor {
    type Result = Result<bool, PersistError>;

    fn handle(&mut self, msg: SetProgress, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            Ok(queries::runs::set_progress(
                conn,
                &msg.run_id,
                &msg.node,
                msg.progress as i16,
            )?)
        })
    }
}

/// Writes the end of a run, or its plan when it waits for a decision (compare-and-set on
/// `running` and the lease owner). Answers false when this node no longer owns the run.
#[derive(Message)]
#[rtype(result = "Result<bool, PersistError>")]
pub struct FinishRun {
    pub run_id: String,
    pub node: String,
    pub outcome: RunOutcome,
}

impl Handler<FinishRun> for PersistenceActor {
    type Result = Result<bool, PersistError>;

    fn handle(&mut self, msg: FinishRun, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            Ok(queries::runs::finish(conn, &msg.run_id, &msg.node, &msg.outcome)?.is_some())
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct RecordTerraformState(pub StateLocation);

impl Handler<RecordTerraformState> for PersistenceActor {
    type Result = Result<(), PersistError>;

    fn handle(&mut self, msg: RecordTerraformState, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        queries::states::record(&mut conn, &msg.0)?;
        Ok(())
    }
}

/// Deployments and runs per status and the pool's use, for `/metrics`.
#[derive(Message)]
#[rtype(result = "Result<DatabaseStats, PersistError>")]
pub struct GetDatabaseStats;

pub struct DatabaseStats {
    pub by_status: Vec<(String, i64)>,
    pub runs_by_status: Vec<(String, i64)>,
    pub deliveries_by_status: Vec<(String, i64)>,
    pub pool_connections: u32,
    pub pool_idle: u32,
}

impl Handler<GetDatabaseStats> for PersistenceActor {
    type Result = Result<DatabaseStats, PersistError>;

    fn handle(&mut self, _: GetDatabaseStats, _: &mut SyncContext<Self>) -> Self::Result {
        let state = self.pool.state();
        let mut conn = self.conn()?;
        Ok(DatabaseStats {
            by_status: queries::deployments::count_by_status(&mut conn)?,
            runs_by_status: queries::runs::count_by_status(&mut conn)?,
            deliveries_by_status: queries::webhooks::count_by_status(&mut conn)?,
            pool_connections: state.connections,
            pool_idle: state.idle_connections,
        })
    }
}

/// Wakes the other nodes: pending work waits that this node can't take now.
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct AnnouncePending;

impl Handler<AnnouncePending> for PersistenceActor {
    type Result = Result<(), PersistError>;

    fn handle(&mut self, _: AnnouncePending, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        Ok(crate::db::notify::announce_pending(&mut conn)?)
    }
}

/// Proves the database answers (`/health`).
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct Ping;

impl Handler<Ping> for PersistenceActor {
    type Result = Result<(), PersistError>;

    fn handle(&mut self, _: Ping, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        Ok(queries::deployments::ping(&mut conn)?)
    }
}

/// Gives a run back on shutdown so that another node (or the next start) takes it over.
#[derive(Message)]
#[rtype(result = "Result<bool, PersistError>")]
pub struct ReleaseRun {
    pub run_id: String,
    pub node: String,
}

impl Handler<ReleaseRun> for PersistenceActor {
    type Result = Result<bool, PersistError>;

    fn handle(&mut self, msg: ReleaseRun, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| Ok(queries::runs::release(conn, &msg.run_id, &msg.node)?))
    }
}

/// `POST /deployments/{id}/cancel`: cancels the run at the head of the deployment's queue.
#[derive(Message)]
#[rtype(result = "Result<Cancelled, PersistError>")]
pub struct CancelDeployment(pub String, pub Option<AuditEntry>);

pub struct Cancelled {
    pub result: CancelResult,
    /// The run it applied to.
    pub run_id: Option<String>,
}

impl Handler<CancelDeployment> for PersistenceActor {
    type Result = Result<Cancelled, PersistError>;

    fn handle(&mut self, msg: CancelDeployment, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            if queries::runs::lock_deployment(conn, &msg.0)?.is_none() {
                return Ok(Cancelled {
                    result: CancelResult::NotFound,
                    run_id: None,
                });
            }
            queries::runs::ensure_deploy_run(conn, &msg.0)?;
            match queries::runs::current_for(conn, &msg.0)? {
                None => Ok(Cancelled {
                    result: CancelResult::AlreadyFinished,
                    run_id: None,
                }),
                Some(run) => {
                    let result = queries::runs::cancel(conn, &run.run_id)?;
                    if let Some(audit) = msg.1
                        && matches!(result, CancelResult::Cancelled | CancelResult::Requested)
                    {
                        let audit = audit.succeeded(202, msg.0.clone(), Some(run.run_id.clone()));
                        queries::audit::insert(conn, &NewAuditRow::from(&audit))?;
                    }
                    Ok(Cancelled {
                        result,
                        run_id: Some(run.run_id),
                    })
                }
            }
        })
    }
}

/// Queues a run on an existing deployment (destroy, update, plan, drift check) after checking
/// that the deployment can take it now; answers the deployment (as it shows now) and the run.
#[derive(Message)]
#[rtype(result = "Result<(Deployment, Run), PersistError>")]
pub struct QueueRun {
    pub deployment_id: String,
    pub run: NewRun,
    pub audit: Option<AuditEntry>,
}

impl Handler<QueueRun> for PersistenceActor {
    type Result = Result<(Deployment, Run), PersistError>;

    fn handle(&mut self, msg: QueueRun, _: &mut SyncContext<Self>) -> Self::Result {
        let id = msg.deployment_id;
        self.tx(|conn| {
            let d = queries::runs::lock_deployment(conn, &id)?.ok_or(PersistError::NotFound)?;
            queries::runs::ensure_deploy_run(conn, &id)?;
            let conflict = |m: String| Err(PersistError::Conflict(m));
            if d.status == "destroyed" {
                return conflict(format!("deployment {id} is destroyed"));
            }
            if queries::runs::has_active(conn, &id, RunKind::Destroy)? {
                return conflict(format!("deployment {id} is being destroyed"));
            }
            match msg.run.kind {
                RunKind::Destroy => {
                    if let Some(why) = queries::runs::destroy_refusal(&d) {
                        return conflict(why);
                    }
                    if queries::runs::planned_for(conn, &id)?.is_some() {
                        return conflict(format!(
                            "deployment {id} has a planned run waiting for a decision: apply or discard it first"
                        ));
                    }
                }
                RunKind::DriftCheck if d.applied_run_id.is_none() => {
                    return conflict(format!(
                        "deployment {id} has never been applied: there is nothing to compare with the cloud"
                    ));
                }
                RunKind::Deploy => {
                    return conflict("a deployment has one deploy run".into());
                }
                _ => {}
            }
            let mut row = NewRunRow::new(&id, &msg.run);
            if matches!(msg.run.kind, RunKind::Destroy | RunKind::DriftCheck) {
                // They act on what is deployed: the deployment's values as read under the lock.
                row.parameters = d.parameters.clone();
            }
            if msg.run.kind == RunKind::Update {
                row.base_template_hash = queries::runs::applied_hash(conn, &id)?;
            }
            let run = queries::runs::enqueue(conn, &row)?;
            if let Some(audit) = msg.audit {
                let audit = audit.succeeded(202, id.clone(), Some(run.run_id.clone()));
                queries::audit::insert(conn, &NewAuditRow::from(&audit))?;
            }
            let d = queries::deployments::find(conn, &id)?.ok_or(PersistError::NotFound)?;
            Ok((d.try_into()?, run.try_into()?))
        })
    }
}

/// `POST /deployments/{id}/apply` (approve) or `/discard`: decides the deployment's planned run.
/// Conflict when no run waits for a decision (or another request decided it first).
#[derive(Message)]
#[rtype(result = "Result<(Deployment, Run), PersistError>")]
pub struct DecidePlan {
    pub deployment_id: String,
    pub approve: bool,
    pub by: Option<String>,
    /// Refuse an approval by the token that requested the run.
    pub four_eyes: bool,
    pub audit: Option<AuditEntry>,
}

impl Handler<DecidePlan> for PersistenceActor {
    type Result = Result<(Deployment, Run), PersistError>;

    fn handle(&mut self, msg: DecidePlan, _: &mut SyncContext<Self>) -> Self::Result {
        let id = msg.deployment_id;
        self.tx(|conn| {
            queries::runs::lock_deployment(conn, &id)?.ok_or(PersistError::NotFound)?;
            let planned = queries::runs::planned_for(conn, &id)?.ok_or_else(|| {
                PersistError::Conflict(format!(
                    "deployment {id} has no planned run waiting for a decision"
                ))
            })?;
            if msg.approve
                && msg.four_eyes
                && planned.requested_by.is_some()
                && planned.requested_by == msg.by
            {
                return Err(PersistError::Forbidden(format!(
                    "four-eyes rule (auth.four_eyes): run {} was requested by {:?}, who cannot also apply it; another approver must",
                    planned.run_id,
                    msg.by.unwrap_or_default()
                )));
            }
            let decided = if msg.approve {
                queries::runs::approve(conn, &planned.run_id, msg.by.as_deref())?
            } else {
                queries::runs::discard(conn, &planned.run_id)?
            };
            let run = decided.ok_or_else(|| {
                PersistError::Conflict(format!("run {} was decided already", planned.run_id))
            })?;
            if let Some(audit) = msg.audit {
                let status = if msg.approve { 202 } else { 200 };
                let audit = audit.succeeded(status, id.clone(), Some(run.run_id.clone()));
                queries::audit::insert(conn, &NewAuditRow::from(&audit))?;
            }
            let d = queries::deployments::find(conn, &id)?.ok_or(PersistError::NotFound)?;
            Ok((d.try_into()?, run.try_into()?))
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<Run, PersistError>")]
pub struct GetRun(pub String);

impl Handler<GetRun> for PersistenceActor {
    type Result = Result<Run, PersistError>;

    fn handle(&mut self, msg: GetRun, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let row = queries::runs::find(&mut conn, &msg.0)?.ok_or(PersistError::NotFound)?;
        Ok(row.try_into()?)
    }
}

/// A deployment's runs, newest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<Run>, PersistError>")]
pub struct ListRuns {
    pub deployment_id: String,
    /// The `queue_seq` of the last run of the previous page.
    pub before: Option<i64>,
    pub limit: i64,
}

impl Handler<ListRuns> for PersistenceActor {
    type Result = Result<Vec<Run>, PersistError>;

    fn handle(&mut self, msg: ListRuns, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        queries::runs::list_for(&mut conn, &msg.deployment_id, msg.before, msg.limit)?
            .into_iter()
            .map(|r| Run::try_from(r).map_err(PersistError::from))
            .collect()
    }
}

/// What a run needs from the database before its engine starts: the saved plan (sealed) of a
/// confirmed run, and the template source its deployment was applied with.
#[derive(Message)]
#[rtype(result = "Result<RunInputs, PersistError>")]
pub struct GetRunInputs {
    pub run_id: String,
    pub deployment_id: String,
    pub saved_plan: bool,
    pub applied_source: bool,
}

#[derive(Default)]
pub struct RunInputs {
    pub saved_plan: Option<Vec<u8>>,
    pub applied_source: Option<String>,
}

impl Handler<GetRunInputs> for PersistenceActor {
    type Result = Result<RunInputs, PersistError>;

    fn handle(&mut self, msg: GetRunInputs, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let mut inputs = RunInputs::default();
        if msg.saved_plan {
            inputs.saved_plan = queries::runs::saved_plan(&mut conn, &msg.run_id)?;
        }
        if msg.applied_source {
            inputs.applied_source =
                queries::runs::applied_source(&mut conn, &msg.deployment_id)?.map(|(_, s)| s);
        }
        Ok(inputs)
    }
}

/// Keeps the template source a run ran and records its hash on the run.
#[derive(Message)]
#[rtype(result = "Result<String, PersistError>")]
pub struct RecordRunSource {
    pub run_id: String,
    pub source: String,
}

impl Handler<RecordRunSource> for PersistenceActor {
    type Result = Result<String, PersistError>;

    fn handle(&mut self, msg: RecordRunSource, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            Ok(queries::runs::record_source(
                conn,
                &msg.run_id,
                &msg.source,
            )?)
        })
    }
}
/// Queues the scheduled drift checks that are due (one node at a time); answers their run ids.
#[derive(Message)]
#[rtype(result = "Result<Vec<String>, PersistError>")]
pub struct ScheduleDriftChecks {
    pub interval_secs: i64,
    pub limit: i64,
}

impl Handler<ScheduleDriftChecks> for PersistenceActor {
    type Result = Result<Vec<String>, PersistError>;

    fn handle(&mut self, msg: ScheduleDriftChecks, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            Ok(queries::runs::schedule_drift_checks(
                conn,
                msg.interval_secs,
                msg.limit,
            )?)
        })
    }
}

/// Writes one audit row on its own: a refusal (nothing changed with it), or a change made
/// outside the database (an Azure resource group).
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct RecordAudit(pub AuditEntry);

impl Handler<RecordAudit> for PersistenceActor {
    type Result = Result<(), PersistError>;

    fn handle(&mut self, msg: RecordAudit, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        Ok(queries::audit::insert(
            &mut conn,
            &NewAuditRow::from(&msg.0),
        )?)
    }
}

#[derive(Message)]
#[rtype(result = "Result<Vec<AuditEvent>, PersistError>")]
pub struct ListAudit(pub AuditFilter);

impl Handler<ListAudit> for PersistenceActor {
    type Result = Result<Vec<AuditEvent>, PersistError>;

    fn handle(&mut self, msg: ListAudit, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let rows = queries::audit::list(&mut conn, &msg.0)?;
        Ok(rows.into_iter().map(AuditEvent::from).collect())
    }
}

/// Retention: deletes audit rows and finished webhook deliveries older than their cutoffs
/// (`None`: keep), a batch at a time. Answers how many rows went.
#[derive(Message)]
#[rtype(result = "Result<usize, PersistError>")]
pub struct PruneHistory {
    pub audit_before: Option<chrono::DateTime<chrono::Utc>>,
    pub deliveries_before: Option<chrono::DateTime<chrono::Utc>>,
    pub batch: i64,
}

impl Handler<PruneHistory> for PersistenceActor {
    type Result = Result<usize, PersistError>;

    fn handle(&mut self, msg: PruneHistory, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let mut n = 0;
        if let Some(cutoff) = msg.audit_before {
            n += queries::audit::prune(&mut conn, cutoff, msg.batch)?;
        }
        if let Some(cutoff) = msg.deliveries_before {
            n += queries::webhooks::prune(&mut conn, cutoff, msg.batch)?;
        }
        Ok(n)
    }
}

#[derive(Message)]
#[rtype(result = "Result<Webhook, PersistError>")]
pub struct CreateWebhook {
    pub webhook: NewWebhook,
    pub audit: Option<AuditEntry>,
}

impl Handler<CreateWebhook> for PersistenceActor {
    type Result = Result<Webhook, PersistError>;

    fn handle(&mut self, msg: CreateWebhook, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            let row = queries::webhooks::insert(conn, &NewWebhookRow::from(&msg.webhook))?;
            if let Some(audit) = msg.audit {
                let audit = audit.succeeded(201, row.webhook_id.clone(), None);
                queries::audit::insert(conn, &NewAuditRow::from(&audit))?;
            }
            Ok(row.into())
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<Vec<Webhook>, PersistError>")]
pub struct ListWebhooks;

impl Handler<ListWebhooks> for PersistenceActor {
    type Result = Result<Vec<Webhook>, PersistError>;

    fn handle(&mut self, _: ListWebhooks, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let rows = queries::webhooks::list(&mut conn)?;
        Ok(rows.into_iter().map(Webhook::from).collect())
    }
}

#[derive(Message)]
#[rtype(result = "Result<Webhook, PersistError>")]
pub struct GetWebhook(pub String);

impl Handler<GetWebhook> for PersistenceActor {
    type Result = Result<Webhook, PersistError>;

    fn handle(&mut self, msg: GetWebhook, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let row = queries::webhooks::find(&mut conn, &msg.0)?.ok_or(PersistError::NotFound)?;
        Ok(row.into())
    }
}

/// Deletes a webhook with its pending deliveries.
#[derive(Message)]
#[rtype(result = "Result<(), PersistError>")]
pub struct DeleteWebhook {
    pub webhook_id: String,
    pub audit: Option<AuditEntry>,
}

impl Handler<DeleteWebhook> for PersistenceActor {
    type Result = Result<(), PersistError>;

    fn handle(&mut self, msg: DeleteWebhook, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            if !queries::webhooks::delete(conn, &msg.webhook_id)? {
                return Err(PersistError::NotFound);
            }
            if let Some(audit) = msg.audit {
                let audit = audit.succeeded(200, msg.webhook_id.clone(), None);
                queries::audit::insert(conn, &NewAuditRow::from(&audit))?;
            }
            Ok(())
        })
    }
}

/// A webhook's deliveries, newest first (NotFound for an unknown webhook).
#[derive(Message)]
#[rtype(result = "Result<Vec<Delivery>, PersistError>")]
pub struct ListDeliveries {
    pub webhook_id: String,
    pub before: Option<i64>,
    pub limit: i64,
}

impl Handler<ListDeliveries> for PersistenceActor {
    type Result = Result<Vec<Delivery>, PersistError>;

    fn handle(&mut self, msg: ListDeliveries, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        queries::webhooks::find(&mut conn, &msg.webhook_id)?.ok_or(PersistError::NotFound)?;
        let rows =
            queries::webhooks::deliveries(&mut conn, &msg.webhook_id, msg.before, msg.limit)?;
        Ok(rows.into_iter().map(Delivery::from).collect())
    }
}

#[derive(Message)]
#[rtype(result = "Result<Delivery, PersistError>")]
pub struct Redeliver {
    pub webhook_id: String,
    pub delivery_id: i64,
    pub audit: Option<AuditEntry>,
}

impl Handler<Redeliver> for PersistenceActor {
    type Result = Result<Delivery, PersistError>;

    fn handle(&mut self, msg: Redeliver, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            let row = queries::webhooks::redeliver(conn, &msg.webhook_id, msg.delivery_id)?
                .ok_or(PersistError::NotFound)?;
            if let Some(audit) = msg.audit {
                let audit = audit.succeeded(202, msg.webhook_id.clone(), None);
                queries::audit::insert(conn, &NewAuditRow::from(&audit))?;
            }
            crate::db::notify::announce_webhooks(conn)?;
            Ok(row.into())
        })
    }
}

/// Claims due webhook deliveries for this node.
#[derive(Message)]
#[rtype(result = "Result<Vec<DueDelivery>, PersistError>")]
pub struct ClaimDeliveries {
    pub node: String,
    pub lease_secs: i64,
    pub limit: i64,
}

impl Handler<ClaimDeliveries> for PersistenceActor {
    type Result = Result<Vec<DueDelivery>, PersistError>;

    fn handle(&mut self, msg: ClaimDeliveries, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            let rows = queries::webhooks::claim(conn, &msg.node, msg.lease_secs, msg.limit)?;
            Ok(rows.into_iter().map(DueDelivery::from).collect())
        })
    }
}

/// Records how a delivery attempt ended (ignored when the lease was lost meanwhile).
#[derive(Message)]
#[rtype(result = "Result<bool, PersistError>")]
pub struct FinishDelivery {
    pub delivery_id: i64,
    pub node: String,
    pub result: AttemptResult,
}

impl Handler<FinishDelivery> for PersistenceActor {
    type Result = Result<bool, PersistError>;

    fn handle(&mut self, msg: FinishDelivery, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        Ok(queries::webhooks::finish(
            &mut conn,
            msg.delivery_id,
            &msg.node,
            &msg.result,
        )?)
    }
}

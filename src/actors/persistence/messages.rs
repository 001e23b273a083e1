//! The messages of the persistence actor: one domain verb each, one transaction each.

use actix::prelude::*;
use diesel::Connection;
use diesel::pg::PgConnection;

use super::{PersistError, PersistenceActor};
use crate::db::models::{DeploymentRow, NewDeploymentRow};
use crate::db::queries::{self, deployments::ListFilter, states::StateLocation};
use crate::domain::{Deployment, LogLine, NewDeployment, NewLogLine, RunOutcome};

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

/// Inserts a `pending` deployment and commits before answering. With an idempotency key
/// already used, answers the first deployment when the request is the same, a conflict when
/// it differs.
#[derive(Message)]
#[rtype(result = "Result<Created, PersistError>")]
pub struct CreateDeployment(pub NewDeployment);

pub struct Created {
    pub deployment: Deployment,
    /// False when an earlier request with the same idempotency key made it.
    pub created: bool,
}

impl Handler<CreateDeployment> for PersistenceActor {
    type Result = Result<Created, PersistError>;

    fn handle(&mut self, msg: CreateDeployment, _: &mut SyncContext<Self>) -> Self::Result {
        let new = msg.0;
        let row = NewDeploymentRow::from(&new);
        self.tx(|conn| {
            if let Some(key) = &new.idempotency_key
                && let Some(existing) = queries::deployments::find_by_idempotency_key(conn, key)?
            {
                let same = existing.provider_type == row.provider_type
                    && existing.template_name == row.template_name
                    && existing.resource_group == row.resource_group
                    && existing.subscription_id == row.subscription_id
                    && existing.location == row.location
                    && existing.parameters == row.parameters;
                if !same {
                    return Err(PersistError::Conflict(
                        "this Idempotency-Key was already used with a different request".into(),
                    ));
                }
                return Ok(Created {
                    deployment: existing.try_into()?,
                    created: false,
                });
            }
            let inserted = queries::deployments::insert(conn, &row)?;
            Ok(Created {
                deployment: inserted.try_into()?,
                created: true,
            })
        })
    }
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

/// Claims up to `limit` runs for `node` (pending rows and expired leases), after ending the
/// runs that were interrupted `max_attempts` times.
#[derive(Message)]
#[rtype(result = "Result<Vec<Deployment>, PersistError>")]
pub struct ClaimRuns {
    pub node: String,
    /// Runs this node still runs (their leases may have expired during an outage).
    pub exclude: Vec<String>,
    pub limit: i64,
    pub lease_secs: i64,
    pub max_attempts: i32,
}

impl Handler<ClaimRuns> for PersistenceActor {
    type Result = Result<Vec<Deployment>, PersistError>;

    fn handle(&mut self, msg: ClaimRuns, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            queries::deployments::cancel_orphaned(conn)?;
            let ended = queries::deployments::fail_exhausted(conn, msg.max_attempts)?;
            if ended > 0 {
                tracing::warn!(count = ended, "ended runs interrupted too many times");
            }
            if msg.limit <= 0 {
                return Ok(Vec::new());
            }
            to_domain(queries::deployments::claim(
                conn,
                &msg.node,
                msg.lease_secs,
                msg.limit,
                msg.max_attempts,
                &msg.exclude,
            )?)
        })
    }
}

/// Extends this node's leases; answers the ids still owned and whether each was asked to cancel.
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
        let mut conn = self.conn()?;
        Ok(queries::deployments::renew_leases(
            &mut conn,
            &msg.node,
            &msg.ids,
            msg.lease_secs,
        )?)
    }
}

/// Appends lines to a deployment's log; answers the last sequence number.
#[derive(Message)]
#[rtype(result = "Result<i64, PersistError>")]
pub struct AppendLogs {
    pub deployment_id: String,
    pub lines: Vec<NewLogLine>,
}

impl Handler<AppendLogs> for PersistenceActor {
    type Result = Result<i64, PersistError>;

    fn handle(&mut self, msg: AppendLogs, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| Ok(queries::logs::append(conn, &msg.deployment_id, &msg.lines)?))
    }
}

#[derive(Message)]
#[rtype(result = "Result<Vec<LogLine>, PersistError>")]
pub struct GetLogs {
    pub deployment_id: String,
    pub after: i64,
    pub limit: i64,
}

impl Handler<GetLogs> for PersistenceActor {
    type Result = Result<Vec<LogLine>, PersistError>;

    fn handle(&mut self, msg: GetLogs, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        let rows = queries::logs::page(&mut conn, &msg.deployment_id, msg.after, msg.limit)?;
        Ok(rows.into_iter().map(LogLine::from).collect())
    }
}

#[derive(Message)]
#[rtype(result = "Result<bool, PersistError>")]
pub struct SetProgress {
    pub deployment_id: String,
    pub node: String,
    pub progress: u8,
}

impl Handler<SetProgress> for PersistenceActor {
    type Result = Result<bool, PersistError>;

    fn handle(&mut self, msg: SetProgress, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        Ok(queries::deployments::set_progress(
            &mut conn,
            &msg.deployment_id,
            &msg.node,
            msg.progress as i16,
        )?)
    }
}

/// Writes the end of a run (compare-and-set on `running` and the lease owner). Answers false
/// when this node no longer owns the run.
#[derive(Message)]
#[rtype(result = "Result<bool, PersistError>")]
pub struct FinishRun {
    pub deployment_id: String,
    pub node: String,
    pub outcome: RunOutcome,
}

impl Handler<FinishRun> for PersistenceActor {
    type Result = Result<bool, PersistError>;

    fn handle(&mut self, msg: FinishRun, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| {
            Ok(queries::deployments::finish(
                conn,
                &msg.deployment_id,
                &msg.node,
                &msg.outcome,
            )?)
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

/// Deployments per status and the pool's use, for `/metrics`.
#[derive(Message)]
#[rtype(result = "Result<DatabaseStats, PersistError>")]
pub struct GetDatabaseStats;

pub struct DatabaseStats {
    pub by_status: Vec<(String, i64)>,
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
    pub deployment_id: String,
    pub node: String,
}

impl Handler<ReleaseRun> for PersistenceActor {
    type Result = Result<bool, PersistError>;

    fn handle(&mut self, msg: ReleaseRun, _: &mut SyncContext<Self>) -> Self::Result {
        let mut conn = self.conn()?;
        Ok(queries::deployments::release(
            &mut conn,
            &msg.deployment_id,
            &msg.node,
        )?)
    }
}

/// `POST /deployments/{id}/cancel`.
#[derive(Message)]
#[rtype(result = "Result<queries::deployments::CancelResult, PersistError>")]
pub struct CancelDeployment(pub String);

impl Handler<CancelDeployment> for PersistenceActor {
    type Result = Result<queries::deployments::CancelResult, PersistError>;

    fn handle(&mut self, msg: CancelDeployment, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| Ok(queries::deployments::cancel(conn, &msg.0)?))
    }
}

/// `DELETE /deployments/{id}`: queue a destroy run. Conflict when the deployment is running,
/// pending, cancelled or already destroyed.
#[derive(Message)]
#[rtype(result = "Result<Deployment, PersistError>")]
pub struct QueueDestroy(pub String);

impl Handler<QueueDestroy> for PersistenceActor {
    type Result = Result<Deployment, PersistError>;

    fn handle(&mut self, msg: QueueDestroy, _: &mut SyncContext<Self>) -> Self::Result {
        self.tx(|conn| match queries::deployments::queue_destroy(conn, &msg.0)? {
            Some(row) => Ok(row.try_into()?),
            None => match queries::deployments::find(conn, &msg.0)? {
                None => Err(PersistError::NotFound),
                Some(row) => Err(PersistError::Conflict(format!(
                    "deployment {} is {}; only completed or failed deployments can be destroyed",
                    row.deployment_id, row.status
                ))),
            },
        })
    }
}

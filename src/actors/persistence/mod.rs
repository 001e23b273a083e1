//! `PersistenceActor`: a `SyncArbiter` of N threads sharing one r2d2 pool. Every message is one
//! domain verb and one transaction; handlers get a connection, open the transaction and call
//! `db::queries`. Nothing else in the program touches diesel.
//!
//! Sizing: the pool is built once, outside the arbiter's factory (a sync actor that stops is
//! restarted by calling the factory again), with `threads` connections plus headroom for
//! start-up work. A SyncArbiter applies no backpressure, so callers bound their sends with a
//! timeout (see `PersistenceHandle`) and map it to 503.

mod batch;
mod messages;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use messages::*;

use crate::db::{DbConn, DbPool};

pub struct PersistenceActor {
    pool: DbPool,
}

impl Actor for PersistenceActor {
    type Context = SyncContext<Self>;
}

impl PersistenceActor {
    /// Starts `threads` sync workers over `pool`.
    pub fn start(pool: DbPool, threads: usize) -> Addr<PersistenceActor> {
        SyncArbiter::start(threads.max(1), move || PersistenceActor {
            pool: pool.clone(),
        })
    }

    fn conn(&self) -> Result<DbConn, PersistError> {
        self.pool
            .get()
            .map_err(|e| PersistError::Unavailable(e.to_string()))
    }
}

/// Errors of the persistence layer, mapped to HTTP statuses at the edge.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The database can't be reached (pool timeout, connection refused): 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// A compare-and-set found another state (or an idempotency key reused): 409.
    #[error("{0}")]
    Conflict(String),
    /// A rule refuses it (four-eyes): 403.
    #[error("{0}")]
    Forbidden(String),
    /// A stored value this version does not understand.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Query(String),
}

impl From<diesel::result::Error> for PersistError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => PersistError::NotFound,
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                PersistError::Unavailable(info.message().to_string())
            }
            Error::DatabaseError(_, info) if connection_lost(info.message()) => {
                PersistError::Unavailable(info.message().to_string())
            }
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                PersistError::Conflict(info.message().to_string())
            }
            other => PersistError::Query(other.to_string()),
        }
    }
}

/// libpq's words for a connection that died under a query (server restart, network).
fn connection_lost(message: &str) -> bool {
    [
        "server closed the connection",
        "terminating connection",
        "no connection to the server",
        "could not receive data",
        "could not send data",
        "the database system is shutting down",
        "the database system is starting up",
    ]
    .iter()
    .any(|m| message.contains(m))
}

impl From<crate::domain::UnknownValue> for PersistError {
    fn from(e: crate::domain::UnknownValue) -> Self {
        PersistError::Corrupt(e.to_string())
    }
}

/// The address of the persistence actor with a bound on how long a caller waits, and the
/// group commit of accepts in front of it.
#[derive(Clone)]
pub struct PersistenceHandle {
    addr: Addr<PersistenceActor>,
    timeout: Duration,
    accepts: Addr<batch::AcceptBatcher>,
    shared: Arc<batch::Accepts>,
}

impl PersistenceHandle {
    /// Needs a running actix system (the batcher of accepts starts on it).
    pub fn new(addr: Addr<PersistenceActor>, timeout: Duration) -> PersistenceHandle {
        let shared = Arc::new(batch::Accepts::default());
        let accepts = batch::AcceptBatcher::new(addr.clone(), timeout, shared.clone()).start();
        PersistenceHandle {
            addr,
            timeout,
            accepts,
            shared,
        }
    }

    /// Commits an accepted deployment together with the others arriving meanwhile (group
    /// commit) and answers once it is durable. With nothing in flight it commits alone,
    /// straight from the caller's thread.
    pub async fn accept(&self, msg: CreateDeployment) -> Result<Created, PersistError> {
        if let Some(slot) = self.shared.try_alone(&self.accepts) {
            let answer = self
                .addr
                .send(CreateDeployments(vec![msg]))
                .timeout(self.timeout)
                .await;
            drop(slot);
            return match answer {
                Ok(mut answers) => answers.pop().unwrap_or_else(|| {
                    Err(PersistError::Query("an accept was not answered".into()))
                }),
                Err(MailboxError::Timeout) => Err(PersistError::Unavailable(
                    "the database did not answer in time".into(),
                )),
                Err(MailboxError::Closed) => Err(PersistError::Unavailable(
                    "the persistence actor has stopped".into(),
                )),
            };
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.accepts.do_send(batch::Enqueue(msg, tx));
        match tokio::time::timeout(self.timeout * 2, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(PersistError::Unavailable(
                "the persistence actor has stopped".into(),
            )),
            Err(_) => Err(PersistError::Unavailable(
                "the database did not answer in time".into(),
            )),
        }
    }

    /// Sends `msg` and waits at most the handle's timeout for the answer.
    pub async fn call<M, T>(&self, msg: M) -> Result<T, PersistError>
    where
        M: Message<Result = Result<T, PersistError>> + Send + 'static,
        T: Send + 'static,
        PersistenceActor: Handler<M>,
    {
        match self.addr.send(msg).timeout(self.timeout).await {
            Ok(result) => result,
            Err(MailboxError::Timeout) => Err(PersistError::Unavailable(
                "the database did not answer in time".into(),
            )),
            Err(MailboxError::Closed) => Err(PersistError::Unavailable(
                "the persistence actor has stopped".into(),
            )),
        }
    }
}

//! Group commit of accepts. `POST /deploy` answers only once its row is committed, and a
//! commit waits for PostgreSQL to flush its WAL to disk. Rather than one transaction (and one
//! flush) per request, the `AcceptBatcher` hands the accepts that arrive while a batch is being
//! committed to the persistence actor together, as one `CreateDeployments`: one commit for all
//! of them, each request still answered only after its own row is durable.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{CreateDeployment, CreateDeployments, Created, PersistError, PersistenceActor};

/// Accepts in one transaction at most.
const MAX_BATCH: usize = 128;
/// Batches being committed at once (more keep the database's cores busy; each waits for its
/// flush).
const MAX_IN_FLIGHT: usize = 2;

type Reply = oneshot::Sender<Result<Created, PersistError>>;

pub struct AcceptBatcher {
    persistence: Addr<PersistenceActor>,
    timeout: Duration,
    queue: Vec<(CreateDeployment, Reply)>,
    in_flight: usize,
}

impl AcceptBatcher {
    pub fn new(persistence: Addr<PersistenceActor>, timeout: Duration) -> AcceptBatcher {
        AcceptBatcher {
            persistence,
            timeout,
            queue: Vec::new(),
            in_flight: 0,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        while self.in_flight < MAX_IN_FLIGHT && !self.queue.is_empty() {
            let take = self.queue.len().min(MAX_BATCH);
            let (msgs, replies): (Vec<_>, Vec<_>) = self.queue.drain(..take).unzip();
            self.in_flight += 1;
            let send = self
                .persistence
                .send(CreateDeployments(msgs))
                .timeout(self.timeout);
            async move {
                match send.await {
                    Ok(answers) => {
                        for (reply, answer) in replies.into_iter().zip(answers) {
                            let _ = reply.send(answer);
                        }
                    }
                    Err(e) => {
                        // Not answered in time: the callers get a 503 (a batch that commits
                        // after all is found again by its idempotency keys).
                        for reply in replies {
                            let _ = reply.send(Err(PersistError::Unavailable(format!(
                                "the database did not answer in time ({e})"
                            ))));
                        }
                    }
                }
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                act.in_flight -= 1;
                act.flush(ctx);
            })
            .spawn(ctx);
        }
    }
}

impl Actor for AcceptBatcher {
    type Context = Context<Self>;
}

/// One accept to commit; the answer comes back on `reply`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Enqueue(pub CreateDeployment, pub Reply);

impl Handler<Enqueue> for AcceptBatcher {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        self.queue.push((msg.0, msg.1));
        self.flush(ctx);
    }
}

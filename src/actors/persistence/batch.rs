//! Group commit of accepts. `POST /deploy` answers only once its row is committed, and a
//! commit waits for PostgreSQL to flush its WAL to disk. Rather than one transaction (and one
//! flush) per request, the `AcceptBatcher` hands the accepts that arrive while a batch is being
//! committed to the persistence actor together, as one `CreateDeployments`: one commit for all
//! of them, each request still answered only after its own row is durable.
//!
//! An accept that finds nothing in flight does not wait for company: it goes to the persistence
//! actor straight from its HTTP worker (`Accepts::try_alone`), saving the two thread hops
//! through the batcher. The batches in flight are counted in one place for both ways, so a
//! lone accept and the batcher's batches together never exceed `MAX_IN_FLIGHT`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// What the batcher and the lone accepts share: the batches in flight, and how many accepts
/// wait in the batcher's queue.
#[derive(Default)]
pub struct Accepts {
    in_flight: AtomicUsize,
    queued: AtomicUsize,
}

impl Accepts {
    /// Takes the slot of an accept that commits alone: only when nothing is in flight or
    /// queued (under load, accepts go through the batcher and share commits). The slot is
    /// given back when the returned guard is dropped, also when the request is abandoned.
    pub fn try_alone(self: &Arc<Self>, batcher: &Addr<AcceptBatcher>) -> Option<AloneSlot> {
        let free = self.queued.load(Ordering::SeqCst) == 0
            && self
                .in_flight
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
        free.then(|| AloneSlot {
            shared: self.clone(),
            batcher: batcher.clone(),
        })
    }

    /// Takes a slot for a batch, if one is free.
    fn take_slot(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .is_ok()
    }
}

/// The slot of an accept committing alone; dropping it gives the slot back and wakes the
/// batcher if accepts queued up meanwhile.
pub struct AloneSlot {
    shared: Arc<Accepts>,
    batcher: Addr<AcceptBatcher>,
}

impl Drop for AloneSlot {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.shared.queued.load(Ordering::SeqCst) > 0 {
            self.batcher.do_send(Flush);
        }
    }
}

pub struct AcceptBatcher {
    persistence: Addr<PersistenceActor>,
    timeout: Duration,
    queue: Vec<(CreateDeployment, Reply)>,
    shared: Arc<Accepts>,
}

impl AcceptBatcher {
    pub fn new(
        persistence: Addr<PersistenceActor>,
        timeout: Duration,
        shared: Arc<Accepts>,
    ) -> AcceptBatcher {
        AcceptBatcher {
            persistence,
            timeout,
            queue: Vec::new(),
            shared,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        // Published before a slot is looked for: a lone accept finishing meanwhile sees the
        // queue and wakes the batcher (`Flush`).
        self.shared.queued.store(self.queue.len(), Ordering::SeqCst);
        while !self.queue.is_empty() && self.shared.take_slot() {
            let take = self.queue.len().min(MAX_BATCH);
            let (msgs, replies): (Vec<_>, Vec<_>) = self.queue.drain(..take).unzip();
            self.shared.queued.store(self.queue.len(), Ordering::SeqCst);
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
                act.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
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

/// A slot was given back by an accept that committed alone: send what waits.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Flush;

impl Handler<Flush> for AcceptBatcher {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush(ctx);
    }
}

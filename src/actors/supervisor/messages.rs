//! Messages of the supervisor.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::Supervisor;
use crate::actors::deployment::StopRun;
use crate::engines::StopReason;

/// This node accepted a deployment: look for work now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

impl Handler<Wake> for Supervisor {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        // No room here (full, or an API-only node): let the other nodes know. Only a local
        // accept announces, so two full nodes never wake each other in a loop.
        if self.runs.len() >= self.capacity() {
            self.announce(ctx);
        }
        self.claim(ctx);
    }
}

/// A deployment actor ended (sent from its `stopped` hook, whatever the outcome).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RunFinished {
    pub run_id: String,
}

impl Handler<RunFinished> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: RunFinished, ctx: &mut Context<Self>) {
        self.runs.remove(&msg.run_id);
        if self.draining {
            if self.runs.is_empty() {
                for waiter in self.drain_waiters.drain(..) {
                    let _ = waiter.send(());
                }
            }
        } else {
            self.claim(ctx);
        }
    }
}

/// Capacity and current use, for `/health`.
#[derive(Message)]
#[rtype(result = "RunnerStats")]
pub struct GetRunnerStats;

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RunnerStats {
    pub capacity: usize,
    pub running: usize,
    pub draining: bool,
}

impl Handler<GetRunnerStats> for Supervisor {
    type Result = MessageResult<GetRunnerStats>;

    fn handle(&mut self, _: GetRunnerStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(RunnerStats {
            capacity: self.capacity(),
            running: self.runs.len(),
            draining: self.draining,
        })
    }
}

/// Graceful shutdown: stop claiming, give running runs `grace` to finish, then interrupt them
/// (their leases are released so the next start or another node takes them over). Resolves
/// when no run is left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain {
    pub grace: Duration,
}

impl Handler<Drain> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        if self.runs.is_empty() {
            return Box::pin(actix::fut::ready(()));
        }
        tracing::info!(
            running = self.runs.len(),
            grace_secs = msg.grace.as_secs(),
            "draining runs"
        );
        let (tx, rx) = oneshot::channel();
        self.drain_waiters.push(tx);
        ctx.run_later(msg.grace, |act, _| {
            for addr in act.runs.values() {
                addr.do_send(StopRun(StopReason::Shutdown));
            }
        });
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

/// Another node (or this one) announced queue work through PostgreSQL NOTIFY.
#[derive(Message)]
#[rtype(result = "()")]
pub struct QueueNotification(pub crate::db::notify::QueueEvent);

impl Handler<QueueNotification> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: QueueNotification, ctx: &mut Context<Self>) {
        use crate::db::notify::QueueEvent;
        tracing::debug!(event = ?msg.0, "queue notification");
        match msg.0 {
            QueueEvent::Pending(_) | QueueEvent::Released(_) => self.claim(ctx),
            QueueEvent::Cancel(id) => {
                if let Some(addr) = self.runs.get(&id) {
                    addr.do_send(StopRun(StopReason::Cancel));
                }
            }
            // The notifier's (the listener hands them there).
            QueueEvent::Webhook(_) => {}
        }
    }
}

/// A cancel was accepted for a running run: stop it now if it runs here (another node sees
/// the request at its next lease renewal).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelRun {
    pub run_id: String,
}

impl Handler<CancelRun> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: CancelRun, _: &mut Context<Self>) {
        if let Some(addr) = self.runs.get(&msg.run_id) {
            addr.do_send(StopRun(StopReason::Cancel));
        }
    }
}

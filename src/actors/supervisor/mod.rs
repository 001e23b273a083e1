//! `Supervisor`: one per process. Knows its capacity (`runner.max_concurrent`), claims runs from
//! PostgreSQL (`FOR UPDATE SKIP LOCKED`), starts one `DeploymentActor` per claimed run, keeps
//! their addresses (cancel, shutdown), renews their leases every `lease_secs / 3`, and picks up
//! runs whose owner died (their lease expired). It is woken at once by `Wake` when this node
//! accepts a deployment, and polls as a fallback for work accepted by other nodes.

mod messages;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

pub use messages::*;

use super::deployment::{DeploymentActor, RunContext, StopRun};
use super::persistence::{ClaimRuns, PersistenceHandle, RenewLeases, ScheduleDriftChecks};
use crate::engines::StopReason;

/// How often the supervisor looks for work it was not told about.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

pub struct Supervisor {
    ctx: Arc<RunContext>,
    /// The runs of this node, by run id.
    runs: HashMap<String, Addr<DeploymentActor>>,
    /// A claim query is in flight; `claim_again` asks for another when it returns.
    claiming: bool,
    claim_again: bool,
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// An announcement to the other nodes is scheduled (at most one per ANNOUNCE_EVERY).
    announcing: bool,
}

/// How often, at most, this node tells the others that it accepted work it can't run now.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(100);

impl Supervisor {
    pub fn new(ctx: Arc<RunContext>) -> Supervisor {
        Supervisor {
            ctx,
            runs: HashMap::new(),
            claiming: false,
            claim_again: false,
            draining: false,
            drain_waiters: Vec::new(),
            announcing: false,
        }
    }

    fn persistence(&self) -> &PersistenceHandle {
        &self.ctx.persistence
    }

    fn capacity(&self) -> usize {
        self.ctx.settings.runner.max_concurrent as usize
    }

    /// Claims as many runs as there is free capacity for.
    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        if self.claiming {
            self.claim_again = true;
            return;
        }
        let free = self.capacity().saturating_sub(self.runs.len());
        let runner = &self.ctx.settings.runner;
        // With no capacity the claim still ends runs interrupted too many times.
        let msg = ClaimRuns {
            node: self.ctx.node.clone(),
            // After a database outage our own leases may have expired: never reclaim a run
            // this node is still running.
            exclude: self.runs.keys().cloned().collect(),
            limit: free as i64,
            lease_secs: runner.lease_secs as i64,
            max_attempts: runner.max_attempts as i32,
        };
        self.claiming = true;
        let persistence = self.persistence().clone();
        ctx.spawn(
            async move { persistence.call(msg).await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.claiming = false;
                    match result {
                        Ok(claimed) => {
                            for c in claimed {
                                tracing::info!(deployment.id = %c.deployment.id, run.id = %c.run.id,
                                    attempt = c.run.attempts, kind = c.run.kind.as_str(), "claimed run");
                                let id = c.run.id.to_string();
                                let addr = DeploymentActor::new(
                                    c.run,
                                    c.deployment,
                                    act.ctx.clone(),
                                    ctx.address(),
                                )
                                .start();
                                act.runs.insert(id, addr);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "claiming runs failed; will retry"),
                    }
                    if std::mem::take(&mut act.claim_again) {
                        act.claim(ctx);
                    }
                }),
        );
    }

    /// This node accepted work it has no room for: wake the other nodes, coalesced so that a
    /// burst of accepts costs one NOTIFY (NOTIFY serializes commits in PostgreSQL, so it is kept
    /// off the request path and out of the insert's transaction).
    pub(super) fn announce(&mut self, ctx: &mut Context<Self>) {
        if self.announcing {
            return;
        }
        self.announcing = true;
        ctx.run_later(ANNOUNCE_EVERY, |act, ctx| {
            let persistence = act.persistence().clone();
            ctx.spawn(
                async move { persistence.call(super::persistence::AnnouncePending).await }
                    .into_actor(act)
                    .map(|result, act, _| {
                        act.announcing = false;
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "announcing pending work failed");
                        }
                    }),
            );
        });
    }

    /// Queues the drift checks that are due (another node may be doing it: then nothing).
    fn schedule_drift_checks(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        let msg = ScheduleDriftChecks {
            interval_secs: self.ctx.settings.drift.interval_secs as i64,
            limit: (self.capacity() as i64).max(1),
        };
        let persistence = self.persistence().clone();
        ctx.spawn(
            async move { persistence.call(msg).await }
                .into_actor(self)
                .map(|result, act, ctx| match result {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::info!(count = ids.len(), "scheduled drift checks");
                        act.claim(ctx);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduling drift checks failed; will retry")
                    }
                }),
        );
    }

    fn renew_leases(&mut self, ctx: &mut Context<Self>) {
        if self.runs.is_empty() {
            return;
        }
        let ids: Vec<String> = self.runs.keys().cloned().collect();
        let msg = RenewLeases {
            node: self.ctx.node.clone(),
            ids: ids.clone(),
            lease_secs: self.ctx.settings.runner.lease_secs as i64,
        };
        let persistence = self.persistence().clone();
        ctx.spawn(
            async move { persistence.call(msg).await }
                .into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(owned) => {
                        for (id, cancel_requested) in &owned {
                            if *cancel_requested && let Some(addr) = act.runs.get(id) {
                                addr.do_send(StopRun(StopReason::Cancel));
                            }
                        }
                        for id in ids.iter().filter(|id| !owned.iter().any(|(o, _)| o == *id)) {
                            // Finished in the meantime, or another node reclaimed it after our
                            // lease expired (e.g. during a database outage): stop our copy.
                            if let Some(addr) = act.runs.get(id) {
                                addr.do_send(super::deployment::LeaseLost);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "renewing leases failed; will retry"),
                }),
        );
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(node = %self.ctx.node, capacity = self.capacity(), "supervisor started");
        self.claim(ctx);
        ctx.run_interval(POLL_INTERVAL, |act, ctx| act.claim(ctx));
        let lease = Duration::from_secs(self.ctx.settings.runner.lease_secs.max(3) / 3);
        ctx.run_interval(lease, |act, ctx| act.renew_leases(ctx));
        let drift = self.ctx.settings.drift.interval_secs;
        if drift > 0 {
            // Ticks a twentieth of the interval apart, each queueing a few checks: deployments
            // that became due together are checked spread over the interval, not all at once.
            let tick = Duration::from_secs((drift / 20).clamp(1, 60));
            ctx.run_interval(tick, |act, ctx| act.schedule_drift_checks(ctx));
        }
    }
}

//! `Notifier`: one per process. Delivers webhook events from the PostgreSQL outbox: claims due
//! deliveries (`FOR UPDATE SKIP LOCKED`, with a lease, so any node delivers and a node that
//! dies mid-delivery only delays one), signs and POSTs them, and records the result: delivered,
//! retried later with exponential backoff and jitter, or dead after `webhooks.max_attempts`.
//! Woken by NOTIFY when an event is written; polls as a fallback. Also prunes the audit trail
//! and old deliveries by their retention settings.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use super::persistence::{ClaimDeliveries, FinishDelivery, PersistenceHandle, PruneHistory};
use crate::config::Settings;
use crate::domain::{AttemptResult, DueDelivery};
use crate::webhooks::{Outcome, Outgoing, Policy};

const POLL_INTERVAL: Duration = Duration::from_secs(1);
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
const PRUNE_BATCH: i64 = 5000;

pub struct Notifier {
    node: String,
    settings: Arc<Settings>,
    persistence: PersistenceHandle,
    secret_key: Arc<Option<crate::secrets::SecretKey>>,
    in_flight: usize,
    claiming: bool,
    claim_again: bool,
}

impl Notifier {
    pub fn new(
        node: String,
        settings: Arc<Settings>,
        persistence: PersistenceHandle,
        secret_key: Arc<Option<crate::secrets::SecretKey>>,
    ) -> Notifier {
        Notifier {
            node,
            settings,
            persistence,
            secret_key,
            in_flight: 0,
            claiming: false,
            claim_again: false,
        }
    }

    fn capacity(&self) -> usize {
        self.settings.webhooks.delivery_workers as usize
    }

    fn policy(&self) -> Policy {
        Policy {
            allow_private: self.settings.webhooks.allow_private,
            timeout: Duration::from_secs(self.settings.webhooks.timeout_secs),
            user_agent: format!("multicloud/{}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// Claims as many due deliveries as there are free workers, and sends each.
    fn claim(&mut self, ctx: &mut Context<Self>) {
        let free = self.capacity().saturating_sub(self.in_flight);
        if free == 0 {
            return;
        }
        if self.claiming {
            self.claim_again = true;
            return;
        }
        self.claiming = true;
        let msg = ClaimDeliveries {
            node: self.node.clone(),
            // An attempt takes at most the timeout; the lease outlives it (and a node killed
            // mid-delivery holds the delivery no longer than this).
            lease_secs: self.settings.webhooks.timeout_secs as i64 + 10,
            limit: free as i64,
        };
        let persistence = self.persistence.clone();
        async move { persistence.call(msg).await }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.claiming = false;
                match result {
                    Ok(due) => {
                        let full = due.len() >= free;
                        for d in due {
                            act.send(d, ctx);
                        }
                        if full || std::mem::take(&mut act.claim_again) {
                            act.claim(ctx);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
                }
            })
            .spawn(ctx);
    }

    fn send(&mut self, d: DueDelivery, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let policy = self.policy();
        let key = self.secret_key.clone();
        let persistence = self.persistence.clone();
        let node = self.node.clone();
        let hooks = self.settings.webhooks.clone();
        async move {
            let result = attempt(&d, &policy, key.as_ref().as_ref()).await;
            let result = match result {
                Attempt::Done(r) => r,
                Attempt::Retry {
                    status,
                    error,
                    excerpt,
                } => {
                    let attempt = u32::try_from(d.attempt).unwrap_or(u32::MAX);
                    let retry_at = (attempt < hooks.max_attempts).then(|| {
                        let wait = crate::webhooks::backoff(
                            attempt,
                            Duration::from_millis(hooks.backoff_initial_ms),
                            Duration::from_secs(hooks.backoff_max_secs),
                        );
                        Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()
                    });
                    AttemptResult::Failed {
                        status,
                        error,
                        excerpt,
                        retry_at,
                    }
                }
            };
            match &result {
                AttemptResult::Delivered { status, .. } => tracing::info!(
                    webhook = %d.webhook_id, event = %d.event_id, event_type = %d.event_type,
                    attempt = d.attempt, status, "webhook delivered"),
                AttemptResult::Failed { error, retry_at, .. } => tracing::warn!(
                    webhook = %d.webhook_id, event = %d.event_id, event_type = %d.event_type,
                    attempt = d.attempt, error = %error, retry_at = ?retry_at,
                    "webhook delivery failed"),
            }
            let retry_at = match &result {
                AttemptResult::Failed { retry_at, .. } => *retry_at,
                AttemptResult::Delivered { .. } => None,
            };
            let msg = FinishDelivery {
                delivery_id: d.delivery_id,
                node,
                result,
            };
            if let Err(e) = persistence.call(msg).await {
                // The lease expires and the delivery is tried again: at least once.
                tracing::warn!(error = %e, delivery = d.delivery_id, "recording a webhook delivery failed");
            }
            retry_at
        }
        .into_actor(self)
        .map(|retry_at, act, ctx| {
            act.in_flight -= 1;
            act.claim(ctx);
            // Be there when the retry is due (the poll is only the fallback).
            if let Some(at) = retry_at {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                ctx.run_later(wait, |act, ctx| act.claim(ctx));
            }
        })
        .spawn(ctx);
    }

    fn prune(&mut self, ctx: &mut Context<Self>) {
        let days = |d: u32| (d > 0).then(|| Utc::now() - chrono::Duration::days(i64::from(d)));
        let msg = PruneHistory {
            audit_before: days(self.settings.audit.retention_days),
            deliveries_before: days(self.settings.webhooks.retention_days),
            batch: PRUNE_BATCH,
        };
        if msg.audit_before.is_none() && msg.deliveries_before.is_none() {
            return;
        }
        let persistence = self.persistence.clone();
        async move { persistence.call(msg).await }
            .into_actor(self)
            .map(|result, act, ctx| match result {
                Ok(n) if n as i64 >= PRUNE_BATCH => act.prune(ctx),
                Ok(n) if n > 0 => tracing::info!(
                    rows = n,
                    "pruned audit rows and webhook deliveries past their retention"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning the audit trail failed"),
            })
            .spawn(ctx);
    }
}

enum Attempt {
    Done(AttemptResult),
    Retry {
        status: Option<u16>,
        error: String,
        excerpt: Option<String>,
    },
}

async fn attempt(
    d: &DueDelivery,
    policy: &Policy,
    key: Option<&crate::secrets::SecretKey>,
) -> Attempt {
    let dead = |error: String| {
        Attempt::Done(AttemptResult::Failed {
            status: None,
            error,
            excerpt: None,
            retry_at: None,
        })
    };
    let Ok(secret) = crate::secrets::open_bytes(key, &d.secret_sealed) else {
        return dead(
            "the webhook's secret cannot be decrypted with this node's secrets key".into(),
        );
    };
    let body = match serde_json::to_vec(&d.payload) {
        Ok(b) => b,
        Err(e) => return dead(format!("the event cannot be serialized: {e}")),
    };
    let out = Outgoing {
        url: &d.url,
        event_type: &d.event_type,
        event_id: &d.event_id,
        body: &body,
        secret: &secret,
        attempt: u32::try_from(d.attempt).unwrap_or(u32::MAX),
    };
    match crate::webhooks::send(&out, policy).await {
        Outcome::Delivered { status, excerpt } => {
            Attempt::Done(AttemptResult::Delivered { status, excerpt })
        }
        Outcome::Rejected { status, excerpt } => Attempt::Retry {
            status: Some(status),
            error: format!("the receiver answered {status}"),
            excerpt: Some(excerpt),
        },
        Outcome::Failed { error } => Attempt::Retry {
            status: None,
            error,
            excerpt: None,
        },
        Outcome::Refused { reason } => dead(reason),
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.capacity() > 0 {
            self.claim(ctx);
            ctx.run_interval(POLL_INTERVAL, |act, ctx| act.claim(ctx));
        }
        ctx.run_later(Duration::from_secs(30), |act, ctx| act.prune(ctx));
        ctx.run_interval(PRUNE_INTERVAL, |act, ctx| act.prune(ctx));
    }
}

/// An event was written to the outbox (NOTIFY), or a delivery is due again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WakeNotifier;

impl Handler<WakeNotifier> for Notifier {
    type Result = ();

    fn handle(&mut self, _: WakeNotifier, ctx: &mut Context<Self>) {
        self.claim(ctx);
    }
}

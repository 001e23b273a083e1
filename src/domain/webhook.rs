//! Webhooks: the events a receiver can subscribe to, registrations and deliveries. Events are
//! written to an outbox by the database in the transaction that made the change; deliveries
//! are at least once, with a stable event id for de-duplication.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;

use super::UnknownValue;

/// The event types (the database triggers write exactly these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum EventType {
    #[serde(rename = "run.pending")]
    RunPending,
    /// A plan waits for a decision.
    #[serde(rename = "run.planned")]
    RunPlanned,
    #[serde(rename = "run.completed")]
    RunCompleted,
    #[serde(rename = "run.failed")]
    RunFailed,
    #[serde(rename = "run.cancelled")]
    RunCancelled,
    #[serde(rename = "deployment.destroyed")]
    DeploymentDestroyed,
    #[serde(rename = "deployment.drifted")]
    DeploymentDrifted,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::RunPending,
        EventType::RunPlanned,
        EventType::RunCompleted,
        EventType::RunFailed,
        EventType::RunCancelled,
        EventType::DeploymentDestroyed,
        EventType::DeploymentDrifted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RunPending => "run.pending",
            EventType::RunPlanned => "run.planned",
            EventType::RunCompleted => "run.completed",
            EventType::RunFailed => "run.failed",
            EventType::RunCancelled => "run.cancelled",
            EventType::DeploymentDestroyed => "deployment.destroyed",
            EventType::DeploymentDrifted => "deployment.drifted",
        }
    }
}

impl FromStr for EventType {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownValue {
                kind: "event",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `wh-` and 16 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct WebhookId(String);

impl WebhookId {
    pub fn generate() -> WebhookId {
        let mut bytes = [0u8; 8];
        rand::rng().fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        WebhookId(format!("wh-{hex}"))
    }

    pub fn parse(value: &str) -> Option<WebhookId> {
        let hex = value.strip_prefix("wh-")?;
        let ok = hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| WebhookId(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A webhook to register; the secret is already sealed.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: WebhookId,
    pub url: String,
    pub events: Vec<EventType>,
    pub secret_sealed: Vec<u8>,
    pub created_by: String,
}

/// A registered webhook as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    pub webhook_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub delivery_id: i64,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending` (to be tried, again after a failure), `delivered`, `dead` (gave up).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i16>,
    pub last_error: Option<String>,
    pub response_excerpt: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A delivery claimed by a node, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery_id: i64,
    pub webhook_id: String,
    pub url: String,
    pub secret_sealed: Vec<u8>,
    pub event_id: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered {
        status: u16,
        excerpt: String,
    },
    /// Try again at `retry_at`, or give up (`None`: dead).
    Failed {
        status: Option<u16>,
        error: String,
        excerpt: Option<String>,
        retry_at: Option<DateTime<Utc>>,
    },
}

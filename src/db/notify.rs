//! LISTEN/NOTIFY between daemons on one database: a dedicated thread with its own connection
//! listens on channel `multicloud` (fed by the `deployments_notify` trigger) and hands each
//! notification to a callback. It reconnects after an outage and stops when told to. Polling by
//! the supervisor remains the fallback, so a lost notification only delays work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::{Connection, RunQueryDsl};

pub const CHANNEL: &str = "multicloud";

/// Tells every listening node that pending work is waiting (`pending:*`).
pub fn announce_pending(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query(format!("SELECT pg_notify('{CHANNEL}', 'pending:*')"))
        .execute(conn)
        .map(|_| ())
}
/// Tells every listening node that webhook deliveries are due (`webhook:*`).
pub fn announce_webhooks(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query(format!("SELECT pg_notify('{CHANNEL}', 'webhook:*')"))
        .execute(conn)
        .map(|_| ())
}

const POLL: Duration = Duration::from_millis(100);

/// What the trigger announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    /// A deployment became pending (accepted, or a destroy queued).
    Pending(String),
    /// A cancel was requested for a running deployment.
    Cancel(String),
    /// A node gave a run back (shutdown).
    Released(String),
    /// A webhook event (its id) was written to the outbox, or a delivery is due again.
    Webhook(String),
}

impl QueueEvent {
    pub fn parse(payload: &str) -> Option<QueueEvent> {
        let (kind, id) = payload.split_once(':')?;
        let id = id.to_string();
        match kind {
            "pending" => Some(QueueEvent::Pending(id)),
            "cancel" => Some(QueueEvent::Cancel(id)),
            "released" => Some(QueueEvent::Released(id)),
            "webhook" => Some(QueueEvent::Webhook(id)),
            _ => None,
        }
    }
}

/// Starts the listener thread; it runs until `stop` is set.
pub fn spawn_listener(
    url: String,
    stop: Arc<AtomicBool>,
    on_event: impl Fn(QueueEvent) + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pg-listener".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(200);
            while !stop.load(Ordering::Relaxed) {
                match listen(&url, &stop, &on_event) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "LISTEN connection lost; reconnecting");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        })
}

fn listen(
    url: &str,
    stop: &AtomicBool,
    on_event: &impl Fn(QueueEvent),
) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = PgConnection::establish(url)?;
    diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn)?;
    tracing::debug!("listening for queue notifications");
    let mut idle = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        let mut got = false;
        for n in conn.notifications_iter() {
            let n = n?;
            got = true;
            if let Some(event) = QueueEvent::parse(&n.payload) {
                on_event(event);
            }
        }
        if !got {
            std::thread::sleep(POLL);
            idle += POLL;
            // A dead server is only noticed by talking to it.
            if idle >= Duration::from_secs(5) {
                diesel::sql_query("SELECT 1").execute(&mut conn)?;
                idle = Duration::ZERO;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        assert_eq!(
            QueueEvent::parse("pending:deploy-1"),
            Some(QueueEvent::Pending("deploy-1".into()))
        );
        assert_eq!(
            QueueEvent::parse("cancel:deploy-2"),
            Some(QueueEvent::Cancel("deploy-2".into()))
        );
        assert_eq!(
            QueueEvent::parse("released:x"),
            Some(QueueEvent::Released("x".into()))
        );
        assert_eq!(QueueEvent::parse("other"), None);
    }
}

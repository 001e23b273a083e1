//! One delivery attempt over awc: signed POST, no redirects, addresses re-checked at connect
//! time, bounded response excerpt.

use std::time::Duration;

use awc::error::SendRequestError;
use awc::http::header::{self, HeaderValue};
use futures_util::StreamExt;
use tokio::time::{Instant, timeout_at};

use super::sign::signature;
use super::target::{parse_target, resolve_target};

/// Header names set on every delivery.
pub const HEADER_EVENT: &str = "X-Multicloud-Event";
pub const HEADER_EVENT_ID: &str = "X-Multicloud-Event-Id";
pub const HEADER_ATTEMPT: &str = "X-Multicloud-Delivery-Attempt";
pub const HEADER_TIMESTAMP: &str = "X-Multicloud-Timestamp";
pub const HEADER_SIGNATURE: &str = "X-Multicloud-Signature";

/// At most this many bytes of the response body are read into an excerpt.
pub const EXCERPT_MAX: usize = 512;

/// At most this many resolved addresses are tried when connecting fails.
const MAX_ADDRS: usize = 4;

/// One webhook delivery attempt.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub event_type: &'a str,
    /// Stable across retries; receivers de-duplicate on it.
    pub event_id: &'a str,
    /// The JSON body, sent as is.
    pub body: &'a [u8],
    pub secret: &'a [u8],
    /// 1-based attempt number.
    pub attempt: u32,
}

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Allow loopback, private, link-local, ... addresses (tests, trusted networks).
    pub allow_private: bool,
    /// Total time for resolving, connecting, sending and reading the excerpt.
    pub timeout: Duration,
    pub user_agent: String,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx
    Delivered { status: u16, excerpt: String },
    /// any other status (3xx included: redirects are NOT followed)
    Rejected { status: u16, excerpt: String },
    /// connection/timeout/TLS/DNS error
    Failed { error: String },
    /// the target is not allowed (private address, bad URL): not worth retrying
    Refused { reason: String },
}

impl Outcome {
    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }
}

/// rustls 0.23 needs a process-wide crypto provider before awc's `Connector::new()` (which
/// panics otherwise); `main` installs ring, this covers tests and library use.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue, Outcome> {
    HeaderValue::from_str(value).map_err(|_| Outcome::Refused {
        reason: format!("{name} is not a valid HTTP header value"),
    })
}

/// Delivers `req` once: resolves the host, refuses forbidden addresses (unless
/// `policy.allow_private`), and POSTs the signed body to one of the checked addresses (the
/// connection is pinned to it, so DNS cannot change between check and connect). Redirects are
/// not followed. Must run on an actix (tokio current-thread) runtime; awc is `!Send`.
pub async fn send(req: &Outgoing<'_>, policy: &Policy) -> Outcome {
    let deadline = Instant::now() + policy.timeout;
    let target = match parse_target(req.url) {
        Ok(t) => t,
        Err(e) => {
            return Outcome::Refused {
                reason: e.to_string(),
            };
        }
    };
    let headers = match (
        header_value("event type", req.event_type),
        header_value("event id", req.event_id),
        header_value("user agent", &policy.user_agent),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return e,
    };
    let addrs = match timeout_at(deadline, resolve_target(&target, policy.allow_private)).await {
        Err(_) => {
            return Outcome::Failed {
                error: format!("timed out resolving {}", target.host()),
            };
        }
        Ok(Err(e)) if e.is_permanent() => {
            return Outcome::Refused {
                reason: e.to_string(),
            };
        }
        Ok(Err(e)) => {
            return Outcome::Failed {
                error: e.to_string(),
            };
        }
        Ok(Ok(addrs)) => addrs,
    };

    ensure_crypto_provider();
    let client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .timeout(policy.timeout)
                .handshake_timeout(policy.timeout),
        )
        .timeout(policy.timeout)
        .disable_redirects()
        .finish();

    let timestamp = chrono::Utc::now().timestamp();
    let sig = signature(req.secret, timestamp, req.body);
    let (event, event_id, user_agent) = headers;
    let mut last_error = String::new();
    for addr in addrs.iter().take(MAX_ADDRS) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break;
        }
        let request = client
            .post(target.uri().clone())
            .address(*addr)
            .timeout(remaining)
            .no_decompress()
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::ACCEPT_ENCODING, "identity"))
            .insert_header((header::USER_AGENT, user_agent.clone()))
            .insert_header((HEADER_EVENT, event.clone()))
            .insert_header((HEADER_EVENT_ID, event_id.clone()))
            .insert_header((HEADER_ATTEMPT, req.attempt.to_string()))
            .insert_header((HEADER_TIMESTAMP, timestamp.to_string()))
            .insert_header((HEADER_SIGNATURE, sig.as_str()));
        let sent = timeout_at(deadline, request.send_body(req.body.to_vec())).await;
        match sent {
            Ok(Ok(response)) => return read_outcome(response, deadline).await,
            // Nothing was sent yet: try the next address.
            Ok(Err(SendRequestError::Connect(e))) => {
                last_error = format!("connecting to {addr}: {e}");
            }
            Ok(Err(e)) => {
                return Outcome::Failed {
                    error: format!("{addr}: {e}"),
                };
            }
            Err(_) => {
                return Outcome::Failed {
                    error: format!("{addr}: timed out after {:?}", policy.timeout),
                };
            }
        }
    }
    if last_error.is_empty() {
        last_error = format!("timed out after {:?}", policy.timeout);
    }
    Outcome::Failed { error: last_error }
}

/// Status plus the first [`EXCERPT_MAX`] bytes of the body; the rest is never read (the
/// connection is dropped). A body that errors or stalls keeps what was read so far.
async fn read_outcome<S>(mut response: awc::ClientResponse<S>, deadline: Instant) -> Outcome
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
        + Unpin,
{
    let status = response.status().as_u16();
    let mut buf: Vec<u8> = Vec::with_capacity(EXCERPT_MAX);
    let _ = timeout_at(deadline, async {
        while buf.len() < EXCERPT_MAX {
            match response.next().await {
                Some(Ok(chunk)) => {
                    let take = chunk.len().min(EXCERPT_MAX - buf.len());
                    buf.extend_from_slice(&chunk[..take]);
                }
                _ => break,
            }
        }
    })
    .await;
    let excerpt = String::from_utf8_lossy(&buf).trim().to_string();
    if (200..300).contains(&status) {
        Outcome::Delivered { status, excerpt }
    } else {
        Outcome::Rejected { status, excerpt }
    }
}

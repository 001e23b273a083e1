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
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::webhooks::verify;

    #[derive(Clone)]
    enum Mode {
        /// Answer with this raw status line, extra header lines and body.
        Respond(&'static str, String, String),
        /// Read the request, then say nothing.
        Hang,
        /// 200 with a 100 MB body, written until the client goes away.
        Huge,
    }

    #[derive(Debug, Clone)]
    struct Seen {
        request_line: String,
        headers: HashMap<String, String>,
        body: Vec<u8>,
    }

    struct Server {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
        requests: Arc<Mutex<Vec<Seen>>>,
        written: Arc<AtomicUsize>,
    }

    impl Server {
        async fn start(mode: Mode) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let connections = Arc::new(AtomicUsize::new(0));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let written = Arc::new(AtomicUsize::new(0));
            let (c, r, w) = (connections.clone(), requests.clone(), written.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    c.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, mode.clone(), r.clone(), w.clone()));
                }
            });
            Server {
                addr,
                connections,
                requests,
                written,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.requests.lock().expect("lock").clone()
        }
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let request_line = lines.next()?.to_string();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Some(Seen {
            request_line,
            headers,
            body,
        })
    }

    async fn serve(
        mut stream: TcpStream,
        mode: Mode,
        requests: Arc<Mutex<Vec<Seen>>>,
        written: Arc<AtomicUsize>,
    ) {
        let Some(seen) = read_request(&mut stream).await else {
            return;
        };
        requests.lock().expect("lock").push(seen);
        match mode {
            Mode::Respond(status, headers, body) => {
                let reply = format!(
                    "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            }
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Mode::Huge => {
                let total = 100 * 1024 * 1024;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < total {
                    if stream.write_all(&block).await.is_err() {
                        return;
                    }
                    sent += block.len();
                    written.store(sent, Ordering::SeqCst);
                }
            }
        }
    }

    fn policy(allow_private: bool, timeout: Duration) -> Policy {
        Policy {
            allow_private,
            timeout,
            user_agent: "multicloud-test/1".into(),
        }
    }

    const BODY: &[u8] = br#"{"type":"deployment.succeeded","id":"d-1"}"#;

    fn outgoing(url: &str) -> Outgoing<'_> {
        Outgoing {
            url,
            event_type: "deployment.succeeded",
            event_id: "evt-123",
            body: BODY,
            secret: b"s3cret",
            attempt: 3,
        }
    }

    #[actix_rt::test]
    async fn delivered_with_signed_headers() {
        let server = Server::start(Mode::Respond(
            "200 OK",
            String::new(),
            "  thanks, got it \n".into(),
        ))
        .await;
        let url = server.url("/hooks/in?x=1");
        let out = send(&outgoing(&url), &policy(true, Duration::from_secs(5))).await;
        assert_eq!(
            out,
            Outcome::Delivered {
                status: 200,
                excerpt: "thanks, got it".into()
            }
        );
        assert!(out.is_delivered());
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        let r = &seen[0];
        assert_eq!(r.request_line, "POST /hooks/in?x=1 HTTP/1.1");
        assert_eq!(r.body, BODY);
        let h = |name: &str| {
            r.headers
                .get(&name.to_ascii_lowercase())
                .cloned()
                .unwrap_or_default()
        };
        assert_eq!(h("content-type"), "application/json");
        assert_eq!(h("user-agent"), "multicloud-test/1");
        assert_eq!(h(HEADER_EVENT), "deployment.succeeded");
        assert_eq!(h(HEADER_EVENT_ID), "evt-123");
        assert_eq!(h(HEADER_ATTEMPT), "3");
        let ts: i64 = h(HEADER_TIMESTAMP).parse().expect("timestamp");
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        let sig = h(HEADER_SIGNATURE);
        assert!(verify(b"s3cret", ts, BODY, &sig), "{sig}");
        assert!(!verify(b"s3cret", ts + 1, BODY, &sig));
        assert!(!verify(b"other", ts, BODY, &sig));
    }

    #[actix_rt::test]
    async fn server_error_is_rejected() {
        let server = Server::start(Mode::Respond(
            "500 Internal Server Error",
            String::new(),
            "boom".into(),
        ))
        .await;
        let url = server.url("/");
        let out = send(&outgoing(&url), &policy(true, Duration::from_secs(5))).await;
        assert_eq!(
            out,
            Outcome::Rejected {
                status: 500,
                excerpt: "boom".into()
            }
        );
    }

    #[actix_rt::test]
    async fn redirect_is_not_followed() {
        let elsewhere = Server::start(Mode::Respond("200 OK", String::new(), "no".into())).await;
        let server = Server::start(Mode::Respond(
            "302 Found",
            format!("Location: {}\r\n", elsewhere.url("/stolen")),
            "moved".into(),
        ))
        .await;
        let url = server.url("/");
        let out = send(&outgoing(&url), &policy(true, Duration::from_secs(5))).await;
        assert_eq!(
            out,
            Outcome::Rejected {
                status: 302,
                excerpt: "moved".into()
            }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(elsewhere.connections.load(Ordering::SeqCst), 0);
    }

    #[actix_rt::test]
    async fn silent_server_fails_within_timeout() {
        let server = Server::start(Mode::Hang).await;
        let url = server.url("/");
        let started = std::time::Instant::now();
        let out = send(&outgoing(&url), &policy(true, Duration::from_millis(500))).await;
        let elapsed = started.elapsed();
        assert!(matches!(out, Outcome::Failed { .. }), "{out:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }

    #[actix_rt::test]
    async fn huge_body_is_not_buffered() {
        let server = Server::start(Mode::Huge).await;
        let url = server.url("/");
        let started = std::time::Instant::now();
        let out = send(&outgoing(&url), &policy(true, Duration::from_secs(10))).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        match out {
            Outcome::Delivered { status, excerpt } => {
                assert_eq!(status, 200);
                assert_eq!(excerpt, "x".repeat(EXCERPT_MAX));
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let written = server.written.load(Ordering::SeqCst);
        assert!(written < 20 * 1024 * 1024, "server wrote {written} bytes");
    }

    #[actix_rt::test]
    async fn private_target_is_refused_without_connecting() {
        let server = Server::start(Mode::Respond("200 OK", String::new(), String::new())).await;
        let url = server.url("/");
        let out = send(&outgoing(&url), &policy(false, Duration::from_secs(5))).await;
        match &out {
            Outcome::Refused { reason } => {
                assert!(
                    reason.contains("127.0.0.1 is a loopback address"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        let url = format!("http://localhost:{}/", server.addr.port());
        let out = send(&outgoing(&url), &policy(false, Duration::from_secs(5))).await;
        assert!(matches!(out, Outcome::Refused { .. }), "{out:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    }

    #[actix_rt::test]
    async fn hostname_with_allow_private_is_delivered() {
        // `localhost` may resolve to ::1 first; the server only listens on 127.0.0.1, so this
        // also exercises falling back to the next resolved address.
        let server = Server::start(Mode::Respond(
            "204 No Content",
            String::new(),
            String::new(),
        ))
        .await;
        let url = format!("http://localhost:{}/", server.addr.port());
        let out = send(&outgoing(&url), &policy(true, Duration::from_secs(5))).await;
        assert_eq!(
            out,
            Outcome::Delivered {
                status: 204,
                excerpt: String::new()
            }
        );
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert!(
            seen[0]
                .headers
                .get("host")
                .is_some_and(|h| h.starts_with("localhost")),
            "{:?}",
            seen[0].headers
        );
    }

    #[actix_rt::test]
    async fn bad_input_is_refused() {
        let p = policy(true, Duration::from_secs(1));
        for url in ["ftp://example.com/", "http://u:p@127.0.0.1/", "nope"] {
            let out = send(&outgoing(url), &p).await;
            assert!(matches!(out, Outcome::Refused { .. }), "{url}: {out:?}");
        }
        let mut o = outgoing("http://127.0.0.1:9/");
        o.event_type = "bad\r\nX-Injected: 1";
        assert!(matches!(send(&o, &p).await, Outcome::Refused { .. }));
    }

    #[actix_rt::test]
    async fn connection_refused_fails() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = format!("http://127.0.0.1:{port}/");
        let out = send(&outgoing(&url), &policy(true, Duration::from_secs(2))).await;
        assert!(matches!(out, Outcome::Failed { .. }), "{out:?}");
    }
}

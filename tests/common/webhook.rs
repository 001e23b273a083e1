//! A webhook receiver for the tests: a small HTTP/1.1 server on 127.0.0.1 that records every
//! request (arrival time, headers, body) and answers as its policy says (a status, or nothing
//! for a while). Plus an independent HMAC-SHA256 check of the daemon's signatures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the receiver read it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the whole request had arrived.
    pub at: Instant,
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn event_id(&self) -> String {
        self.header("x-multicloud-event-id")
            .expect("X-Multicloud-Event-Id")
            .to_string()
    }

    pub fn event_type(&self) -> String {
        self.header("x-multicloud-event")
            .expect("X-Multicloud-Event")
            .to_string()
    }

    pub fn attempt(&self) -> u32 {
        self.header("x-multicloud-delivery-attempt")
            .and_then(|a| a.parse().ok())
            .expect("X-Multicloud-Delivery-Attempt")
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Status(u16),
    /// Says nothing until the client goes away (or this long has passed: then 200).
    Hold(Duration),
}

/// Given the request's index (0-based, over all requests this receiver got) and the request.
pub type Policy = Box<dyn FnMut(usize, &Received) -> Reply + Send>;

struct Inner {
    received: Vec<Received>,
    policy: Policy,
}

pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver answering 200 to everything, at `http://127.0.0.1:<port>/hook`.
    pub async fn start() -> Receiver {
        Receiver::with_policy(Box::new(|_, _| Reply::Status(200))).await
    }

    pub async fn with_policy(policy: Policy) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a receiver");
        let port = listener.local_addr().expect("local addr").port();
        let inner = Arc::new(Mutex::new(Inner {
            received: Vec::new(),
            policy,
        }));
        let connections = Arc::new(AtomicUsize::new(0));
        let task = {
            let inner = inner.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, inner.clone()));
                }
            })
        };
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            inner,
            connections,
            task,
        }
    }

    /// Replaces how later requests are answered.
    pub fn set_policy(&self, policy: Policy) {
        self.inner.lock().expect("lock").policy = policy;
    }

    /// Every request read so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").received.clone()
    }

    /// TCP connections accepted so far (a request or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} of {n} requests: {:?}",
                got.len(),
                got.iter()
                    .map(|r| r.header("x-multicloud-event").unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one request (Content-Length or chunked body), records it, answers, closes.
async fn serve(mut stream: TcpStream, inner: Arc<Mutex<Inner>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut rest = buf[head_end + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        // Read until the terminating chunk, then decode.
        while find(&rest, b"0\r\n\r\n").is_none() {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
        let mut body = Vec::new();
        let mut at = 0;
        while let Some(end) = find(&rest[at..], b"\r\n") {
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[at..at + end]).trim(), 16)
                    .unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = at + end + 2;
            body.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
            at = start + size + 2;
            if at >= rest.len() {
                break;
            }
        }
        body
    } else {
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        while rest.len() < len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => rest.extend_from_slice(&chunk[..n]),
            }
        }
        rest.truncate(len);
        rest
    };
    let request = Received {
        at: Instant::now(),
        method,
        path,
        headers,
        body,
    };
    let reply = {
        let mut inner = inner.lock().expect("lock");
        let index = inner.received.len();
        let reply = (inner.policy)(index, &request);
        inner.received.push(request);
        reply
    };
    let status = match reply {
        Reply::Status(s) => s,
        Reply::Hold(max) => {
            // Until the client gives up (its timeout, or its process died) or `max`.
            tokio::select! {
                _ = tokio::time::sleep(max) => 200,
                _ = async {
                    loop {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                } => return,
            }
        }
    };
    let text = if (200..300).contains(&status) {
        "ok".to_string()
    } else {
        format!("receiver says no ({status})")
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`, computed here independently
/// of the daemon's code.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Checks a request's signature and timestamp (unix seconds, within 5 minutes of now) the way
/// a receiver would; `Err` says why not.
pub fn verify(secret: &[u8], r: &Received) -> Result<(), String> {
    verify_parts(
        secret,
        r.header("x-multicloud-timestamp").unwrap_or_default(),
        &r.body,
        r.header("x-multicloud-signature").unwrap_or_default(),
    )
}

pub fn verify_parts(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> Result<(), String> {
    let ts: i64 = timestamp
        .parse()
        .map_err(|_| format!("timestamp {timestamp:?} is not unix seconds"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    if (now - ts).abs() > 300 {
        return Err(format!("timestamp {ts} is not within 5 minutes of {now}"));
    }
    let want = sign(secret, timestamp, body);
    // A test: no need for a constant-time comparison.
    if want != signature.to_ascii_lowercase() {
        return Err(format!("signature {signature:?} is not {want:?}"));
    }
    Ok(())
}

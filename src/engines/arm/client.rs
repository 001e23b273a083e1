//! A small Azure Resource Manager REST client over awc: OAuth2 client credentials with a cached
//! token, retries of 429 and 5xx honouring `Retry-After`, long-running operations
//! (`Azure-AsyncOperation` / `Location`), and ARM's error bodies turned into readable text.
//! Secrets (the client secret, tokens) are never logged or put into errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use awc::http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::AzureSettings;

/// API versions of the ARM resources this client manages itself.
pub const RESOURCES_API: &str = "2021-04-01";
pub const DEPLOYMENTS_API: &str = "2024-03-01";

const MAX_ATTEMPTS: u32 = 6;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Where ARM is and who we are.
#[derive(Clone)]
pub struct ArmConfig {
    pub management: String,
    pub login: String,
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ArmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmConfig")
            .field("management", &self.management)
            .field("login", &self.login)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"********")
            .finish()
    }
}

impl ArmConfig {
    /// From `[azure]`, falling back to `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    pub fn from_settings(az: &AzureSettings) -> ArmConfig {
        let or_env = |v: &str, var: &str| {
            if v.is_empty() {
                std::env::var(var).unwrap_or_default()
            } else {
                v.to_string()
            }
        };
        ArmConfig {
            management: az.management_endpoint.trim_end_matches('/').to_string(),
            login: az.login_endpoint.trim_end_matches('/').to_string(),
            tenant_id: or_env(&az.tenant_id, "AZURE_TENANT_ID"),
            client_id: or_env(&az.client_id, "AZURE_CLIENT_ID"),
            client_secret: or_env(&az.client_secret, "AZURE_CLIENT_SECRET"),
        }
    }

    pub fn has_credentials(&self) -> bool {
        !self.tenant_id.is_empty() && !self.client_id.is_empty() && !self.client_secret.is_empty()
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ArmError {
    #[error(
        "Azure credentials are not configured: set azure.tenant_id, azure.client_id and azure.client_secret (or AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET)"
    )]
    NoCredentials,
    #[error("Azure login failed: {0}")]
    Auth(String),
    /// ARM answered with an error (`code: message; details`).
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("cannot reach Azure Resource Manager: {0}")]
    Transport(String),
}

impl ArmError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct ArmResponse {
    pub status: u16,
    pub body: Value,
    pub async_operation: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<Duration>,
}

struct CachedToken {
    value: String,
    renew_at: Instant,
}

/// Cheap to clone and `Send + Sync`: the token cache is shared, an awc client is made per call
/// (awc clients are tied to one thread).
#[derive(Clone)]
pub struct ArmClient {
    cfg: Arc<ArmConfig>,
    token: Arc<Mutex<Option<CachedToken>>>,
}

impl ArmClient {
    pub fn new(cfg: ArmConfig) -> ArmClient {
        ArmClient {
            cfg: Arc::new(cfg),
            token: Arc::new(Mutex::new(None)),
        }
    }

    pub fn config(&self) -> &ArmConfig {
        &self.cfg
    }

    fn http() -> awc::Client {
        awc::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .disable_redirects()
            .finish()
    }

    fn cached_token(&self) -> Option<String> {
        let guard = self.token.lock().ok()?;
        guard
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
            .map(|t| t.value.clone())
    }

    fn forget_token(&self) {
        if let Ok(mut guard) = self.token.lock() {
            *guard = None;
        }
    }

    /// A bearer token for the management endpoint, from the cache or a new client-credentials
    /// grant.
    pub async fn token(&self) -> Result<String, ArmError> {
        if let Some(t) = self.cached_token() {
            return Ok(t);
        }
        if !self.cfg.has_credentials() {
            return Err(ArmError::NoCredentials);
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.cfg.login, self.cfg.tenant_id
        );
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.cfg.client_id.as_str()),
            ("client_secret", self.cfg.client_secret.as_str()),
            ("scope", &format!("{}/.default", self.cfg.management)),
        ];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut res = match Self::http().post(&url).send_form(&form).await {
                Ok(res) => res,
                Err(e) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(error = %e, "token request failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(ArmError::Transport(e.to_string())),
            };
            let status = res.status();
            let body: Value = res.json().limit(1 << 20).await.unwrap_or(Value::Null);
            if status.is_success() {
                let value = body["access_token"]
                    .as_str()
                    .ok_or_else(|| {
                        ArmError::Auth("the token endpoint answered without access_token".into())
                    })?
                    .to_string();
                let expires_in = body["expires_in"]
                    .as_u64()
                    .or_else(|| body["expires_in"].as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(3600);
                let lifetime = Duration::from_secs(expires_in).saturating_sub(TOKEN_MARGIN);
                if let Ok(mut guard) = self.token.lock() {
                    *guard = Some(CachedToken {
                        value: value.clone(),
                        renew_at: Instant::now() + lifetime,
                    });
                }
                return Ok(value);
            }
            if retryable(status) && attempt < MAX_ATTEMPTS {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let reason = body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("no reason given");
            return Err(ArmError::Auth(format!("{} ({status})", first_line(reason))));
        }
    }

    /// A request to a path under the management endpoint (or an absolute URL ARM gave us).
    pub async fn request(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
    ) -> Result<ArmResponse, ArmError> {
        let url = if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.cfg.management)
        };
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = self.token().await?;
            let req = Self::http()
                .request(method.clone(), &url)
                .bearer_auth(&token)
                .insert_header(("Accept", "application/json"));
            let sent = match body {
                Some(b) => req.send_json(b).await,
                None => req.send().await,
            };
            let mut res = match sent {
                Ok(res) => res,
                Err(e) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(error = %e, "ARM request failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(ArmError::Transport(e.to_string())),
            };
            let status = res.status();
            let header = |name: &str| {
                res.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let retry_after = header("Retry-After")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER));
            let async_operation = header("Azure-AsyncOperation");
            let location = header("Location");
            let bytes = res.body().limit(16 << 20).await.unwrap_or_default();
            let value: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // The token expired or was revoked early: get a new one, once.
                refreshed = true;
                self.forget_token();
                continue;
            }
            if retryable(status) && attempt < MAX_ATTEMPTS {
                let wait = retry_after.unwrap_or_else(|| backoff(attempt));
                tracing::debug!(
                    status = status.as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    "ARM asked us to retry"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if !status.is_success() {
                let (code, message) = describe_error(&value);
                return Err(ArmError::Api {
                    status: status.as_u16(),
                    message: if message.is_empty() {
                        format!("{code} (HTTP {})", status.as_u16())
                    } else {
                        message
                    },
                    code,
                });
            }
            return Ok(ArmResponse {
                status: status.as_u16(),
                body: value,
                async_operation,
                location,
                retry_after,
            });
        }
    }

    pub async fn get(&self, path: &str) -> Result<ArmResponse, ArmError> {
        self.request(Method::GET, path, None).await
    }

    /// GET that treats 404 as "not there".
    pub async fn get_optional(&self, path: &str) -> Result<Option<Value>, ArmError> {
        match self.get(path).await {
            Ok(r) => Ok(Some(r.body)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Follows a long-running operation to its end. `Azure-AsyncOperation` answers
    /// `{"status": ...}`; a `Location` answers 202 while it runs and 200/204 at the end.
    /// Returns the final status word (`Succeeded`, `Failed`, `Canceled`) and body.
    pub async fn wait_operation(
        &self,
        first: &ArmResponse,
        deadline: Instant,
    ) -> Result<(String, Value), ArmError> {
        let (url, is_async_op) = match (&first.async_operation, &first.location) {
            (Some(u), _) => (u.clone(), true),
            (None, Some(u)) => (u.clone(), false),
            (None, None) => return Ok(("Succeeded".into(), first.body.clone())),
        };
        let mut wait = first.retry_after.unwrap_or(Duration::from_secs(1));
        loop {
            if Instant::now() + wait > deadline {
                return Err(ArmError::Transport(
                    "the operation did not end before the deadline".into(),
                ));
            }
            tokio::time::sleep(wait).await;
            let r = self.get(&url).await?;
            wait = r.retry_after.unwrap_or(Duration::from_secs(1));
            if is_async_op {
                let status = r.body["status"]
                    .as_str()
                    .unwrap_or("InProgress")
                    .to_string();
                if is_terminal(&status) {
                    return Ok((status, r.body));
                }
            } else if r.status != 202 {
                return Ok(("Succeeded".into(), r.body));
            }
        }
    }
}

pub fn is_terminal(state: &str) -> bool {
    matches!(state, "Succeeded" | "Failed" | "Canceled")
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(attempt.min(6)))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// `{"error": {"code", "message", "details": [...]}}` (or the inner object itself) →
/// (`code`, "code: message; detail-code: detail-message; ...").
pub fn describe_error(body: &Value) -> (String, String) {
    let err = if body.get("error").is_some_and(Value::is_object) {
        &body["error"]
    } else {
        body
    };
    let code = err["code"].as_str().unwrap_or("UnknownError").to_string();
    let mut parts = Vec::new();
    collect(err, &mut parts, 0);
    (code, parts.join("; "))
}

fn collect(err: &Value, parts: &mut Vec<String>, depth: usize) {
    if depth > 8 {
        return;
    }
    let code = err["code"].as_str().unwrap_or_default();
    let message = err["message"].as_str().unwrap_or_default();
    if !code.is_empty() || !message.is_empty() {
        let text = match (code.is_empty(), message.is_empty()) {
            (false, false) => format!("{code}: {message}"),
            (false, true) => code.to_string(),
            _ => message.to_string(),
        };
        if !parts.contains(&text) {
            parts.push(text);
        }
    }
    if let Some(details) = err["details"].as_array() {
        for d in details {
            collect(d, parts, depth + 1);
        }
    }
}

/// The ARM parameters object: `{name: {"value": v}}`.
pub fn parameters_object(values: &serde_json::Map<String, Value>) -> Value {
    Value::Object(
        values
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "value": v })))
            .collect(),
    )
}

/// `{name: {type, value}}` → `{name: value}`, secure outputs masked.
pub fn flatten_outputs(outputs: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(map) = outputs.as_object() {
        for (name, o) in map {
            let ty = o["type"].as_str().unwrap_or_default().to_ascii_lowercase();
            let value = if ty.starts_with("secure") {
                Value::String("(sensitive)".into())
            } else {
                o.get("value").cloned().unwrap_or(Value::Null)
            };
            out.insert(name.clone(), value);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_errors_read_well() {
        let body = json!({"error": {"code": "DeploymentFailed", "message": "At least one resource deployment operation failed.",
            "details": [{"code": "Conflict", "message": "The name is taken.", "details": [{"code": "StorageAccountAlreadyTaken", "message": "x is taken"}]}]}});
        let (code, msg) = describe_error(&body);
        assert_eq!(code, "DeploymentFailed");
        assert_eq!(
            msg,
            "DeploymentFailed: At least one resource deployment operation failed.; Conflict: The name is taken.; StorageAccountAlreadyTaken: x is taken"
        );
    }

    #[test]
    fn outputs_and_parameters_have_arms_shapes() {
        let outputs = json!({"id": {"type": "String", "value": "/x"}, "key": {"type": "SecureString", "value": "s"}});
        assert_eq!(
            flatten_outputs(&outputs),
            json!({"id": "/x", "key": "(sensitive)"})
        );
        let params = json!({"a": 1, "b": "x"});
        assert_eq!(
            parameters_object(params.as_object().expect("object")),
            json!({"a": {"value": 1}, "b": {"value": "x"}})
        );
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let cfg = ArmConfig {
            management: "m".into(),
            login: "l".into(),
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: "super-secret".into(),
        };
        assert!(!format!("{cfg:?}").contains("super-secret"));
    }
}

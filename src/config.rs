//! Configuration: one `Settings` tree, loaded once at start and passed down.
//!
//! Layers, later wins (design.md §8): built-in defaults < `config/default.toml` (when present in
//! the working directory) < `--config FILE` < environment `MULTICLOUD__<SECTION>__<KEY>`.
//! Every struct denies unknown fields, so a typo in a file or a variable is an error at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::{Caller, Role};

/// Everything that can go wrong while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl From<config::ConfigError> for ConfigError {
    fn from(err: config::ConfigError) -> Self {
        ConfigError::Invalid(err.to_string())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub paths: PathSettings,
    pub runner: RunnerSettings,
    pub terraform: TerraformSettings,
    pub aws: AwsSettings,
    pub gcp: GcpSettings,
    pub azure: AzureSettings,
    pub auth: AuthSettings,
    pub secrets: SecretsSettings,
    pub drift: DriftSettings,
    pub audit: AuditSettings,
    pub webhooks: WebhookSettings,
}

/// The audit trail (`GET /audit`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Audit rows older than this are deleted; 0 keeps them forever.
    pub retention_days: u32,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            retention_days: 365,
        }
    }
}

/// Delivery of webhook events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Deliveries this node sends at once; 0: this node delivers none (another node does).
    pub delivery_workers: u32,
    /// Allow webhook URLs on private, loopback and link-local addresses (refused by default:
    /// a webhook must not reach the daemon's own network or a cloud metadata service).
    pub allow_private: bool,
    /// One attempt's time limit (connect, send, read the answer).
    pub timeout_secs: u64,
    /// Attempts before a delivery is marked dead.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles after each (with jitter).
    pub backoff_initial_ms: u64,
    /// The longest wait between attempts.
    pub backoff_max_secs: u64,
    /// Delivered and dead deliveries (and their events) older than this are deleted; 0 keeps them.
    pub retention_days: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            delivery_workers: 4,
            allow_private: false,
            timeout_secs: 10,
            max_attempts: 10,
            backoff_initial_ms: 2000,
            backoff_max_secs: 3600,
            retention_days: 30,
        }
    }
}

/// Scheduled drift checks of completed deployments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftSettings {
    /// Each completed deployment is checked about this often; 0 turns the schedule off
    /// (`POST /deployments/{id}/drift-check` works either way).
    pub interval_secs: u64,
}

/// The key that encrypts sensitive parameters at rest (32+ bytes, base64).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// A file holding the base64 key (preferred: keep it root-only).
    pub key_file: String,
    /// The base64 key itself (e.g. from MULTICLOUD__SECRETS__KEY).
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    pub bind: String,
    pub max_body_bytes: usize,
    /// `POST /deploy` requests per minute per token (or client address); 0 disables the limit.
    pub deploy_rate_per_minute: u32,
    /// Origins allowed to call the API from a browser; none by default.
    pub cors_allowed_origins: Vec<String>,
    /// HTTP worker threads; 0: one per CPU.
    pub workers: usize,
}

impl ServerSettings {
    /// The HTTP worker threads to start.
    pub fn worker_threads(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8000".into(),
            max_body_bytes: 1024 * 1024,
            deploy_rate_per_minute: 600,
            cors_allowed_origins: Vec::new(),
            workers: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// Empty: the daemon runs its own PostgreSQL under `<data_dir>/postgres`.
    pub url: String,
    pub pool_size: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathSettings {
    pub data_dir: PathBuf,
    pub templates_dir: PathBuf,
}

impl Default for PathSettings {
    fn default() -> Self {
        Self {
            data_dir: "./data".into(),
            templates_dir: "./templates".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerSettings {
    /// 0: this node serves the API and runs nothing.
    pub max_concurrent: u32,
    pub run_timeout_secs: u64,
    pub lease_secs: u64,
    pub max_attempts: u32,
    pub cancel_grace_secs: u64,
    pub shutdown_grace_secs: u64,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            run_timeout_secs: 3600,
            lease_secs: 30,
            max_attempts: 3,
            cancel_grace_secs: 30,
            shutdown_grace_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum StateBackend {
    /// terraform's built-in `pg` backend in the daemon's own database.
    Pg,
    /// `terraform.tfstate` in the deployment's workspace.
    Local,
}

impl TryFrom<String> for StateBackend {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "pg" => Ok(StateBackend::Pg),
            "local" => Ok(StateBackend::Local),
            other => Err(format!("{other:?}: expected \"pg\" or \"local\"")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerraformSettings {
    pub binary: String,
    pub cli_config_file: String,
    pub plugin_cache_dir: String,
    pub state_backend: StateBackend,
}

impl Default for TerraformSettings {
    fn default() -> Self {
        Self {
            binary: "terraform".into(),
            cli_config_file: String::new(),
            plugin_cache_dir: String::new(),
            state_backend: StateBackend::Pg,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub endpoint_url: String,
}

impl Default for AwsSettings {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            endpoint_url: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcpSettings {
    pub project: String,
    pub credentials_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureSettings {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub management_endpoint: String,
    pub login_endpoint: String,
    pub bicep_binary: String,
    pub bicep_compiler: BicepCompilerChoice,
    /// The built-in compiler's local module cache: a copy of a `~/.bicep` folder filled by
    /// `bicep restore` (`br/...`, `ts/...`), read only. Registry (`br:`) and template-spec
    /// (`ts:`) modules are read from it; without it they fail the run, naming this setting.
    pub bicep_module_cache: Option<PathBuf>,
}

/// Which compiler turns `.bicep` templates into ARM JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum BicepCompilerChoice {
    /// The official `bicep` CLI when it is installed, else the built-in compiler.
    Auto,
    /// Only the official CLI (`azure.bicep_binary`).
    External,
    /// Only the built-in compiler (`multicloud::bicep`).
    Native,
}

impl TryFrom<String> for BicepCompilerChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(BicepCompilerChoice::Auto),
            "external" => Ok(BicepCompilerChoice::External),
            "native" => Ok(BicepCompilerChoice::Native),
            other => Err(format!(
                "{other:?}: expected \"auto\", \"external\" or \"native\""
            )),
        }
    }
}

impl Default for AzureSettings {
    fn default() -> Self {
        Self {
            tenant_id: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            management_endpoint: "https://management.azure.com".into(),
            login_endpoint: "https://login.microsoftonline.com".into(),
            bicep_binary: "bicep".into(),
            bicep_compiler: BicepCompilerChoice::Auto,
            bicep_module_cache: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub tokens: Vec<TokenEntry>,
    pub allow_anonymous: bool,
    /// A planned run cannot be applied by the token that requested it.
    pub four_eyes: bool,
}

/// One entry of `auth.tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenEntry {
    /// A bare token (as before roles existed): role `admin`, named `token-<n>` (1-based).
    Plain(String),
    /// `{name, role, token_sha256}`: the file holds only the token's SHA-256 (hex). `token`
    /// instead of `token_sha256` is accepted too.
    Named(NamedToken),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_sha256: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

/// A configured token as the daemon checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedToken {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// SHA-256 of a presented or configured token.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token).into()
}

const MIN_TOKEN_LEN: usize = 16;
const RESERVED_NAMES: [&str; 3] = [Caller::ANONYMOUS, Caller::UNKNOWN, "schedule"];

impl AuthSettings {
    /// The tokens with names, roles and digests; an error names the first bad entry.
    pub fn resolve(&self) -> Result<Vec<ResolvedToken>, ConfigError> {
        let invalid = |msg: String| ConfigError::Invalid(msg);
        let mut out: Vec<ResolvedToken> = Vec::with_capacity(self.tokens.len());
        for (i, entry) in self.tokens.iter().enumerate() {
            let resolved = match entry {
                TokenEntry::Plain(token) => {
                    if token.len() < MIN_TOKEN_LEN {
                        return Err(invalid(format!(
                            "auth.tokens must be at least {MIN_TOKEN_LEN} characters long"
                        )));
                    }
                    ResolvedToken {
                        name: format!("token-{}", i + 1),
                        role: Role::Admin,
                        sha256: token_digest(token.as_bytes()),
                    }
                }
                TokenEntry::Named(t) => {
                    let name_ok = !t.name.is_empty()
                        && t.name.len() <= 64
                        && t.name.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@')
                        })
                        && !RESERVED_NAMES.contains(&t.name.as_str());
                    if !name_ok {
                        return Err(invalid(format!(
                            "auth.tokens[{i}].name {:?} must be 1-64 letters, digits, '.', '_', '-' or '@' (and not {RESERVED_NAMES:?})",
                            t.name
                        )));
                    }
                    let sha256 = match (t.token_sha256.is_empty(), t.token.is_empty()) {
                        (false, true) => parse_sha256(&t.token_sha256).ok_or_else(|| {
                            invalid(format!(
                                "auth.tokens[{i}].token_sha256 (token {:?}) must be 64 hex digits: the SHA-256 of the token (`multicloud token`)",
                                t.name
                            ))
                        })?,
                        (true, false) if t.token.len() >= MIN_TOKEN_LEN => {
                            token_digest(t.token.as_bytes())
                        }
                        (true, false) => {
                            return Err(invalid(format!(
                                "auth.tokens[{i}].token (token {:?}) must be at least {MIN_TOKEN_LEN} characters long",
                                t.name
                            )));
                        }
                        _ => {
                            return Err(invalid(format!(
                                "auth.tokens[{i}] (token {:?}) needs exactly one of token_sha256 or token",
                                t.name
                            )));
                        }
                    };
                    ResolvedToken {
                        name: t.name.clone(),
                        role: t.role,
                        sha256,
                    }
                }
            };
            if out.iter().any(|o| o.name == resolved.name) {
                return Err(invalid(format!(
                    "auth.tokens: the name {:?} is used twice",
                    resolved.name
                )));
            }
            if out.iter().any(|o| o.sha256 == resolved.sha256) {
                return Err(invalid(format!(
                    "auth.tokens: tokens {:?} and {:?} are the same token",
                    out.iter()
                        .find(|o| o.sha256 == resolved.sha256)
                        .map(|o| o.name.as_str())
                        .unwrap_or_default(),
                    resolved.name
                )));
            }
            out.push(resolved);
        }
        Ok(out)
    }
}

impl From<&str> for TokenEntry {
    fn from(token: &str) -> Self {
        TokenEntry::Plain(token.to_string())
    }
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

const MASK: &str = "********";

impl Settings {
    /// Loads the layers of design.md §8. `file` is the `--config` argument.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, Path::new("config/default.toml"), std::env::vars())
    }

    /// Like [`Settings::load`] with the default file and the environment given explicitly.
    pub fn load_from(
        file: Option<&Path>,
        default_file: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::Config::try_from(&Settings::default())?);
        if default_file.is_file() {
            builder = builder.add_source(config::File::from(default_file));
        }
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_path_buf()));
            }
            builder = builder.add_source(config::File::from(file));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("MULTICLOUD__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("MULTICLOUD")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("auth.tokens")
                .with_list_parse_key("server.cors_allowed_origins")
                .source(Some(env)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.server.bind.parse::<SocketAddr>().is_err() {
            return invalid(format!(
                "server.bind = {:?} is not an address such as 127.0.0.1:8000",
                self.server.bind
            ));
        }
        if !self.bind_addr().ip().is_loopback()
            && self.auth.tokens.is_empty()
            && !self.auth.allow_anonymous
        {
            return invalid(format!(
                "server.bind = {} is reachable from other hosts but no auth.tokens are set: set auth.tokens, or auth.allow_anonymous = true to serve without authentication",
                self.server.bind
            ));
        }
        self.auth.resolve()?;
        if self.auth.four_eyes && self.auth.tokens.is_empty() {
            return invalid(
                "auth.four_eyes needs auth.tokens: without tokens every request is the same anonymous caller".into(),
            );
        }
        if self.webhooks.timeout_secs == 0 || self.webhooks.max_attempts == 0 {
            return invalid(
                "webhooks.timeout_secs and webhooks.max_attempts must be at least 1".into(),
            );
        }
        if self.server.max_body_bytes == 0 {
            return invalid("server.max_body_bytes must be greater than 0".into());
        }
        if self.database.pool_size == 0 {
            return invalid("database.pool_size must be at least 1".into());
        }
        if self.runner.lease_secs < 3 {
            return invalid("runner.lease_secs must be at least 3".into());
        }
        if self.runner.max_attempts == 0 {
            return invalid("runner.max_attempts must be at least 1".into());
        }
        if self.runner.run_timeout_secs == 0 {
            return invalid("runner.run_timeout_secs must be at least 1".into());
        }
        Ok(())
    }

    pub fn bind_addr(&self) -> SocketAddr {
        // validate() checked it parses.
        self.server
            .bind
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8000)))
    }

    /// The merged configuration as TOML with every secret replaced by a mask.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        let mask = |s: &mut String| {
            if !s.is_empty() {
                *s = MASK.into();
            }
        };
        mask(&mut masked.aws.secret_access_key);
        mask(&mut masked.azure.client_secret);
        mask(&mut masked.secrets.key);
        for entry in &mut masked.auth.tokens {
            match entry {
                TokenEntry::Plain(t) => mask(t),
                TokenEntry::Named(t) => mask(&mut t.token),
            }
        }
        masked.database.url = mask_url_password(&masked.database.url);
        toml_string(&masked)
    }
}

fn toml_string(settings: &Settings) -> String {
    // `config` re-exports no TOML writer; serde_json → a small hand-rolled TOML of two levels.
    let value = serde_json::to_value(settings).unwrap_or_default();
    let mut out = String::new();
    if let serde_json::Value::Object(sections) = value {
        for (section, fields) in sections {
            out.push_str(&format!("[{section}]\n"));
            if let serde_json::Value::Object(fields) = fields {
                for (key, v) in fields {
                    out.push_str(&format!("{key} = {}\n", toml_value(&v)));
                }
            }
            out.push('\n');
        }
    }
    out
}

/// A JSON value in TOML syntax (objects as inline tables).
fn toml_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(toml_value).collect::<Vec<_>>().join(", ")
            )
        }
        serde_json::Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{k} = {}", toml_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:********@host/db`.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:{MASK}{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::load_from(
            None,
            Path::new("/nonexistent"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_match_the_design() {
        let s = load(&[]).expect("defaults load");
        assert_eq!(s.server.bind, "127.0.0.1:8000");
        assert_eq!(s.runner.max_concurrent, 2);
        assert_eq!(s.terraform.state_backend, StateBackend::Pg);
        assert_eq!(s.azure.bicep_compiler, BicepCompilerChoice::Auto);
        assert!(s.server.worker_threads() >= 1);
        let s = load(&[("MULTICLOUD__SERVER__WORKERS", "3")]).expect("workers");
        assert_eq!(s.server.worker_threads(), 3);
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let s = load(&[
            ("MULTICLOUD__SERVER__BIND", "0.0.0.0:9000"),
            ("MULTICLOUD__RUNNER__MAX_CONCURRENT", "0"),
            (
                "MULTICLOUD__AUTH__TOKENS",
                "aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb",
            ),
            ("MULTICLOUD__AWS__ACCESS_KEY_ID", "1234"),
        ])
        .expect("loads");
        assert_eq!(s.server.bind, "0.0.0.0:9000");
        assert_eq!(s.runner.max_concurrent, 0);
        assert_eq!(
            s.auth.tokens,
            vec![
                TokenEntry::from("aaaaaaaaaaaaaaaa"),
                TokenEntry::from("bbbbbbbbbbbbbbbb")
            ]
        );
        let tokens = s.auth.resolve().expect("resolves");
        assert_eq!(tokens[1].name, "token-2");
        assert_eq!(tokens[1].role, Role::Admin);
        assert_eq!(s.aws.access_key_id, "1234");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = load(&[("MULTICLOUD__SERVER__BINDD", "x")]).expect_err("unknown key");
        assert!(err.to_string().contains("bindd"), "{err}");
        let err = load(&[("MULTICLOUD__NOPE__X", "1")]).expect_err("unknown section");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(load(&[("MULTICLOUD__SERVER__BIND", "nowhere")]).is_err());
        let err = load(&[("MULTICLOUD__TERRAFORM__STATE_BACKEND", "s3")]).expect_err("s3");
        assert!(
            err.to_string()
                .contains("\"s3\": expected \"pg\" or \"local\" for key `terraform.state_backend`"),
            "{err}"
        );
        let err = load(&[("MULTICLOUD__AZURE__BICEP_COMPILER", "dotnet")]).expect_err("dotnet");
        assert!(
            err.to_string()
                .contains("expected \"auto\", \"external\" or \"native\""),
            "{err}"
        );
        let s = load(&[("MULTICLOUD__AZURE__BICEP_COMPILER", "native")]).expect("native");
        assert_eq!(s.azure.bicep_compiler, BicepCompilerChoice::Native);
        assert_eq!(s.azure.bicep_module_cache, None);
        let s = load(&[("MULTICLOUD__AZURE__BICEP_MODULE_CACHE", "/srv/bicep")]).expect("cache");
        assert_eq!(
            s.azure.bicep_module_cache.as_deref(),
            Some(std::path::Path::new("/srv/bicep"))
        );
        assert!(load(&[("MULTICLOUD__RUNNER__MAX_CONCURRENT", "-1")]).is_err());
    }

    #[test]
    fn a_public_bind_needs_tokens_or_an_explicit_anonymous_opt_in() {
        let err = load(&[("MULTICLOUD__SERVER__BIND", "0.0.0.0:8000")]).expect_err("refused");
        assert!(err.to_string().contains("auth.tokens"), "{err}");
        assert!(
            load(&[
                ("MULTICLOUD__SERVER__BIND", "0.0.0.0:8000"),
                ("MULTICLOUD__AUTH__ALLOW_ANONYMOUS", "true")
            ])
            .is_ok()
        );
        assert!(
            load(&[
                ("MULTICLOUD__SERVER__BIND", "0.0.0.0:8000"),
                ("MULTICLOUD__AUTH__TOKENS", "0123456789abcdef0123")
            ])
            .is_ok()
        );
        assert!(load(&[("MULTICLOUD__AUTH__TOKENS", "short")]).is_err());
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new()
            .suffix(".toml")
            .tempfile()
            .expect("temp file");
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write");
        f
    }

    #[test]
    fn named_tokens_with_roles_hold_only_a_digest() {
        let digest: String = token_digest(b"alice-token-0123456789")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let f = file(&format!(
            "[auth]\nfour_eyes = true\ntokens = [\n  {{ name = \"alice\", role = \"approver\", token_sha256 = \"{digest}\" }},\n  {{ name = \"ci\", role = \"operator\", token = \"ci-token-0123456789\" }},\n  \"legacy-token-0123456789\",\n]\n"
        ));
        let s = Settings::load_from(Some(f.path()), Path::new("/nonexistent"), Vec::new())
            .expect("loads");
        let tokens = s.auth.resolve().expect("resolves");
        assert_eq!(
            tokens
                .iter()
                .map(|t| (t.name.as_str(), t.role))
                .collect::<Vec<_>>(),
            vec![
                ("alice", Role::Approver),
                ("ci", Role::Operator),
                ("token-3", Role::Admin)
            ]
        );
        assert_eq!(tokens[0].sha256, token_digest(b"alice-token-0123456789"));
        assert!(s.auth.four_eyes);
        let out = s.to_masked_toml();
        assert!(
            !out.contains("ci-token-0123456789") && !out.contains("legacy-token"),
            "{out}"
        );
        assert!(out.contains(&digest), "{out}");

        for (bad, why) in [
            (
                "{ name = \"a\", role = \"root\", token = \"0123456789abcdef\" }",
                "auth.tokens",
            ),
            (
                "{ name = \"a\", role = \"viewer\", token_sha256 = \"abc\" }",
                "64 hex digits",
            ),
            ("{ name = \"a\", role = \"viewer\" }", "exactly one of"),
            (
                "{ name = \"a\", role = \"viewer\", token = \"short\" }",
                "at least 16",
            ),
            (
                "{ name = \"anonymous\", role = \"viewer\", token = \"0123456789abcdef\" }",
                "name",
            ),
            (
                "{ name = \"a b\", role = \"viewer\", token = \"0123456789abcdef\" }",
                "name",
            ),
            (
                "{ name = \"a\", role = \"viewer\", token = \"0123456789abcdef\" }, { name = \"a\", role = \"admin\", token = \"fedcba9876543210\" }",
                "used twice",
            ),
            (
                "{ name = \"a\", role = \"viewer\", token = \"0123456789abcdef\" }, \"0123456789abcdef\"",
                "same token",
            ),
        ] {
            let f = file(&format!("[auth]\ntokens = [{bad}]\n"));
            let err = Settings::load_from(Some(f.path()), Path::new("/nonexistent"), Vec::new())
                .expect_err(bad);
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        let err = load(&[("MULTICLOUD__AUTH__FOUR_EYES", "true")]).expect_err("no tokens");
        assert!(err.to_string().contains("four_eyes"), "{err}");
    }

    #[test]
    fn print_config_masks_secrets() {
        let mut s = Settings::default();
        s.aws.secret_access_key = "topsecret".into();
        s.auth.tokens = vec!["tok-1234567890abcdef".into()];
        s.database.url = "postgres://u:pw@h/db".into();
        let out = s.to_masked_toml();
        assert!(
            !out.contains("topsecret")
                && !out.contains("tok-1234567890abcdef")
                && !out.contains(":pw@")
        );
        assert!(out.contains("postgres://u:********@h/db"), "{out}");
    }
}

//! Configuration: one `Settings` tree, loaded once at start and passed down.
//!
//! Layers, later wins (design.md §8): built-in defaults < `config/default.toml` (when present in
//! the working directory) < `--config FILE` < environment `MULTICLOUD__<SECTION>__<KEY>`.
//! Every struct denies unknown fields, so a typo in a file or a variable is an error at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub tokens: Vec<String>,
    pub allow_anonymous: bool,
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
        if self.auth.tokens.iter().any(|t| t.len() < 16) {
            return invalid("auth.tokens must be at least 16 characters long".into());
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
        masked.auth.tokens.iter_mut().for_each(mask);
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
                    out.push_str(&format!("{key} = {v}\n"));
                }
            }
            out.push('\n');
        }
    }
    out
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
        assert_eq!(s.auth.tokens, vec!["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"]);
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

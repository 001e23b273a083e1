//! Test harness: a real PostgreSQL, a real moto, and the real daemon binary on a free port.
//!
//! PostgreSQL: `TEST_PG_SOCKET_DIR` (set by `.ci/run`) names a running server's socket
//! directory; each test gets a fresh database in it. Without it, each test process starts its
//! own cluster with the daemon's embedded-PostgreSQL code. moto: `MOTO_URL`, else a
//! `moto_server` child on a free port.

#![allow(dead_code)]

pub mod arm;
pub mod browser;
pub mod webhook;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, PgConnection, RunQueryDsl};
use multicloud::db::embedded::EmbeddedPostgres;
use serde_json::{Value, json};

/// A 32-byte secrets key (base64) for daemons that accept sensitive parameters.
pub const SECRETS_KEY: &str = "bXVsdGljbG91ZC10ZXN0LXNlY3JldHMta2V5LTAwMDA=";

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates");
pub const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn random_suffix() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ rand_u64()
    )
}

fn rand_u64() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A fresh, empty database.
pub struct TestDb {
    pub url: String,
    admin_url: String,
    name: String,
    _cluster: Option<(EmbeddedPostgres, tempfile::TempDir)>,
}

impl TestDb {
    pub fn new() -> TestDb {
        let (socket_dir, cluster) = match std::env::var("TEST_PG_SOCKET_DIR") {
            Ok(dir) => (dir, None),
            Err(_) => {
                let dir = tempfile::Builder::new()
                    .prefix("mc-pg")
                    .tempdir_in("/tmp")
                    .expect("tempdir");
                let pg = EmbeddedPostgres::start(dir.path()).expect("start a test PostgreSQL");
                let url = pg.url();
                let host = url
                    .split("host=")
                    .nth(1)
                    .and_then(|s| s.split('&').next())
                    .expect("socket dir in url")
                    .to_string();
                (host, Some((pg, dir)))
            }
        };
        let name = format!("mc_test_{}", random_suffix());
        let admin_url = format!("postgres:///postgres?host={socket_dir}&user=postgres");
        let mut conn = PgConnection::establish(&admin_url).expect("connect to test PostgreSQL");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("create test database");
        TestDb {
            url: format!("postgres:///{name}?host={socket_dir}&user=postgres"),
            admin_url,
            name,
            _cluster: cluster,
        }
    }

    /// Runs a query returning one bigint (counts).
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = PgConnection::establish(&self.url).expect("connect");
        diesel::sql_query(sql)
            .get_result::<N>(&mut conn)
            .expect("count query")
            .n
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}

/// moto on loopback.
pub struct Moto {
    pub url: String,
    child: Option<Child>,
}

impl Moto {
    pub fn start() -> Moto {
        if let Ok(url) = std::env::var("MOTO_URL") {
            return Moto { url, child: None };
        }
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server on PATH (pip install 'moto[server]')");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            url,
            child: Some(child),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A terraform CLI config pointing at the provider mirror.
pub fn terraform_rc(dir: &Path) -> PathBuf {
    let path = dir.join("terraformrc");
    std::fs::write(
        &path,
        r#"provider_installation {
  filesystem_mirror {
    path    = "/opt/tf-plugins"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
"#,
    )
    .expect("write terraformrc");
    path
}

/// The daemon binary, started with configuration through `MULTICLOUD__*` variables.
pub struct Daemon {
    child: Option<Child>,
    pub base: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    env: Vec<(String, String)>,
}

pub struct DaemonConfig {
    /// None: the embedded PostgreSQL under `data_dir`.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub templates_dir: String,
    pub env: Vec<(String, String)>,
}

impl DaemonConfig {
    pub fn new(database_url: Option<&str>, data_dir: &Path, templates_dir: &str) -> DaemonConfig {
        DaemonConfig {
            database_url: database_url.map(String::from),
            data_dir: data_dir.to_path_buf(),
            templates_dir: templates_dir.to_string(),
            env: Vec::new(),
        }
    }

    pub fn set(mut self, key: &str, value: impl ToString) -> DaemonConfig {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Every AWS service at `moto`, with its test credentials.
    pub fn with_moto(self, moto: &Moto) -> DaemonConfig {
        self.set("MULTICLOUD__AWS__ENDPOINT_URL", &moto.url)
            .set("MULTICLOUD__AWS__ACCESS_KEY_ID", "testing")
            .set("MULTICLOUD__AWS__SECRET_ACCESS_KEY", "moto-secret-key")
    }

    /// Azure Resource Manager and its login at the ARM test server, with its credentials.
    pub fn with_arm(self, server: &arm::ArmServer) -> DaemonConfig {
        self.set("MULTICLOUD__AZURE__MANAGEMENT_ENDPOINT", &server.url)
            .set("MULTICLOUD__AZURE__LOGIN_ENDPOINT", &server.url)
            .set("MULTICLOUD__AZURE__TENANT_ID", arm::TENANT)
            .set("MULTICLOUD__AZURE__CLIENT_ID", arm::CLIENT_ID)
            .set("MULTICLOUD__AZURE__CLIENT_SECRET", arm::CLIENT_SECRET)
    }
}

impl Daemon {
    pub async fn start(cfg: DaemonConfig) -> Daemon {
        let port = free_port();
        let rc = terraform_rc(&cfg.data_dir);
        let mut env = vec![
            (
                "MULTICLOUD__SERVER__BIND".to_string(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "MULTICLOUD__PATHS__DATA_DIR".into(),
                cfg.data_dir.display().to_string(),
            ),
            (
                "MULTICLOUD__PATHS__TEMPLATES_DIR".into(),
                cfg.templates_dir.clone(),
            ),
            (
                "MULTICLOUD__DATABASE__URL".into(),
                cfg.database_url.clone().unwrap_or_default(),
            ),
            ("MULTICLOUD__DATABASE__POOL_SIZE".into(), "4".into()),
            (
                "MULTICLOUD__TERRAFORM__CLI_CONFIG_FILE".into(),
                rc.display().to_string(),
            ),
            ("MULTICLOUD__RUNNER__CANCEL_GRACE_SECS".into(), "5".into()),
            ("MULTICLOUD__RUNNER__SHUTDOWN_GRACE_SECS".into(), "5".into()),
        ];
        env.extend(cfg.env);
        let mut d = Daemon {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            data_dir: cfg.data_dir.clone(),
            log: cfg.data_dir.join(format!("daemon-{port}.log")),
            env,
        };
        d.spawn().await;
        d
    }

    async fn spawn(&mut self) {
        let log = std::fs::File::create(&self.log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_multicloud"));
        cmd.arg("serve")
            .current_dir(&self.data_dir)
            .env("RUST_LOG", "info,multicloud=debug")
            // No NO_COLOR: a daemon writing to a file must not colour its logs by itself.
            .env_remove("NO_COLOR")
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start the daemon"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("daemon exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "daemon not healthy in time: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends a signal to the daemon process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(child) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the daemon dies at once, its children (terraform) do not.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again with the same configuration (after `kill9` or `stop`).
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the daemon is still running");
        self.spawn().await;
    }

    /// The raw output file of a step of a run's attempt.
    pub fn step_file(&self, id: &str, operation: &str, attempt: u32, step: &str) -> PathBuf {
        self.data_dir.join(format!(
            "workspaces/{id}/.multicloud/{operation}-{attempt}/{step}.stdout"
        ))
    }

    pub async fn restart(&mut self) {
        assert_eq!(self.stop(), Some(0), "clean exit: {}", self.log_text());
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = reqwest::get(self.url(path)).await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = reqwest::Client::new()
            .patch(self.url(path))
            .json(body)
            .send()
            .await
            .expect("PATCH");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls `/runs/{id}` until the run has ended or waits for a decision (`planned`).
    pub async fn wait_run(&self, run_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.get(&format!("/runs/{run_id}")).await;
            assert_eq!(code, 200, "{body}");
            let status = body["data"]["status"].as_str().unwrap_or_default();
            if !["pending", "running"].contains(&status) {
                return body["data"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "{run_id} still {status}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .delete(self.url(path))
            .send()
            .await
            .expect("DELETE");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn deploy(&self, template: &str, provider: &str, params: Value) -> String {
        let (status, body) = self
            .post_json("/deploy", &json!({"template_name": template, "provider_type": provider, "parameters": params}))
            .await;
        assert_eq!(status, 202, "{body}");
        body["data"]["deployment_id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    /// Polls `/status` until the deployment is in a terminal state.
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (code, body) = self.get(&format!("/deployments/{id}/status")).await;
            assert_eq!(code, 200, "{body}");
            let status = body["data"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if !["pending", "running"].contains(&status.as_str()) {
                return body["data"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {status}: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_status(&self, id: &str, want: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, body) = self.get(&format!("/deployments/{id}/status")).await;
            if body["data"]["status"] == want {
                return body["data"].clone();
            }
            assert!(Instant::now() < deadline, "{id} never {want}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// Asserts the error envelope and returns the error code.
pub fn assert_error(status: u16, body: &Value, want: u16) -> String {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    assert_eq!(body["error"]["status_code"], want, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{body}"
    );
    body["error"]["code"].as_str().expect("code").to_string()
}

/// The problem a 422 names for `field`.
pub fn problem(body: &Value, field: &str) -> Option<String> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find(|e| e["field"] == field)
        .and_then(|e| e["problem"].as_str())
        .map(String::from)
}

/// Waits until `path` exists and contains `needle` (empty: just exists).
pub async fn wait_for_file(path: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.contains(needle)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never contained {needle:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Running EC2 instances in moto whose Name tag is `name`.
pub async fn moto_instances_named(moto: &str, name: &str) -> usize {
    let url = format!(
        "{moto}/?Action=DescribeInstances&Version=2016-11-15&Filter.1.Name=tag:Name&Filter.1.Value.1={name}&Filter.2.Name=instance-state-name&Filter.2.Value.1=running&Filter.2.Value.2=pending"
    );
    let text = reqwest::Client::new()
        .get(url)
        .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0")
        .send()
        .await
        .expect("DescribeInstances")
        .text()
        .await
        .expect("body");
    text.matches("<instanceId>").count()
}

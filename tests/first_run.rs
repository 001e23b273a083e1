//! What a new operator meets on the embedded default: plain-text log files, a secrets key made
//! on first start, and an embedded PostgreSQL the daemon owns even after a crash.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

/// The postmaster's pid from its pid file, if the file exists.
fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postgres/data/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether `pid` is a live process (a zombie waiting for its reaper is not: the postmaster
/// of a crashed daemon is re-parented to whatever reaps orphans here).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn the_embedded_default_generates_a_key_logs_plainly_and_owns_its_database_after_a_crash() {
    // Short path: the socket lives under the data dir.
    let dir = tempfile::Builder::new()
        .prefix("mc")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mut d = Daemon::start(DaemonConfig::new(None, dir.path(), FIXTURES)).await;

    // Logs written to a file carry no colour codes.
    let log = d.log_text();
    assert!(log.contains("multicloud is serving"), "{log}");
    assert!(!log.contains('\x1b'), "ANSI escapes in a log file: {log:?}");

    // A key was generated on first start: owner-only, its path logged with a warning.
    let key_file = dir.path().join("secrets.key");
    let meta = std::fs::metadata(&key_file).expect("secrets.key generated in the data dir");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(
        log.contains("generated a secrets key") && log.contains(&key_file.display().to_string()),
        "{log}"
    );
    let key = std::fs::read_to_string(&key_file).expect("key");

    // So a sensitive parameter is accepted and stored encrypted.
    let id = d
        .deploy(
            "echo",
            "aws",
            json!({"message": "m", "secret": "first-run-secret"}),
        )
        .await;
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(st["outputs"]["secret_length"], "first-run-secret".len());

    // kill -9: the daemon dies, its PostgreSQL does not (another process group).
    let pg = postmaster_pid(dir.path()).expect("postmaster.pid");
    d.kill9();
    assert!(alive(pg), "PostgreSQL outlives the daemon's crash");

    // The next start adopts it, keeps the key, and a clean stop stops it.
    d.start_again().await;
    let log = d.log_text();
    assert!(log.contains("adopting the embedded PostgreSQL"), "{log}");
    assert!(!log.contains("generated a secrets key"), "{log}");
    assert_eq!(std::fs::read_to_string(&key_file).expect("key"), key);
    let (s, b) = d.get(&format!("/deployments/{id}/status")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        postmaster_pid(dir.path()),
        Some(pg),
        "the same server, adopted"
    );

    assert_eq!(d.stop(), Some(0));
    let log = std::fs::read_to_string(&d.log).expect("log");
    assert!(log.contains("embedded PostgreSQL stopped"), "{log}");
    assert!(!alive(pg), "no postgres left on {}", dir.path().display());
    assert_eq!(postmaster_pid(dir.path()), None);
}

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_is_refused_clearly() {
    let dir = tempfile::Builder::new()
        .prefix("mc")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let d = Daemon::start(DaemonConfig::new(None, dir.path(), FIXTURES)).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_multicloud"))
        .arg("migrate")
        .current_dir(dir.path())
        .env("MULTICLOUD__PATHS__DATA_DIR", dir.path())
        .env("MULTICLOUD__DATABASE__URL", "")
        .output()
        .expect("multicloud migrate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another multicloud process") && err.contains(&d.pid().to_string()),
        "{err}"
    );
    let (s, _) = d.get("/health").await;
    assert_eq!(s, 200, "the first daemon's database is untouched");
}

#[tokio::test]
async fn an_external_database_gets_no_invented_key_and_a_missing_key_file_stops_the_start() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)).await;
    assert!(!dir.path().join("secrets.key").exists());
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "m", "secret": "s3cr3t-value"}}))
        .await;
    assert_error(s, &b, 422);
    drop(d);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_multicloud"))
        .args(["serve"])
        .current_dir(dir.path())
        .env("MULTICLOUD__PATHS__DATA_DIR", dir.path())
        .env("MULTICLOUD__DATABASE__URL", &db.url)
        .env(
            "MULTICLOUD__SERVER__BIND",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("MULTICLOUD__SECRETS__KEY_FILE", dir.path().join("nope.key"))
        .output()
        .expect("multicloud serve");
    assert!(
        !out.status.success(),
        "a configured key file that is missing stops the start"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope.key"), "{err}");
    assert!(
        !dir.path().join("secrets.key").exists(),
        "no silent new key"
    );
}

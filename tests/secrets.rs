//! Sensitive parameters: refused without a key, stored only encrypted with one, handed to
//! terraform through its environment, and never found in a response, a log line, a workspace
//! file or a dump of the database.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const SECRET: &str = "top-secret-value-123";

#[tokio::test]
async fn without_a_key_sensitive_values_are_refused() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)).await;
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "m", "secret": SECRET}}))
        .await;
    assert_error(s, &b, 422);
    assert!(
        problem(&b, "parameters.secret").is_some_and(|p| p.contains("secrets key")),
        "{b}"
    );
    assert!(!b.to_string().contains(SECRET));
    assert_eq!(db.count("SELECT count(*) AS n FROM deployments"), 0);
    // Without the sensitive value the same template is accepted (its default is not copied).
    let id = d.deploy("echo", "aws", json!({"message": "m"})).await;
    let st = d.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(st["status"], "completed");
    assert_eq!(
        st["outputs"]["secret_length"], 4,
        "terraform applied its own default \"none\""
    );
    // A plan that waits for a decision would keep every variable's value (the sensitive
    // default too) in a plan file: without a key to seal it, it is refused and says why.
    for (path, body) in [
        (
            "/deploy".to_string(),
            json!({"template_name": "echo", "provider_type": "aws", "auto_apply": false, "parameters": {"message": "m"}}),
        ),
        (
            format!("/deployments/{id}"),
            json!({"parameters": {"message": "n"}, "auto_apply": false}),
        ),
    ] {
        let r = reqwest::Client::new()
            .request(
                if path == "/deploy" {
                    reqwest::Method::POST
                } else {
                    reqwest::Method::PATCH
                },
                d.url(&path),
            )
            .json(&body)
            .send()
            .await
            .expect("request");
        let s = r.status().as_u16();
        let b: serde_json::Value = r.json().await.expect("json");
        assert_error(s, &b, 422);
        assert!(
            problem(&b, "auto_apply")
                .is_some_and(|p| p.contains("secrets key") && p.contains("secret")),
            "{b}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) AS n FROM deployments"),
        1,
        "nothing more was written"
    );
}

#[tokio::test]
async fn with_a_key_secrets_are_encrypted_at_rest_and_never_shown() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await;
    let id = d
        .deploy("echo", "aws", json!({"message": "m", "secret": SECRET}))
        .await;
    let st = d.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(
        st["outputs"]["secret_length"],
        SECRET.len(),
        "the decrypted value reached terraform"
    );

    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["parameters"]["secret"], "(sensitive)");
    let (_, logs) = d.get(&format!("/deployments/{id}/logs?limit=5000")).await;
    let (_, list) = d.get("/deployments").await;
    let tfvars = std::fs::read_to_string(
        dir.path()
            .join(format!("workspaces/{id}/terraform.tfvars.json")),
    )
    .expect("tfvars");
    assert!(tfvars.contains("\"message\""), "{tfvars}");
    let dump = pg_dump(&db);
    assert!(dump.contains(&id), "the dump holds the deployment");
    assert!(dump.contains("$encrypted"), "stored encrypted");
    for (what, text) in [
        ("record", rec.to_string()),
        ("logs", logs.to_string()),
        ("list", list.to_string()),
        ("workspace", tfvars),
        ("daemon log", d.log_text()),
        ("database dump", dump),
    ] {
        assert!(!text.contains(SECRET), "the secret leaked into the {what}");
    }

    // Restarted with another key, the stored value can't be opened: the run fails saying so.
    d.stop();
    let mut d = Daemon::start(DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES).set(
        "MULTICLOUD__SECRETS__KEY",
        "YW5vdGhlci1rZXktYW5vdGhlci1rZXktYW5vdGhlci0=",
    ))
    .await;
    let r = reqwest::Client::new()
        .delete(d.url(&format!("/deployments/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 202);
    let st = d.wait_terminal(&id, Duration::from_secs(60)).await;
    assert_eq!(st["status"], "failed");
    assert!(
        st["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot decrypt")),
        "{st}"
    );
    d.stop();
}

fn pg_dump(db: &TestDb) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("postgresql installed")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pg_dump"))
        .find(|p| p.exists())
        .expect("pg_dump");
    let out = std::process::Command::new(bin)
        .arg("--data-only")
        .arg(&db.url)
        .output()
        .expect("pg_dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

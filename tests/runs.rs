//! Runs through the real daemon with real terraform on the fast `echo` fixture (terraform_data
//! only): outputs, failures, logs (paging and SSE), cancel, timeout, destroy, and restarts on
//! the embedded PostgreSQL.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;

const T: Duration = Duration::from_secs(90);

async fn daemon(db: &TestDb, dir: &tempfile::TempDir) -> Daemon {
    Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__RUN_TIMEOUT_SECS", 120)
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await
}

#[tokio::test]
async fn a_run_completes_with_outputs_logs_and_state_in_postgres() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    let id = d
        .deploy(
            "echo",
            "terraform-aws",
            json!({"message": "hello", "secret": "s3cr3t-value", "lines": 3}),
        )
        .await;
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(st["progress"], 100);
    assert_eq!(st["operation"], "deploy");
    assert_eq!(
        st["outputs"],
        json!({"message": "hello", "secret": "(sensitive)", "secret_length": 12})
    );
    assert!(st["duration_seconds"].as_f64().is_some_and(|s| s > 0.0));

    // The record masks the sensitive parameter; nothing in the logs shows it.
    let (_, b) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(b["data"]["parameters"]["secret"], "(sensitive)");
    assert_eq!(b["data"]["parameters"]["message"], "hello");
    let (_, logs) = d.get(&format!("/deployments/{id}/logs")).await;
    let lines = logs["data"]["lines"].as_array().expect("lines").clone();
    let text: Vec<String> = lines
        .iter()
        .map(|l| l["line"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        text.iter().any(|l| l.contains("terraform init")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|l| l.contains("line-2")),
        "provisioner output stored: {text:?}"
    );
    assert!(text.iter().all(|l| !l.contains("s3cr3t-value")));
    let seqs: Vec<i64> = lines
        .iter()
        .map(|l| l["seq"].as_i64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1) && seqs[0] == 1,
        "{seqs:?}"
    );
    // Each line carries the time it was read, not the time its batch was written: the steps'
    // command lines (often written in one batch) have strictly increasing times.
    let step_times: Vec<chrono::DateTime<chrono::Utc>> = lines
        .iter()
        .filter(|l| {
            l["line"]
                .as_str()
                .is_some_and(|t| t.starts_with("$ terraform"))
        })
        .map(|l| l["at"].as_str().expect("at").parse().expect("time"))
        .collect();
    // init (the template's first run), apply (plan and apply in one process, the workspace
    // selected without one, outputs from its stream).
    assert!(step_times.len() >= 2, "{step_times:?}");
    assert!(step_times.windows(2).all(|w| w[0] < w[1]), "{step_times:?}");

    // Paging with ?after.
    let (_, page) = d
        .get(&format!("/deployments/{id}/logs?after=3&limit=2"))
        .await;
    let p: Vec<i64> = page["data"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(p, vec![4, 5]);
    assert_eq!(page["data"]["next_after"], 5);

    // State lives in PostgreSQL, one terraform workspace per deployment.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM terraform_remote_state.states WHERE name = '{id}'"
        )),
        1
    );
    assert_eq!(db.count(&format!("SELECT count(*) AS n FROM terraform_states WHERE deployment_id = '{id}' AND backend_type = 'pg'")), 1);

    // SSE on a finished run: every line, then the end event.
    let resp = reqwest::get(d.url(&format!("/deployments/{id}/logs?follow=true")))
        .await
        .expect("sse");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let body = resp.text().await.expect("body");
    assert_eq!(body.matches("event: log").count(), lines.len());
    let end = body
        .trim_end()
        .rsplit_once("event: end\ndata: ")
        .map(|(_, data)| serde_json::from_str::<serde_json::Value>(data).expect("json"));
    assert_eq!(
        end,
        Some(json!({"status": "completed", "error_message": null})),
        "{body}"
    );

    // Listing with a cursor.
    let id2 = d.deploy("echo", "aws", json!({"message": "two"})).await;
    let st2 = d.wait_terminal(&id2, T).await;
    assert_eq!(st2["status"], "completed", "{st2}");
    let (_, l1) = d.get("/deployments?limit=1").await;
    assert_eq!(l1["data"]["deployments"][0]["deployment_id"], id2.as_str());
    let cursor = l1["data"]["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let (_, l2) = d
        .get(&format!("/deployments?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(l2["data"]["deployments"][0]["deployment_id"], id.as_str());
    assert_eq!(l2["data"]["next_cursor"], serde_json::Value::Null);
    let (_, f) = d
        .get("/deployments?status=completed&template_name=Echo&provider_type=aws")
        .await;
    assert_eq!(f["data"]["count"], 2);
    let (_, f) = d.get("/deployments?status=failed").await;
    assert_eq!(f["data"]["count"], 0);
}

#[tokio::test]
async fn a_failing_apply_ends_failed_with_terraforms_message() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    let id = d
        .deploy("echo", "aws", json!({"message": "x", "fail": true}))
        .await;
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "failed");
    let msg = st["error_message"].as_str().expect("message");
    assert!(msg.contains("The echo was told to fail"), "{msg}");
    assert!(msg.starts_with("terraform plan failed"), "{msg}");
    assert!(!msg.contains('\u{1b}'), "no ANSI codes: {msg:?}");
    assert_eq!(st["outputs"], serde_json::Value::Null);
}

#[tokio::test]
async fn live_logs_stream_while_running_and_a_large_output_is_kept_whole() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    let id = d
        .deploy(
            "echo",
            "aws",
            json!({"message": "big", "lines": 20000, "sleep_seconds": 1}),
        )
        .await;
    let resp = reqwest::get(d.url(&format!("/deployments/{id}/logs?follow=true")))
        .await
        .expect("sse");
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk.expect("chunk"));
    }
    let body = String::from_utf8(body).expect("utf8");
    assert!(body.contains("line-19999"), "the whole output arrived");
    assert!(
        body.contains(r#""status":"completed""#),
        "{}",
        &body[body.len().saturating_sub(300)..]
    );
    let n = db.count(&format!("SELECT count(*) AS n FROM deployment_logs WHERE deployment_id = '{id}' AND line LIKE '%line-%'"));
    assert!(n >= 20000, "{n}");
}

#[tokio::test]
async fn cancel_pending_and_running_runs() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 1),
    )
    .await;
    let running = d
        .deploy(
            "echo",
            "aws",
            json!({"message": "slow", "sleep_seconds": 60}),
        )
        .await;
    d.wait_status(&running, "running", T).await;
    // Progress moves while the run goes on (init, plan done; apply under way).
    let deadline = std::time::Instant::now() + T;
    loop {
        let (_, b) = d.get(&format!("/deployments/{running}/status")).await;
        let p = b["data"]["progress"].as_u64().unwrap_or(0);
        if p >= 30 {
            assert_eq!(b["data"]["status"], "running");
            assert!(p < 100, "{b}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no progress: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = d.deploy("echo", "aws", json!({"message": "queued"})).await;

    let (s, b) = d
        .post_json(&format!("/deployments/{pending}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["status"], "cancelled");
    let (s, b) = d
        .post_json(&format!("/deployments/{pending}/cancel"), &json!({}))
        .await;
    assert_eq!(assert_error(s, &b, 409), "conflict");

    let (s, b) = d
        .post_json(&format!("/deployments/{running}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&running, Duration::from_secs(30)).await;
    assert_eq!(st["status"], "cancelled", "{st}");
    let (s, b) = d
        .post_json("/deployments/deploy-0123456789abcdef/cancel", &json!({}))
        .await;
    assert_eq!(assert_error(s, &b, 404), "deployment_not_found");
    // A cancelled deployment cannot be destroyed.
    let r = reqwest::Client::new()
        .delete(d.url(&format!("/deployments/{running}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 409);
}

#[tokio::test]
async fn a_run_over_its_timeout_fails_and_says_so() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__RUN_TIMEOUT_SECS", 3),
    )
    .await;
    let id = d
        .deploy(
            "echo",
            "aws",
            json!({"message": "slow", "sleep_seconds": 60}),
        )
        .await;
    let st = d.wait_terminal(&id, Duration::from_secs(40)).await;
    assert_eq!(st["status"], "failed");
    assert_eq!(st["error_message"], "timed out after 3 s");
}

#[tokio::test]
async fn destroy_queues_a_destroy_run() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    let id = d.deploy("echo", "aws", json!({"message": "bye"})).await;
    assert_eq!(d.wait_terminal(&id, T).await["status"], "completed");
    let r = reqwest::Client::new()
        .delete(d.url(&format!("/deployments/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 202);
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}");
    assert_eq!(st["operation"], "destroy");
    let r = reqwest::Client::new()
        .delete(d.url(&format!("/deployments/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 409);
}

#[tokio::test]
async fn the_embedded_database_keeps_every_record_across_restarts() {
    // Short path: the socket lives under the data dir.
    let dir = tempfile::Builder::new()
        .prefix("mc")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mut d = Daemon::start(DaemonConfig::new(None, dir.path(), FIXTURES)).await;
    let pid_file = dir.path().join("postgres/data/postmaster.pid");
    assert!(
        pid_file.exists(),
        "embedded cluster under <data_dir>/postgres"
    );
    let id = d
        .deploy("echo", "aws", json!({"message": "persist me"}))
        .await;
    let before = d.wait_terminal(&id, T).await;
    assert_eq!(before["status"], "completed", "{before}");

    d.restart().await;
    let (s, after) = d.get(&format!("/deployments/{id}/status")).await;
    assert_eq!(s, 200, "{after}");
    assert_eq!(after["data"], before);
    let (_, list) = d.get("/deployments").await;
    assert_eq!(list["data"]["count"], 1);

    assert_eq!(d.stop(), Some(0));
    assert!(
        !pid_file.exists(),
        "the embedded cluster is stopped with the daemon"
    );
}

#[tokio::test]
async fn a_gcp_deployment_without_its_provider_fails_cleanly() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)).await;
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "storage-bucket", "provider_type": "gcp", "subscription_id": "my-project", "parameters": {"bucket_name": "mc-gcp-bucket"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id");
    let st = d.wait_terminal(id, Duration::from_secs(60)).await;
    assert_eq!(st["status"], "failed");
    let msg = st["error_message"].as_str().expect("message");
    assert!(msg.starts_with("terraform init failed"), "{msg}");
    assert!(
        msg.contains("hashicorp/google"),
        "terraform's own words: {msg}"
    );
}

#[tokio::test]
async fn the_local_state_backend_keeps_state_in_the_workspace() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__TERRAFORM__STATE_BACKEND", "local"),
    )
    .await;
    let id = d.deploy("echo", "aws", json!({"message": "local"})).await;
    assert_eq!(d.wait_terminal(&id, T).await["status"], "completed");
    let state = dir.path().join(format!(
        "workspaces/{id}/terraform.tfstate.d/{id}/terraform.tfstate"
    ));
    let text = std::fs::read_to_string(&state).expect("state file in the workspace");
    assert!(text.contains("terraform_data"));
    assert_eq!(db.count(&format!("SELECT count(*) AS n FROM terraform_states WHERE deployment_id = '{id}' AND backend_type = 'local'")), 1);
    // Destroy reads the same state.
    let r = reqwest::Client::new()
        .delete(d.url(&format!("/deployments/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(d.wait_terminal(&id, T).await["status"], "destroyed");
}

#[tokio::test]
async fn metrics_describe_runs_requests_and_the_database() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    let id = d.deploy("echo", "aws", json!({"message": "metrics"})).await;
    assert_eq!(d.wait_terminal(&id, T).await["status"], "completed");
    let r = reqwest::get(d.url("/metrics")).await.expect("metrics");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain")
    );
    let text = r.text().await.expect("text");
    for line in [
        r#"multicloud_deployments{status="completed"} 1"#,
        r#"multicloud_deployments{status="pending"} 0"#,
        "multicloud_queue_depth 0",
        "multicloud_runs_running 0",
        "multicloud_runner_capacity 2",
        r#"multicloud_run_duration_seconds_count{provider_type="terraform-aws",template="echo",operation="deploy",status="completed"} 1"#,
        r#"multicloud_terraform_step_duration_seconds_count{step="apply"} 1"#,
        r#"multicloud_terraform_step_duration_seconds_count{step="init"} 1"#,
        r#"multicloud_http_request_duration_seconds_count{method="POST",route="/deploy",status="202"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        text.contains(r#"route="/deployments/{id}/status""#),
        "routes, not raw paths"
    );
    assert!(text.contains(r#"multicloud_db_pool_connections{state="idle"}"#));
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_the_deployment_id() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES).set("MULTICLOUD_LOG_FORMAT", "json"),
    )
    .await;
    let id = d.deploy("echo", "aws", json!({"message": "logs"})).await;
    assert_eq!(d.wait_terminal(&id, T).await["status"], "completed");
    let lines: Vec<serde_json::Value> = d
        .log_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let accepted = lines
        .iter()
        .find(|l| l["fields"]["message"] == "deployment accepted")
        .expect("accepted line");
    assert!(
        accepted["spans"].to_string().contains("request_id"),
        "{accepted}"
    );
    let run_lines: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["spans"].to_string().contains(&id))
        .collect();
    assert!(
        run_lines
            .iter()
            .any(|l| l["fields"]["message"] == "run finished"),
        "the run's lines carry its id: {run_lines:?}"
    );
}

/// The pg backend creates every workspace under one database-wide advisory lock and tries it
/// once; many runs starting together on two nodes (each with its own plugin cache, so their
/// `init`s do not take turns) must still all get their workspace.
#[tokio::test]
async fn many_runs_starting_at_once_all_get_their_workspace() {
    let db = TestDb::new();
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut nodes = Vec::new();
    for dir in &dirs {
        nodes.push(
            Daemon::start(
                DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
                    .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 8)
                    .set("MULTICLOUD__RUNNER__RUN_TIMEOUT_SECS", 240),
            )
            .await,
        );
    }
    let deploys = (0..16)
        .map(|i| nodes[i % 2].deploy("echo", "terraform-aws", json!({"message": format!("m{i}")})));
    let ids = futures_util::future::join_all(deploys).await;
    for id in &ids {
        let st = nodes[0].wait_terminal(id, Duration::from_secs(240)).await;
        assert_eq!(st["status"], "completed", "{st}");
    }
}

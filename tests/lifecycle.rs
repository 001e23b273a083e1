//! The lifecycle of a deployment through the real daemon with real terraform on the fast
//! `echo` fixture (terraform_data only): plan and approve, discard, update, speculative plans,
//! drift checks, the runs history and its logs, and the per-deployment FIFO of runs.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(120);

async fn daemon(db: &TestDb, dir: &tempfile::TempDir) -> Daemon {
    Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__RUN_TIMEOUT_SECS", 120)
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await
}

async fn runs(d: &Daemon, id: &str) -> Vec<Value> {
    let (s, b) = d.get(&format!("/deployments/{id}/runs")).await;
    assert_eq!(s, 200, "{b}");
    b["data"]["runs"].as_array().expect("runs").clone()
}

fn run_id(body: &Value) -> String {
    body["data"]["run_id"].as_str().expect("run id").to_string()
}

#[tokio::test]
async fn plan_then_apply_update_discard_and_a_speculative_plan() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;

    // A deploy that waits for approval: planned, nothing applied yet.
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "echo", "provider_type": "aws", "auto_apply": false,
                    "parameters": {"message": "one", "secret": "hunter22-long"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "planned", "{st}\n{}", d.log_text());
    assert_eq!(
        st["outputs"],
        Value::Null,
        "nothing applied before the decision"
    );
    let history = runs(&d, &id).await;
    assert_eq!(history.len(), 1);
    let first = &history[0];
    assert_eq!(
        (first["kind"].as_str(), first["status"].as_str()),
        (Some("deploy"), Some("planned"))
    );
    assert_eq!(first["plan"]["add"], 1, "{first}");
    assert_eq!(
        first["plan"]["headline"],
        "Plan: 1 to add, 0 to change, 0 to destroy."
    );
    assert_eq!(
        first["plan"]["resources"],
        json!([{"address": "terraform_data.echo", "type": "terraform_data", "action": "create"}])
    );
    assert_eq!(first["has_saved_plan"], true);
    assert_eq!(first["parameters"]["secret"], "(sensitive)");
    // The plan is stored encrypted: the sensitive value is nowhere in the table.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM runs WHERE position('hunter22-long'::bytea in saved_plan) > 0"),
        0
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM terraform_remote_state.states WHERE data LIKE '%terraform_data%'"),
        0,
        "no resource in the state before the apply"
    );
    // Destroying or deploying over a waiting plan is refused.
    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(assert_error(s, &b, 409), "conflict");

    // Two applies at once: one wins, the other is told there is nothing planned.
    let path = format!("/deployments/{id}/apply");
    let empty = json!({});
    let (a1, a2) = tokio::join!(d.post_json(&path, &empty), d.post_json(&path, &empty));
    let mut codes = [a1.0, a2.0];
    codes.sort();
    assert_eq!(codes, [202, 409], "{a1:?} {a2:?}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(st["outputs"]["message"], "one");
    let run = d.wait_run(first["run_id"].as_str().expect("id"), T).await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["has_saved_plan"], true);
    // The run's own log shows the plan, then the apply of exactly that plan.
    let (_, logs) = d
        .get(&format!(
            "/runs/{}/logs",
            run["run_id"].as_str().expect("id")
        ))
        .await;
    let text: Vec<&str> = logs["data"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["line"].as_str())
        .collect();
    assert!(
        text.iter().any(|l| l.starts_with("$ terraform plan")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|l| l.starts_with("$ terraform apply") && l.ends_with(".tfplan")),
        "{text:?}"
    );
    assert!(!text.iter().any(|l| l.contains("hunter22-long")));
    let (s, b) = d.post_json(&path, &json!({})).await;
    assert_eq!(assert_error(s, &b, 409), "conflict");

    // An update applied at once: the outputs change, the history grows.
    let (s, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"parameters": {"message": "two"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["kind"], "update");
    let update = d.wait_run(&run_id(&b), T).await;
    assert_eq!(update["status"], "completed", "{update}\n{}", d.log_text());
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(
        (st["status"].as_str(), st["outputs"]["message"].as_str()),
        (Some("completed"), Some("two"))
    );
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["parameters"]["message"], "two");
    assert_eq!(
        rec["data"]["parameters"]["secret"], "(sensitive)",
        "kept, still masked"
    );
    assert_eq!(rec["data"]["applied_run_id"], update["run_id"]);

    // A bad update is refused at the door, naming the field; nothing is queued.
    let (s, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"parameters": {"lines": "many"}, "colour": 1}),
        )
        .await;
    assert_eq!(assert_error(s, &b, 422), "validation_error");
    assert!(problem(&b, "colour").is_some(), "{b}");
    assert_eq!(runs(&d, &id).await.len(), 2);

    // A speculative plan: a summary, never applied.
    let (s, b) = d
        .post_json(
            &format!("/deployments/{id}/plan"),
            &json!({"parameters": {"message": "three"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let plan = d.wait_run(&run_id(&b), T).await;
    assert_eq!(plan["status"], "completed", "{plan}\n{}", d.log_text());
    assert_eq!(
        plan["plan"]["headline"], "Plan: 0 to add, 1 to change, 0 to destroy.",
        "{plan}"
    );
    assert_eq!(plan["plan"]["resources"][0]["action"], "update");
    assert_eq!(plan["has_saved_plan"], false);
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["outputs"]["message"], "two", "a plan changes nothing");
    // Without changes, a plan says so.
    let (_, b) = d
        .post_json(&format!("/deployments/{id}/plan"), &json!({}))
        .await;
    let plan = d.wait_run(&run_id(&b), T).await;
    assert_eq!(plan["status"], "no_changes", "{plan}");
    assert_eq!(
        plan["plan"]["headline"],
        "No changes. Your infrastructure matches the configuration."
    );

    // A gated update that is discarded: the deployment keeps its values.
    let (s, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"parameters": {"message": "four"}, "auto_apply": false}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let gated = d.wait_run(&run_id(&b), T).await;
    assert_eq!(gated["status"], "planned", "{gated}");
    assert_eq!(gated["plan"]["change"], 1, "{gated}");
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/discard"), &json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["status"], "discarded");
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/discard"), &json!({}))
        .await;
    assert_eq!(assert_error(s, &b, 409), "conflict");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(
        (st["status"].as_str(), st["outputs"]["message"].as_str()),
        (Some("completed"), Some("two"))
    );

    // A drift check: in sync.
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let check = d.wait_run(&run_id(&b), T).await;
    assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["drift"]["status"], "in_sync", "{rec}");
    let (_, list) = d.get("/deployments?drift=in_sync").await;
    assert_eq!(list["data"]["count"], 1);
    let (_, list) = d.get("/deployments?drift=drifted").await;
    assert_eq!(list["data"]["count"], 0);
    let (s, b) = d.get("/deployments?drift=sideways").await;
    assert_eq!(assert_error(s, &b, 422), "validation_error");

    // The history, newest first, and every run's lines on request.
    let history = runs(&d, &id).await;
    let kinds: Vec<(&str, &str)> = history
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap_or(""),
                r["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("drift_check", "completed"),
            ("update", "discarded"),
            ("plan", "no_changes"),
            ("plan", "completed"),
            ("update", "completed"),
            ("deploy", "completed"),
        ]
    );
    let (_, page) = d.get(&format!("/deployments/{id}/runs?limit=2")).await;
    let cursor = page["data"]["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    let (_, next) = d
        .get(&format!("/deployments/{id}/runs?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(next["data"]["runs"][0]["kind"], "plan");
    let (_, latest) = d.get(&format!("/deployments/{id}/logs")).await;
    assert_eq!(
        latest["data"]["run_id"], history[0]["run_id"],
        "the newest run's lines"
    );
    let (_, all) = d
        .get(&format!("/deployments/{id}/logs?run=all&limit=5000"))
        .await;
    let run_ids: std::collections::BTreeSet<&str> = all["data"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["run_id"].as_str())
        .collect();
    assert_eq!(run_ids.len(), 6, "every run's lines");
    let (s, _) = d.get("/runs/run-0123456789abcdef").await;
    assert_eq!(s, 404);

    // Destroy: a run like the others, and the deployment ends destroyed.
    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}");
    let (s, b) = d
        .patch_json(&format!("/deployments/{id}"), &json!({}))
        .await;
    assert_eq!(assert_error(s, &b, 409), "conflict");
}

#[tokio::test]
async fn runs_of_a_deployment_never_overlap_and_keep_their_order() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    let id = d.deploy("echo", "aws", json!({"message": "m0"})).await;
    // Updates sent at once, while the deploy is still running.
    let path = format!("/deployments/{id}");
    let bodies: Vec<Value> = (1..=4)
        .map(|i| json!({"parameters": {"message": format!("m{i}"), "sleep_seconds": 1}}))
        .collect();
    let sent = futures_util::future::join_all(bodies.iter().map(|b| d.patch_json(&path, b))).await;
    let mut accepted = Vec::new();
    for (s, b) in &sent {
        assert_eq!(*s, 202, "{b}");
        accepted.push(run_id(b));
    }
    for r in &accepted {
        let run = d.wait_run(r, T).await;
        assert_eq!(run["status"], "completed", "{run}\n{}", d.log_text());
    }
    let mut history = runs(&d, &id).await;
    history.reverse();
    assert_eq!(history.len(), 5);
    // Each run started after the one before it ended.
    for pair in history.windows(2) {
        let ended = pair[0]["completed_at"].as_str().expect("ended");
        let started = pair[1]["started_at"].as_str().expect("started");
        let ended = chrono::DateTime::parse_from_rfc3339(ended).expect("time");
        let started = chrono::DateTime::parse_from_rfc3339(started).expect("time");
        assert!(started >= ended, "overlap: {} / {}", pair[0], pair[1]);
    }
    // The last accepted update is the deployment's value now.
    let last = history.last().expect("last");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["outputs"]["message"], last["parameters"]["message"]);
}

#[tokio::test]
async fn a_plan_survives_kill_9_and_is_applied_by_another_node() {
    let db = TestDb::new();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let mut a = daemon(&db, &dir_a).await;
    let (s, b) = a
        .post_json(
            "/deploy",
            &json!({"template_name": "echo", "provider_type": "aws", "auto_apply": false,
                    "parameters": {"message": "carried over"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    assert_eq!(a.wait_terminal(&id, T).await["status"], "planned");
    a.kill9();

    // Another node (its own data directory) applies the saved plan from PostgreSQL.
    let node_b = daemon(&db, &dir_b).await;
    let (s, b) = node_b
        .post_json(&format!("/deployments/{id}/apply"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let st = node_b.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", node_b.log_text());
    assert_eq!(st["outputs"]["message"], "carried over");
    // Exactly the saved plan, applied from its plan file by node B after node A planned it.
    let (_, logs) = node_b.get(&format!("/deployments/{id}/logs")).await;
    let lines: Vec<&str> = logs["data"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["line"].as_str())
        .collect();
    let nodes: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("run started on "))
        .filter_map(|l| l.split_whitespace().nth(3))
        .collect();
    assert_eq!(nodes.len(), 2, "planned once, applied once: {lines:?}");
    assert_ne!(nodes[0], nodes[1], "planned on A, applied on B");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("$ terraform apply") && l.ends_with(".tfplan")),
        "{lines:?}"
    );
}

/// Copies a directory tree (a templates folder the test may change).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[tokio::test]
async fn runs_use_the_applied_template_until_an_update_moves_to_the_latest() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = tempfile::tempdir().expect("templates");
    copy_tree(std::path::Path::new(FIXTURES), templates.path());
    let echo = templates.path().join("terraform/aws/echo.tf");
    let d = Daemon::start(
        DaemonConfig::new(
            Some(&db.url),
            dir.path(),
            templates.path().to_str().expect("utf-8"),
        )
        .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await;
    let id = d.deploy("echo", "aws", json!({"message": "v1"})).await;
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    let first = runs(&d, &id).await[0].clone();
    let v1 = first["template_hash"]
        .as_str()
        .expect("the deploy's source is kept")
        .to_string();
    assert_eq!(v1.len(), 64);

    // The file changes: plans and drift checks keep using what was applied.
    let mut source = std::fs::read_to_string(&echo).expect("read");
    source.push_str("\noutput \"version\" {\n  value = \"2\"\n}\n");
    std::fs::write(&echo, &source).expect("write");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, b) = d
        .post_json(&format!("/deployments/{id}/plan"), &json!({}))
        .await;
    let plan = d.wait_run(&run_id(&b), T).await;
    assert_eq!(plan["status"], "no_changes", "{plan}\n{}", d.log_text());
    assert_eq!(
        plan["template_hash"],
        v1.as_str(),
        "planned with the applied source"
    );
    let (_, b) = d
        .post_json(
            &format!("/deployments/{id}/plan"),
            &json!({"template_version": "latest"}),
        )
        .await;
    let plan = d.wait_run(&run_id(&b), T).await;
    assert_ne!(plan["template_hash"], v1.as_str(), "{plan}");

    // An update moves to the latest file only when asked, and says from which to which.
    let (_, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"parameters": {"message": "v1b"}}),
        )
        .await;
    let kept = d.wait_run(&run_id(&b), T).await;
    assert_eq!(kept["status"], "completed", "{kept}");
    assert_eq!(
        (
            kept["base_template_hash"].as_str(),
            kept["template_hash"].as_str()
        ),
        (Some(v1.as_str()), Some(v1.as_str()))
    );
    assert!(
        d.wait_terminal(&id, T).await["outputs"]
            .get("version")
            .is_none()
    );
    let (_, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"template_version": "latest"}),
        )
        .await;
    let moved = d.wait_run(&run_id(&b), T).await;
    assert_eq!(moved["status"], "completed", "{moved}\n{}", d.log_text());
    assert_eq!(moved["template_version"], "latest");
    assert_eq!(moved["base_template_hash"], v1.as_str());
    let v2 = moved["template_hash"].as_str().expect("hash").to_string();
    assert_ne!(v2, v1);
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["outputs"]["version"], "2", "{st}");

    // The file is removed: the deployment can still be checked and destroyed with the source
    // it was applied with.
    std::fs::remove_file(&echo).expect("remove");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, _) = d.get("/templates/aws/echo").await;
    assert_eq!(s, 404, "gone from the catalog");
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let check = d.wait_run(&run_id(&b), T).await;
    assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
    assert_eq!(check["template_hash"], v2.as_str());
    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}\n{}", d.log_text());
}

#[tokio::test]
async fn a_plan_made_stale_by_a_later_state_change_fails_clearly() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    let id = d.deploy("echo", "aws", json!({"message": "before"})).await;
    assert_eq!(d.wait_terminal(&id, T).await["status"], "completed");
    let (s, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"parameters": {"message": "after"}, "auto_apply": false}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let planned = d.wait_run(&run_id(&b), T).await;
    assert_eq!(planned["status"], "planned", "{planned}");
    // The state changes after the plan (someone else wrote it): its serial moves on.
    let changed = db.count(&format!(
        "WITH s AS (UPDATE terraform_remote_state.states \
           SET data = jsonb_set(data::jsonb, '{{serial}}', to_jsonb((data::jsonb ->> 'serial')::int + 1))::text \
           WHERE name = '{id}' RETURNING 1) SELECT count(*) AS n FROM s"
    ));
    assert_eq!(changed, 1);
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/apply"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let run = d.wait_run(planned["run_id"].as_str().expect("id"), T).await;
    assert_eq!(run["status"], "failed", "{run}");
    let error = run["error_message"].as_str().unwrap_or_default();
    assert!(error.contains("the saved plan is stale"), "{error}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "failed");
    assert_eq!(st["outputs"]["message"], "before", "nothing applied");
}

#[tokio::test]
async fn an_approved_apply_interrupted_by_kill_9_converges_on_restart() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__LEASE_SECS", 3)
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await;
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "echo", "provider_type": "aws", "auto_apply": false,
                    "parameters": {"message": "once", "sleep_seconds": 4}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    assert_eq!(d.wait_terminal(&id, T).await["status"], "planned");
    let run = runs(&d, &id).await[0]["run_id"]
        .as_str()
        .expect("run")
        .to_string();
    let (s, _) = d
        .post_json(&format!("/deployments/{id}/apply"), &json!({}))
        .await;
    assert_eq!(s, 202);
    // Killed while terraform applies the saved plan; terraform finishes it on its own.
    let apply = d.step_file(&id, &format!("deploy-{run}-apply"), 1, "apply");
    wait_for_file(&apply, "Creating...", T).await;
    d.kill9();
    d.start_again().await;
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(st["outputs"]["message"], "once");
    let (_, logs) = d.get(&format!("/runs/{run}/logs")).await;
    let text = logs.to_string();
    // The take-over found the plan applied by the orphaned terraform: nothing applied twice.
    assert!(text.contains("attempt 2"), "{text}");
    assert!(
        text.contains("the earlier attempt applied the plan: nothing left to change"),
        "{text}"
    );
}

#[tokio::test]
async fn completed_deployments_are_checked_for_drift_on_a_schedule() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__DRIFT__INTERVAL_SECS", 2)
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await;
    let id = d.deploy("echo", "aws", json!({"message": "watched"})).await;
    let failed = d
        .deploy("echo", "aws", json!({"message": "x", "fail": true}))
        .await;
    assert_eq!(d.wait_terminal(&id, T).await["status"], "completed");
    assert_eq!(d.wait_terminal(&failed, T).await["status"], "failed");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let checks = loop {
        let history = runs(&d, &id).await;
        let checks: Vec<Value> = history
            .into_iter()
            .filter(|r| r["kind"] == "drift_check" && r["status"] == "completed")
            .collect();
        if checks.len() >= 2 {
            break checks;
        }
        assert!(std::time::Instant::now() < deadline, "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(checks[0]["requested_by"], "schedule");
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["drift"]["status"], "in_sync", "{rec}");
    // Only completed deployments are checked; a check never waits behind another of its kind.
    assert!(
        runs(&d, &failed)
            .await
            .iter()
            .all(|r| r["kind"] != "drift_check"),
        "a failed deployment is not checked"
    );
}

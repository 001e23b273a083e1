//! Never lose or strand a deployment: the real daemon killed with SIGKILL at chosen moments,
//! two daemons on one database, PostgreSQL restarted under load, SIGTERM during a run.
//! Leases are short here (3 s) so that reclaims happen quickly.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(120);

fn config(db: &TestDb, dir: &std::path::Path, templates: &str) -> DaemonConfig {
    DaemonConfig::new(Some(&db.url), dir, templates).set("MULTICLOUD__RUNNER__LEASE_SECS", 3)
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}", n & 0xffff_ffff_ffff)
}

#[tokio::test]
async fn kill9_right_after_accepting_and_during_init() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(config(&db, dir.path(), TEMPLATES).with_moto(&moto)).await;

    // Right after the 202.
    let first = d
        .deploy(
            "storage-bucket",
            "aws",
            json!({"bucket_name": unique("mc-k9a")}),
        )
        .await;
    d.kill9();
    d.start_again().await;
    let st = d.wait_terminal(&first, T).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert!(st["outputs"]["bucket_arn"].as_str().is_some());

    // During init: the template was initialised by the first run; drop that so the second
    // initialises it again.
    std::fs::remove_dir_all(dir.path().join("plugin-cache/.multicloud-init")).expect("prepared");
    let second = d
        .deploy(
            "storage-bucket",
            "aws",
            json!({"bucket_name": unique("mc-k9b")}),
        )
        .await;
    wait_for_file(&d.step_file(&second, "deploy", 1, "init"), "", T).await;
    d.kill9();
    d.start_again().await;
    let st = d.wait_terminal(&second, T).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert!(st["outputs"]["bucket_arn"].as_str().is_some());
    let (_, rec) = d.get(&format!("/deployments/{second}")).await;
    assert_eq!(rec["data"]["attempts"], 2, "reclaimed once: {rec}");
}

#[tokio::test]
async fn kill9_during_apply_and_after_apply_converges_without_duplicates() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(config(&db, dir.path(), TEMPLATES).with_moto(&moto)).await;

    // During apply: the orphaned terraform finishes its apply (its own process group, output to
    // files); the re-run waits for the state lock, finds nothing to do, and completes.
    let during = unique("mc-during");
    let id = d
        .deploy("compute-instance", "aws", json!({"name": during}))
        .await;
    wait_for_file(&d.step_file(&id, "deploy", 1, "apply"), "Creating...", T).await;
    d.kill9();
    d.start_again().await;
    let st = d.wait_terminal(&id, Duration::from_secs(240)).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert!(
        st["outputs"]["instance_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("i-"))
    );
    assert_eq!(
        moto_instances_named(&moto.url, &during).await,
        1,
        "exactly one instance"
    );

    // After apply, before the result is written.
    let after = unique("mc-after");
    let id = d
        .deploy("compute-instance", "aws", json!({"name": after}))
        .await;
    wait_for_file(
        &d.step_file(&id, "deploy", 1, "apply"),
        "Apply complete!",
        Duration::from_secs(240),
    )
    .await;
    d.kill9();
    d.start_again().await;
    let st = d.wait_terminal(&id, Duration::from_secs(240)).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert!(
        st["outputs"]["instance_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("i-"))
    );
    assert_eq!(
        moto_instances_named(&moto.url, &after).await,
        1,
        "exactly one instance"
    );
}

#[tokio::test]
async fn two_daemons_share_the_queue_and_survive_each_other() {
    let db = TestDb::new();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let mut a = Daemon::start(
        config(&db, dir_a.path(), FIXTURES).set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 2),
    )
    .await;
    let b = Daemon::start(
        config(&db, dir_b.path(), FIXTURES).set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 2),
    )
    .await;

    // Six deployments across the two: each runs exactly once, and both nodes work.
    let mut ids = Vec::new();
    for i in 0..6 {
        let d = if i % 2 == 0 { &a } else { &b };
        ids.push(
            d.deploy(
                "echo",
                "aws",
                json!({"message": format!("m{i}"), "sleep_seconds": 1}),
            )
            .await,
        );
    }
    let mut nodes = std::collections::HashSet::new();
    for id in &ids {
        let st = a.wait_terminal(id, T).await;
        assert_eq!(st["status"], "completed", "{st}");
        assert_eq!(
            st["outputs"]["message"]
                .as_str()
                .map(|m| m.starts_with('m')),
            Some(true)
        );
        let (_, rec) = b.get(&format!("/deployments/{id}")).await;
        assert_eq!(rec["data"]["attempts"], 1, "{rec}");
        let (_, logs) = a.get(&format!("/deployments/{id}/logs")).await;
        let starts: Vec<String> = logs["data"]["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .filter_map(|l| l["line"].as_str())
            .filter(|l| l.starts_with("run started on "))
            .map(|l| l.split_whitespace().nth(3).unwrap_or_default().to_string())
            .collect();
        assert_eq!(starts.len(), 1, "ran exactly once: {starts:?}");
        nodes.insert(starts[0].clone());
    }
    assert_eq!(nodes.len(), 2, "both daemons took work: {nodes:?}");

    // A cancel accepted by one node reaches the run on the other.
    let id = b
        .deploy(
            "echo",
            "aws",
            json!({"message": "long", "sleep_seconds": 60}),
        )
        .await;
    b.wait_status(&id, "running", T).await;
    let owner = db_owner(&db, &id);
    let (other, _) = if owner.contains(&a_pid(&a)) {
        (&b, &a)
    } else {
        (&a, &b)
    };
    let (s, _) = other
        .post_json(&format!("/deployments/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 202);
    let st = other.wait_terminal(&id, Duration::from_secs(20)).await;
    assert_eq!(st["status"], "cancelled", "{st}");

    // One daemon killed mid-run: the other finishes its work.
    let id = a
        .deploy(
            "echo",
            "aws",
            json!({"message": "survivor", "sleep_seconds": 3}),
        )
        .await;
    a.wait_status(&id, "running", T).await;
    let owner = db_owner(&db, &id);
    let killed_a = owner.contains(&a_pid(&a));
    let survivor = if killed_a {
        a.kill9();
        &b
    } else {
        // b is not mutable here: kill it through its pid.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(b_pid(&b)),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill b");
        &a
    };
    let st = survivor.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(st["outputs"]["message"], "survivor");
    let (_, rec) = survivor.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["attempts"], 2, "{rec}");
}

fn db_owner(db: &TestDb, id: &str) -> String {
    use diesel::{Connection, PgConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Owner {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        lease_owner: Option<String>,
    }
    let mut conn = PgConnection::establish(&db.url).expect("connect");
    let o: Owner = diesel::sql_query(format!(
        "SELECT lease_owner FROM deployments WHERE deployment_id = '{id}'"
    ))
    .get_result(&mut conn)
    .expect("owner");
    o.lease_owner.unwrap_or_default()
}

fn a_pid(d: &Daemon) -> String {
    format!("-{}-", d.pid())
}

fn b_pid(d: &Daemon) -> i32 {
    d.pid() as i32
}

#[tokio::test]
async fn sigterm_during_a_run_releases_it_and_the_next_start_finishes_it() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(
        config(&db, dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__SHUTDOWN_GRACE_SECS", 1)
            .set("MULTICLOUD__RUNNER__CANCEL_GRACE_SECS", 5),
    )
    .await;
    let id = d
        .deploy(
            "echo",
            "aws",
            json!({"message": "again", "sleep_seconds": 5}),
        )
        .await;
    d.wait_status(&id, "running", T).await;
    let started = std::time::Instant::now();
    assert_eq!(d.stop(), Some(0), "exit 0 after SIGTERM: {}", d.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "grace then interrupt: {:?}",
        started.elapsed()
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) AS n FROM deployments WHERE deployment_id = '{id}' AND status = 'running' AND lease_expires_at <= now()")),
        1,
        "the run was given back, not ended"
    );
    d.start_again().await;
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(st["outputs"]["message"], "again");
}

#[tokio::test]
async fn postgres_restarted_under_load_loses_nothing() {
    // A private cluster: restarting the shared one would disturb other tests.
    let pg_dir = tempfile::Builder::new()
        .prefix("mc-pgr")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mut pg = multicloud::db::embedded::EmbeddedPostgres::start(pg_dir.path()).expect("cluster");
    let url = pg.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&url), dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__LEASE_SECS", 6)
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 3),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            d.deploy(
                "echo",
                "aws",
                json!({"message": format!("load{i}"), "sleep_seconds": 4, "lines": 50}),
            )
            .await,
        );
    }
    for id in &ids {
        d.wait_status(id, "running", T).await;
    }
    pg.stop();
    // While it is down: 503 within 2 s, /health says so, nothing is accepted.
    let client = reqwest::Client::new();
    let t0 = std::time::Instant::now();
    let r = client.get(d.url("/health")).send().await.expect("health");
    assert_eq!(r.status().as_u16(), 503);
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["data"]["database"]["reachable"], false);
    let t0 = std::time::Instant::now();
    let (s, b) = d.post_json("/deploy", &json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "x"}})).await;
    assert_eq!(assert_error(s, &b, 503), "service_unavailable");
    assert!(t0.elapsed() < Duration::from_millis(2500));
    let (s, _) = d.get(&format!("/deployments/{}", ids[0])).await;
    assert_eq!(s, 503);
    tokio::time::sleep(Duration::from_secs(3)).await;

    drop(pg);
    let _pg = multicloud::db::embedded::EmbeddedPostgres::start(pg_dir.path()).expect("restart");
    for id in &ids {
        let st = d.wait_terminal(id, T).await;
        assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
        let (_, logs) = d.get(&format!("/deployments/{id}/logs?limit=5000")).await;
        let text = logs.to_string();
        assert!(
            text.contains("line-49"),
            "log lines written after the outage"
        );
    }
    let (s, _) = d.get("/health").await;
    assert_eq!(s, 200);
    assert!(!d.log_text().contains("panicked"), "no panic");
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_deployment() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        config(&db, dir.path(), FIXTURES).set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 0),
    )
    .await;
    let body =
        json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "once"}});
    let post = |b: serde_json::Value| {
        let url = d.url("/deploy");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("Idempotency-Key", "key-1")
                .json(&b)
                .send()
                .await
                .expect("POST");
            let s = r.status().as_u16();
            (s, r.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let (s1, b1) = post(body.clone()).await;
    let (s2, b2) = post(body.clone()).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(b1["data"]["deployment_id"], b2["data"]["deployment_id"]);
    let (s3, b3) = post(json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "twice"}})).await;
    assert_eq!(assert_error(s3, &b3, 409), "conflict");
    assert_eq!(db.count("SELECT count(*) AS n FROM deployments"), 1);
}

#[tokio::test]
async fn an_api_only_node_wakes_a_worker_through_notify() {
    let db = TestDb::new();
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let api = Daemon::start(
        config(&db, dir_a.path(), FIXTURES).set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 0),
    )
    .await;
    let worker = Daemon::start(
        config(&db, dir_b.path(), FIXTURES).set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 1),
    )
    .await;
    let id = api
        .deploy("echo", "aws", json!({"message": "via notify"}))
        .await;
    let st = worker.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert!(
        worker
            .log_text()
            .contains("queue notification event=Pending(\"*\")"),
        "the worker was woken by the API node's announcement:\n{}",
        worker.log_text()
    );
    let (_, logs) = api.get(&format!("/deployments/{id}/logs")).await;
    assert!(
        logs.to_string().contains(&format!("-{}-", worker.pid())),
        "the worker ran it"
    );
}

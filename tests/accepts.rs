//! Group commit of accepts: concurrent `POST /deploy`s share transactions, yet each answer is
//! its own (an idempotency conflict refuses only its request, a replay answers the first
//! deployment), every 202 has its row and its audit row, and a kill -9 under load loses no
//! accepted deployment.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn api_node(db: &TestDb, dir: &tempfile::TempDir) -> Daemon {
    Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 0)
            .set("MULTICLOUD__SERVER__DEPLOY_RATE_PER_MINUTE", 0)
            // Runs waiting for a decision keep a plan with the template's sensitive variable.
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    key: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), String> {
    let mut req = client.post(url).json(body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.map_err(|e| e.to_string())?))
}

fn echo(message: &str) -> Value {
    json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": message}})
}

#[tokio::test]
async fn concurrent_accepts_share_commits_and_answer_each_on_its_own() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = api_node(&db, &dir).await;
    let client = reqwest::Client::new();
    let url = d.url("/deploy");

    // 200 plain accepts, 20 pairs replaying one key with the same body, 20 pairs reusing a
    // key with another body, and 10 invalid requests, all at once.
    let mut requests: Vec<(Option<String>, Value, &'static str)> = Vec::new();
    for i in 0..200 {
        requests.push((None, echo(&format!("plain-{i}")), "plain"));
    }
    for i in 0..20 {
        for _ in 0..2 {
            requests.push((
                Some(format!("same-{i}")),
                echo(&format!("same-{i}")),
                "same",
            ));
        }
        requests.push((Some(format!("clash-{i}")), echo("first"), "clash"));
        requests.push((Some(format!("clash-{i}")), echo("second"), "clash"));
    }
    // 30 that wait for a plan decision: their first run is written with them.
    for i in 0..30 {
        let mut body = echo(&format!("gated-{i}"));
        body["auto_apply"] = json!(false);
        requests.push((None, body, "gated"));
    }
    for _ in 0..10 {
        requests.push((
            None,
            json!({"template_name": "echo", "provider_type": "aws", "parameters": {}}),
            "invalid",
        ));
    }
    let answers = futures_util::future::join_all(requests.iter().map(|(key, body, _)| {
        let (client, url) = (client.clone(), url.clone());
        async move { post(&client, &url, key.as_deref(), body).await }
    }))
    .await;

    let mut ids_by_key: HashMap<String, HashSet<String>> = HashMap::new();
    let mut accepted = HashSet::new();
    let mut statuses: HashMap<&str, Vec<u16>> = HashMap::new();
    for ((key, _, kind), answer) in requests.iter().zip(answers) {
        let (status, body) = answer.expect("every request is answered");
        statuses.entry(kind).or_default().push(status);
        if status == 202 {
            let id = body["data"]["deployment_id"]
                .as_str()
                .expect("id")
                .to_string();
            accepted.insert(id.clone());
            if let Some(k) = key {
                ids_by_key.entry(k.clone()).or_default().insert(id);
            }
        }
    }
    assert!(statuses["plain"].iter().all(|s| *s == 202), "{statuses:?}");
    assert!(statuses["same"].iter().all(|s| *s == 202), "{statuses:?}");
    assert!(statuses["gated"].iter().all(|s| *s == 202), "{statuses:?}");
    assert!(
        statuses["invalid"].iter().all(|s| *s == 422),
        "{statuses:?}"
    );
    // Each clashing pair: one accepted, the other refused with 409, never both.
    let mut clash = statuses["clash"].clone();
    clash.sort_unstable();
    assert_eq!(
        clash,
        [vec![202; 20], vec![409; 20]].concat(),
        "{statuses:?}"
    );
    for i in 0..20 {
        assert_eq!(
            ids_by_key[&format!("same-{i}")].len(),
            1,
            "a replay answers the first deployment"
        );
        assert_eq!(ids_by_key[&format!("clash-{i}")].len(), 1);
    }
    // 200 plain + 30 gated + 20 same + 20 clash deployments, each accepted one committed
    // exactly once.
    assert_eq!(accepted.len(), 270);
    assert_eq!(db.count("SELECT count(*) AS n FROM deployments"), 270);
    // The gated ones have their first run (a plan waiting for a decision), named by their
    // audit row; the others get theirs when a runner takes them.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM runs r JOIN deployments d USING (deployment_id) WHERE d.parameters->>'message' LIKE 'gated-%'"),
        30
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM runs"), 30);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_events a JOIN runs r ON r.run_id = a.run_id AND r.deployment_id = a.target WHERE a.action = 'deployment.create'"),
        30
    );
    // One audit row per answer: 290 accepted (200 + 30 + 40 with a replayed key + 20), 20
    // conflicts, 10 invalid.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_events WHERE action = 'deployment.create' AND outcome = 'ok'"),
        290
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_events WHERE action = 'deployment.create' AND outcome = 'conflict'"),
        20
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_events WHERE action = 'deployment.create' AND outcome = 'invalid'"),
        10
    );
    // Every accepted id reads back as the deployment it was answered as.
    for id in accepted.iter().take(20) {
        let (s, b) = d.get(&format!("/deployments/{id}")).await;
        assert_eq!(
            (s, b["data"]["status"].as_str()),
            (200, Some("pending")),
            "{b}"
        );
    }
}

#[tokio::test]
async fn every_accept_answered_202_survives_kill_9_under_load() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = api_node(&db, &dir).await;
    let url = d.url("/deploy");

    // 16 clients post as fast as they can, each request with its own key, until the daemon
    // is killed under them.
    let tasks: Vec<_> = (0..16)
        .map(|c| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                let mut accepted = Vec::new();
                let mut failed = Vec::new();
                for i in 0.. {
                    let key = format!("k-{c}-{i}");
                    match post(&client, &url, Some(&key), &echo(&key)).await {
                        Ok((202, body)) => accepted.push((
                            key,
                            body["data"]["deployment_id"]
                                .as_str()
                                .unwrap_or("")
                                .to_string(),
                        )),
                        Ok((status, body)) => panic!("{status}: {body}"),
                        Err(_) => {
                            failed.push(key);
                            break;
                        }
                    }
                }
                (accepted, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.kill9();
    let mut accepted = Vec::new();
    let mut failed = Vec::new();
    for t in tasks {
        let (a, f) = t.await.expect("client task");
        accepted.extend(a);
        failed.extend(f);
    }
    assert!(
        accepted.len() > 100,
        "load reached the daemon: {}",
        accepted.len()
    );
    assert_eq!(failed.len(), 16, "every client saw the kill");

    d.start_again().await;
    // Every 202 has its row, as it was answered.
    let stored = db.count("SELECT count(*) AS n FROM deployments");
    for (key, id) in &accepted {
        let (s, b) = d.get(&format!("/deployments/{id}")).await;
        assert_eq!(s, 200, "{key} was answered 202 as {id}: {b}");
        assert_eq!(b["data"]["parameters"]["message"], json!(key));
    }
    // The requests cut off by the kill: committed or not, retrying with their key gives
    // exactly one deployment each (the first, when it was committed).
    let client = reqwest::Client::new();
    for key in &failed {
        let (s, b) = post(&client, &url_of(&d), Some(key), &echo(key))
            .await
            .expect("retry");
        assert_eq!(s, 202, "{b}");
    }
    let keys = accepted.len() + failed.len();
    assert!(
        stored as usize <= keys,
        "nothing but what was asked: {stored} > {keys}"
    );
    assert_eq!(
        db.count("SELECT count(*) AS n FROM deployments") as usize,
        keys,
        "one deployment per key"
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT idempotency_key) AS n FROM deployments") as usize,
        keys
    );
}

fn url_of(d: &Daemon) -> String {
    d.url("/deploy")
}

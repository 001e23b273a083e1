//! Teams through the real daemon: the role every route needs (walked from the OpenAPI document),
//! four-eyes approval and who requested and approved each run, the audit trail of changes and
//! refusals (and what it must never hold), and signed webhooks: their payloads and signatures,
//! retries with backoff until dead, redelivery, the outbox surviving a `kill -9`, and the
//! refusal of private addresses.
//!
//! Named tokens come from `config/default.toml` in the daemon's working directory (its data
//! dir): environment variables can only carry plain token lists.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::webhook::{Received, Receiver, Reply, verify, verify_parts};
use common::*;
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(120);

/// (name, role, token). `root` and `bob` are configured by digest, the others by value.
const ROOT: (&str, &str, &str) = ("root", "admin", "root-token-0123456789abcdef");
const ALICE: (&str, &str, &str) = ("alice", "approver", "alice-token-0123456789abcdef");
const BOB: (&str, &str, &str) = ("bob", "approver", "bob-token-0123456789abcdef");
const OLIVIA: (&str, &str, &str) = ("olivia", "operator", "olivia-token-0123456789abcdef");
const VERA: (&str, &str, &str) = ("vera", "viewer", "vera-token-0123456789abcdef");
/// A plain (legacy) entry: the sixth token, so named `token-6`, role admin.
const LEGACY: &str = "legacy-token-0123456789abcdef";
const WRONG: &str = "wrong-token-value-123456";

const ROLES: [&str; 4] = ["viewer", "operator", "approver", "admin"];

fn rank(role: &str) -> usize {
    ROLES
        .iter()
        .position(|r| *r == role)
        .unwrap_or_else(|| panic!("{role:?} is not a role"))
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `<data_dir>/config/default.toml`: the named tokens, then `extra` (more sections).
fn write_config(dir: &Path, extra: &str) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let text = format!(
        r#"[auth]
tokens = [
  {{ name = "{}", role = "{}", token_sha256 = "{}" }},
  {{ name = "{}", role = "{}", token = "{}" }},
  {{ name = "{}", role = "{}", token_sha256 = "{}" }},
  {{ name = "{}", role = "{}", token_sha256 = "{}" }},
  {{ name = "{}", role = "{}", token = "{}" }},
  "{LEGACY}",
]

{extra}
"#,
        ROOT.0,
        ROOT.1,
        sha256_hex(ROOT.2),
        ALICE.0,
        ALICE.1,
        ALICE.2,
        BOB.0,
        BOB.1,
        sha256_hex(BOB.2),
        OLIVIA.0,
        OLIVIA.1,
        sha256_hex(OLIVIA.2),
        VERA.0,
        VERA.1,
        VERA.2,
    );
    std::fs::write(config.join("default.toml"), text).expect("write config/default.toml");
}

/// A daemon with the named tokens, four-eyes, a secrets key, and `env`.
async fn daemon(db: &TestDb, dir: &tempfile::TempDir, extra: &str, env: &[(&str, &str)]) -> Daemon {
    write_config(dir.path(), extra);
    let mut cfg = DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
        .set("MULTICLOUD__RUNNER__RUN_TIMEOUT_SECS", 120)
        .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY)
        .set("MULTICLOUD__AUTH__FOUR_EYES", "true");
    for (k, v) in env {
        cfg = cfg.set(k, v);
    }
    Daemon::start(cfg).await
}

/// One request with an optional bearer token (and a JSON body).
async fn call(
    d: &Daemon,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let method =
        reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
    let mut req = reqwest::Client::new().request(method, d.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(d: &Daemon, token: &str, path: &str) -> (u16, Value) {
    call(d, "GET", path, Some(token), None).await
}

async fn post(d: &Daemon, token: &str, path: &str, body: Value) -> (u16, Value) {
    call(d, "POST", path, Some(token), Some(&body)).await
}

/// `POST /deploy` of the echo fixture by `token`; answers the deployment id.
async fn deploy(d: &Daemon, token: &str, auto_apply: bool, params: Value) -> String {
    let (s, b) = post(
        d,
        token,
        "/deploy",
        json!({"template_name": "echo", "provider_type": "aws", "auto_apply": auto_apply,
               "parameters": params}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    b["data"]["deployment_id"]
        .as_str()
        .expect("deployment id")
        .to_string()
}

/// Polls the deployment until it is neither pending nor running.
async fn wait_terminal(d: &Daemon, id: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let (s, b) = get(d, VERA.2, &format!("/deployments/{id}/status")).await;
        assert_eq!(s, 200, "{b}");
        let status = b["data"]["status"].as_str().unwrap_or_default();
        if !["pending", "running"].contains(&status) {
            return b["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{id} still {status}: {}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Polls the run until it ended or waits for a decision.
async fn wait_run(d: &Daemon, run_id: &str) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let (s, b) = get(d, VERA.2, &format!("/runs/{run_id}")).await;
        assert_eq!(s, 200, "{b}");
        let status = b["data"]["status"].as_str().unwrap_or_default();
        if !["pending", "running"].contains(&status) {
            return b["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{run_id} still {status}: {}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The deployment's runs, newest first.
async fn runs(d: &Daemon, id: &str) -> Vec<Value> {
    let (s, b) = get(d, VERA.2, &format!("/deployments/{id}/runs")).await;
    assert_eq!(s, 200, "{b}");
    b["data"]["runs"].as_array().expect("runs").clone()
}

fn run_id(body: &Value) -> String {
    body["data"]["run_id"].as_str().expect("run id").to_string()
}

/// A webhook registered by root; answers its id.
async fn register(d: &Daemon, url: &str, events: Value, secret: &str) -> String {
    let (s, b) = post(
        d,
        ROOT.2,
        "/webhooks",
        json!({"url": url, "events": events, "secret": secret}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["data"]["webhook_id"]
        .as_str()
        .expect("webhook id")
        .to_string()
}

const ALL_EVENTS: [&str; 7] = [
    "run.pending",
    "run.planned",
    "run.completed",
    "run.failed",
    "run.cancelled",
    "deployment.destroyed",
    "deployment.drifted",
];

async fn deliveries(d: &Daemon, webhook: &str) -> Vec<Value> {
    let (s, b) = get(
        d,
        ROOT.2,
        &format!("/webhooks/{webhook}/deliveries?limit=200"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    b["data"]["deliveries"]
        .as_array()
        .expect("deliveries")
        .clone()
}

/// Polls a webhook's deliveries until `done` holds for them.
async fn wait_deliveries(
    d: &Daemon,
    webhook: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let list = deliveries(d, webhook).await;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries of {webhook} never {what}: {}\n{}",
            serde_json::to_string_pretty(&list).unwrap_or_default(),
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn all_status(list: &[Value], n: usize, status: &str) -> bool {
    list.len() == n && list.iter().all(|x| x["status"] == status)
}

/// Runs one statement against the test database.
fn sql(db: &TestDb, statement: &str) {
    let mut conn = PgConnection::establish(&db.url).expect("connect");
    diesel::sql_query(statement)
        .execute(&mut conn)
        .expect(statement);
}

/// How many rows of `table` contain `needle` anywhere in their text form.
fn rows_containing(db: &TestDb, table: &str, needle: &str) -> i64 {
    assert!(!needle.contains('\''));
    db.count(&format!(
        "SELECT count(*) AS n FROM {table} t WHERE strpos(t::text, '{needle}') > 0"
    ))
}

/// Substitutes well-formed but unknown values for a route's `{...}` segments, and adds the
/// subscription an Azure route requires.
fn concrete_path(path: &str, op: &Value) -> String {
    let id = if path.starts_with("/deployments/") {
        "deploy-0123456789abcdef"
    } else if path.starts_with("/runs/") {
        "run-0123456789abcdef"
    } else {
        "wh-0123456789abcdef"
    };
    let mut out = path
        .replace("{id}", id)
        .replace("{delivery_id}", "1")
        .replace("{provider_type}", "aws")
        .replace(
            "{name}",
            if path.starts_with("/templates/") {
                "echo"
            } else {
                "rg-x"
            },
        );
    assert!(!out.contains('{'), "an unknown path parameter in {path}");
    let needs_subscription = op["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == "subscription_id"));
    if needs_subscription {
        out.push_str("?subscription_id=00000000-0000-0000-0000-000000000000");
    }
    out
}

#[tokio::test]
async fn every_route_has_a_role_and_each_role_is_allowed_or_refused() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, "", &[]).await;

    // The document itself needs a token.
    let (s, b) = call(&d, "GET", "/openapi.json", None, None).await;
    assert_eq!(assert_error(s, &b, 401), "unauthorized");
    let (s, doc) = get(&d, VERA.2, "/openapi.json").await;
    assert_eq!(s, 200, "{doc}");
    let mut audited: i64 = 1;

    let callers = [VERA, OLIVIA, ALICE, ROOT];
    let mut operations = BTreeMap::new();
    let mut refused: Vec<(&str, &str, String)> = Vec::new();
    let mut anonymous_refusals = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let public = path == "/" || path == "/health";
            let required = op.get("x-required-role").and_then(Value::as_str);
            if public {
                assert_eq!(required, None, "{method} {path}");
                assert_eq!(op["security"], json!([]), "{method} {path} is public");
            } else {
                let role =
                    required.unwrap_or_else(|| panic!("{method} {path} has no x-required-role"));
                rank(role);
                assert!(
                    op["responses"]["401"].is_object() && op["responses"]["403"].is_object(),
                    "{method} {path} documents neither 401 nor 403"
                );
            }
            operations.insert(
                format!("{} {path}", method.to_ascii_uppercase()),
                required.unwrap_or("public").to_string(),
            );
            let url = concrete_path(path, op);
            let change = method != "get";
            let body = change.then(|| json!({}));
            let route = format!("{} {path}", method.to_ascii_uppercase());

            for token in [None, Some(WRONG)] {
                let (s, b) = call(&d, method, &url, token, body.as_ref()).await;
                if public {
                    assert_eq!(s, 200, "{route} without a token: {b}");
                } else {
                    assert_eq!(
                        assert_error(s, &b, 401),
                        "unauthorized",
                        "{route} with {token:?}"
                    );
                    audited += 1;
                    anonymous_refusals += 1;
                }
            }
            for (name, role, token) in callers {
                let (s, b) = call(&d, method, &url, Some(token), body.as_ref()).await;
                let allowed = required.is_none_or(|needed| rank(role) >= rank(needed));
                if allowed {
                    assert!(
                        s != 401 && s != 403,
                        "{route} as {name} ({role}) answered {s}: {b}"
                    );
                    if change {
                        audited += 1;
                    }
                } else {
                    assert_eq!(
                        assert_error(s, &b, 403),
                        "forbidden",
                        "{route} as {name} ({role})"
                    );
                    let message = b["message"].as_str().unwrap_or_default();
                    assert!(
                        message.contains(role) && message.contains(required.unwrap_or("?")),
                        "{route} as {name}: the refusal names the roles: {message}"
                    );
                    audited += 1;
                    refused.push((name, role, route.clone()));
                }
            }
        }
    }

    // The document covers the API, and the roles that matter most are what the design says
    // (a weakened rule fails here, not only in the table it came from).
    assert!(operations.len() >= 34, "{operations:#?}");
    for (route, role) in [
        ("GET /", "public"),
        ("GET /health", "public"),
        ("GET /deployments", "viewer"),
        ("GET /runs/{id}/logs", "viewer"),
        ("POST /deploy", "operator"),
        ("PATCH /deployments/{id}", "operator"),
        ("DELETE /deployments/{id}", "operator"),
        ("POST /deployments/{id}/cancel", "operator"),
        ("POST /deployments/{id}/plan", "operator"),
        ("POST /deployments/{id}/apply", "approver"),
        ("POST /deployments/{id}/discard", "approver"),
        ("POST /resource-groups", "operator"),
        ("DELETE /resource-groups/{name}", "admin"),
        ("GET /audit", "admin"),
        ("GET /webhooks", "admin"),
        ("POST /webhooks", "admin"),
        ("GET /webhooks/{id}/deliveries", "admin"),
        (
            "POST /webhooks/{id}/deliveries/{delivery_id}/redeliver",
            "admin",
        ),
    ] {
        assert_eq!(
            operations.get(route).map(String::as_str),
            Some(role),
            "{route}"
        );
    }
    // Every API route the guard knows is documented with the same role. Not in the API
    // document: the document itself, its viewer page, and the HTML dashboard (`/ui`).
    let outside =
        |path: &str| ["/openapi.json", "/docs"].contains(&path) || path.starts_with("/ui");
    let mut api_rules = 0;
    for rule in multicloud::http::access::RULES {
        let route = format!("{} {}", rule.method, rule.path);
        if outside(rule.path) {
            continue;
        }
        api_rules += 1;
        assert_eq!(
            operations.get(&route).map(String::as_str),
            Some(rule.role.map_or("public", |r| r.as_str())),
            "{route} is not documented as the guard enforces it"
        );
    }
    assert_eq!(operations.len(), api_rules);

    // One row per refusal and per allowed change; none for allowed reads.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_events"),
        audited,
        "{}",
        db.count("SELECT count(*) AS n FROM audit_events WHERE outcome = 'ok'")
    );
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM audit_events WHERE actor = '-' AND role IS NULL \
             AND outcome = 'unauthorized' AND status_code = 401 AND error_code = 'unauthorized'"
        ),
        anonymous_refusals + 1
    );
    assert!(anonymous_refusals >= 64, "{anonymous_refusals}");
    assert!(refused.len() >= 30, "{refused:?}");
    for (name, role, route) in &refused {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) AS n FROM audit_events WHERE actor = '{name}' AND role = '{role}' \
                 AND route = '{route}' AND outcome = 'forbidden' AND status_code = 403 \
                 AND error_code = 'forbidden' AND client_addr = '127.0.0.1' AND request_id <> ''"
            )),
            1,
            "the refusal of {route} to {name}"
        );
    }
    // The tokens themselves are nowhere in the trail.
    for token in [ROOT.2, ALICE.2, BOB.2, OLIVIA.2, VERA.2, WRONG] {
        assert_eq!(rows_containing(&db, "audit_events", token), 0, "{token}");
    }
    assert!(
        rows_containing(&db, "audit_events", "vera") > 0,
        "the scan finds what is there"
    );
}

#[tokio::test]
async fn four_eyes_and_run_authors() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, "", &[]).await;

    // An operator's gated deploy: an operator cannot apply it, an approver can.
    let (s, b) = post(
        &d,
        VERA.2,
        "/deploy",
        json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "x"}}),
    )
    .await;
    assert_eq!(
        assert_error(s, &b, 403),
        "forbidden",
        "a viewer cannot deploy"
    );
    let id = deploy(&d, OLIVIA.2, false, json!({"message": "one"})).await;
    let st = wait_terminal(&d, &id).await;
    assert_eq!(st["status"], "planned", "{st}");
    let apply = format!("/deployments/{id}/apply");
    let (s, b) = post(&d, OLIVIA.2, &apply, json!({})).await;
    assert_eq!(
        assert_error(s, &b, 403),
        "forbidden",
        "an operator cannot apply"
    );
    let (s, b) = post(
        &d,
        OLIVIA.2,
        &format!("/deployments/{id}/discard"),
        json!({}),
    )
    .await;
    assert_eq!(
        assert_error(s, &b, 403),
        "forbidden",
        "an operator cannot discard"
    );
    let (s, b) = post(&d, ALICE.2, &apply, json!({})).await;
    assert_eq!(s, 202, "{b}");
    let first = wait_run(&d, &run_id(&b)).await;
    assert_eq!(first["status"], "completed", "{first}\n{}", d.log_text());
    assert_eq!(
        (
            first["kind"].as_str(),
            first["requested_by"].as_str(),
            first["approved_by"].as_str()
        ),
        (Some("deploy"), Some("olivia"), Some("alice")),
        "{first}"
    );

    // An approver's own gated update: not by her (four-eyes), by another approver.
    let (s, b) = call(
        &d,
        "PATCH",
        &format!("/deployments/{id}"),
        Some(ALICE.2),
        Some(&json!({"parameters": {"message": "two"}, "auto_apply": false})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let update_id = run_id(&b);
    let update = wait_run(&d, &update_id).await;
    assert_eq!(update["status"], "planned", "{update}");
    assert_eq!(update["requested_by"], "alice");
    let (s, b) = post(&d, ALICE.2, &apply, json!({})).await;
    assert_eq!(assert_error(s, &b, 403), "forbidden", "four-eyes");
    let message = b["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("four-eyes") && message.contains(&update_id) && message.contains("alice"),
        "{message}"
    );
    let (_, run) = get(&d, VERA.2, &format!("/runs/{update_id}")).await;
    assert_eq!(
        run["data"]["status"], "planned",
        "the refusal changed nothing"
    );
    assert_eq!(run["data"]["approved_by"], Value::Null);
    let (s, b) = post(&d, BOB.2, &apply, json!({})).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(run_id(&b), update_id);
    let update = wait_run(&d, &update_id).await;
    assert_eq!(update["status"], "completed", "{update}\n{}", d.log_text());
    assert_eq!(
        (
            update["kind"].as_str(),
            update["requested_by"].as_str(),
            update["approved_by"].as_str()
        ),
        (Some("update"), Some("alice"), Some("bob")),
        "{update}"
    );
    let st = wait_terminal(&d, &id).await;
    assert_eq!(st["outputs"]["message"], "two", "{st}");

    // Discarding one's own plan is allowed: it applies nothing.
    let (s, b) = call(
        &d,
        "PATCH",
        &format!("/deployments/{id}"),
        Some(BOB.2),
        Some(&json!({"parameters": {"message": "three"}, "auto_apply": false})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let third = run_id(&b);
    assert_eq!(wait_run(&d, &third).await["status"], "planned");
    let (s, b) = post(&d, BOB.2, &format!("/deployments/{id}/discard"), json!({})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["status"], "discarded");
    assert_eq!(b["data"]["requested_by"], "bob");
    // The legacy (plain) token is an admin named token-6.
    let (s, b) = post(
        &d,
        LEGACY,
        &format!("/deployments/{id}/plan"),
        json!({"parameters": {"message": "four"}}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let speculative = wait_run(&d, &run_id(&b)).await;
    assert_eq!(speculative["requested_by"], "token-6", "{speculative}");
    assert_eq!(speculative["approved_by"], Value::Null, "{speculative}");

    // The history shows who asked and who approved.
    let authors: Vec<(String, String, String, String)> = runs(&d, &id)
        .await
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
            (s("kind"), s("status"), s("requested_by"), s("approved_by"))
        })
        .collect();
    let want: Vec<(String, String, String, String)> = [
        ("plan", "completed", "token-6", "-"),
        ("update", "discarded", "bob", "-"),
        ("update", "completed", "alice", "bob"),
        ("deploy", "completed", "olivia", "alice"),
    ]
    .iter()
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
    .collect();
    assert_eq!(authors, want);

    // The audit trail has the refused apply and the approved one.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'alice' AND role = 'approver' \
             AND action = 'run.apply' AND target = '{id}' AND outcome = 'forbidden' \
             AND status_code = 403 AND error_code = 'forbidden'"
        )),
        1
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'bob' AND action = 'run.apply' \
             AND target = '{id}' AND run_id = '{update_id}' AND outcome = 'ok' AND status_code = 202"
        )),
        1
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'olivia' AND role = 'operator' \
             AND action IN ('run.apply', 'run.discard') AND target = '{id}' AND outcome = 'forbidden'"
        )),
        2
    );
}

#[tokio::test]
async fn audit_rows_for_changes_and_refusals_without_secrets() {
    const MESSAGE: &str = "audit-message-value-4711";
    const SECRET: &str = "hunter22-very-secret";
    const SECRET2: &str = "hunter22-rejected-secret";
    const WH_SECRET: &str = "whsec-audit-0123456789-very-secret";
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, "", &[]).await;

    // 1. A webhook on a public address literal (never called: no such event happens here).
    let wh = register(
        &d,
        "https://93.184.215.14/audit-hook",
        json!(["deployment.drifted"]),
        WH_SECRET,
    )
    .await;
    // 2. A deploy with a sensitive value.
    let id = deploy(
        &d,
        OLIVIA.2,
        true,
        json!({"message": MESSAGE, "secret": SECRET}),
    )
    .await;
    assert_eq!(wait_terminal(&d, &id).await["status"], "completed");
    // 3. A bad deploy (422).
    let (s, b) = post(
        &d,
        OLIVIA.2,
        "/deploy",
        json!({"template_name": "echo", "provider_type": "aws",
               "parameters": {"secret": SECRET2, "colour": MESSAGE}}),
    )
    .await;
    assert_eq!(assert_error(s, &b, 422), "validation_error");
    // 4. A cancel of a finished deployment (409).
    let (s, b) = post(
        &d,
        OLIVIA.2,
        &format!("/deployments/{id}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(assert_error(s, &b, 409), "conflict");
    // 5. A destroy of an unknown deployment (404).
    let unknown = "deploy-0123456789abcdef";
    let (s, b) = call(
        &d,
        "DELETE",
        &format!("/deployments/{unknown}"),
        Some(OLIVIA.2),
        None,
    )
    .await;
    assert_eq!(assert_error(s, &b, 404), "deployment_not_found");
    // 6. A viewer deploying (403).
    let body = json!({"template_name": "echo", "provider_type": "aws",
                      "parameters": {"message": MESSAGE, "secret": SECRET}});
    let (s, b) = post(&d, VERA.2, "/deploy", body.clone()).await;
    assert_eq!(assert_error(s, &b, 403), "forbidden");
    // 7. A wrong token (401).
    let (s, b) = post(&d, WRONG, "/deploy", body.clone()).await;
    assert_eq!(assert_error(s, &b, 401), "unauthorized");
    // 8. No token at all (401).
    let (s, b) = call(&d, "DELETE", &format!("/deployments/{id}"), None, None).await;
    assert_eq!(assert_error(s, &b, 401), "unauthorized");
    // 9, 10. The trail is for admins only: refused reads are audited.
    for token in [VERA.2, OLIVIA.2] {
        let (s, b) = get(&d, token, "/audit").await;
        assert_eq!(assert_error(s, &b, 403), "forbidden");
    }
    // A successful read is not.
    let (s, _) = get(&d, VERA.2, "/deployments").await;
    assert_eq!(s, 200);
    // 11. The legacy token (an admin named token-6) checks for drift.
    let (s, b) = post(
        &d,
        LEGACY,
        &format!("/deployments/{id}/drift-check"),
        json!({}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let drift_run = run_id(&b);
    assert_eq!(wait_run(&d, &drift_run).await["status"], "completed");
    // 12. The webhook goes.
    let (s, b) = call(&d, "DELETE", &format!("/webhooks/{wh}"), Some(ROOT.2), None).await;
    assert_eq!(s, 200, "{b}");

    // Everything, newest first.
    let (s, all) = get(&d, ROOT.2, "/audit").await;
    assert_eq!(s, 200, "{all}");
    let events = all["data"]["events"].as_array().expect("events").clone();
    assert_eq!(all["data"]["count"], events.len());
    assert_eq!(all["data"]["next_cursor"], Value::Null);
    let n = Value::Null;
    #[rustfmt::skip]
    let want = vec![
        json!(["root", "admin", "webhook.delete", "DELETE /webhooks/{id}", wh, "ok", 200, n]),
        json!(["token-6", "admin", "run.drift_check", "POST /deployments/{id}/drift-check", id, "ok", 202, n]),
        json!(["olivia", "operator", "read", "GET /audit", n, "forbidden", 403, "forbidden"]),
        json!(["vera", "viewer", "read", "GET /audit", n, "forbidden", 403, "forbidden"]),
        json!(["-", n, "deployment.destroy", "DELETE /deployments/{id}", id, "unauthorized", 401, "unauthorized"]),
        json!(["-", n, "deployment.create", "POST /deploy", n, "unauthorized", 401, "unauthorized"]),
        json!(["vera", "viewer", "deployment.create", "POST /deploy", n, "forbidden", 403, "forbidden"]),
        json!(["olivia", "operator", "deployment.destroy", "DELETE /deployments/{id}", unknown, "not_found", 404, "deployment_not_found"]),
        json!(["olivia", "operator", "deployment.cancel", "POST /deployments/{id}/cancel", id, "conflict", 409, "conflict"]),
        json!(["olivia", "operator", "deployment.create", "POST /deploy", n, "invalid", 422, "validation_error"]),
        json!(["olivia", "operator", "deployment.create", "POST /deploy", id, "ok", 202, n]),
        json!(["root", "admin", "webhook.create", "POST /webhooks", wh, "ok", 201, n]),
    ];
    let got: Vec<Value> = events
        .iter()
        .map(|e| {
            json!([
                e["actor"],
                e["role"],
                e["action"],
                e["route"],
                e["target"],
                e["outcome"],
                e["status_code"],
                e["error_code"]
            ])
        })
        .collect();
    assert_eq!(
        got,
        want,
        "{}",
        serde_json::to_string_pretty(&events).unwrap_or_default()
    );
    let mut previous: Option<(i64, String)> = None;
    for e in &events {
        let keys: BTreeSet<&str> = e
            .as_object()
            .expect("event")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "audit_id",
                "at",
                "actor",
                "role",
                "action",
                "route",
                "target",
                "run_id",
                "outcome",
                "status_code",
                "error_code",
                "request_id",
                "client_addr"
            ]),
            "{e}"
        );
        assert!(
            e["request_id"].as_str().is_some_and(|r| !r.is_empty()),
            "{e}"
        );
        assert_eq!(e["client_addr"], "127.0.0.1", "{e}");
        let at = e["at"].as_str().expect("at").to_string();
        chrono::DateTime::parse_from_rfc3339(&at).expect("RFC 3339");
        let audit_id = e["audit_id"].as_i64().expect("audit_id");
        if let Some((prev_id, prev_at)) = &previous {
            assert!(audit_id < *prev_id && at <= *prev_at, "newest first: {e}");
        }
        previous = Some((audit_id, at));
    }
    assert_eq!(events[1]["run_id"], drift_run.as_str());
    let ids: Vec<i64> = events
        .iter()
        .filter_map(|e| e["audit_id"].as_i64())
        .collect();
    let request_ids: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    assert_eq!(request_ids.len(), events.len(), "one request, one id");

    // Filters.
    let query = |pairs: &[(&str, &str)]| {
        format!(
            "/audit?{}",
            serde_urlencoded::to_string(pairs).expect("query")
        )
    };
    let picked = |pairs: Vec<(&'static str, String)>| {
        let d = &d;
        async move {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (s, b) = get(d, ROOT.2, &query(&pairs)).await;
            assert_eq!(s, 200, "{pairs:?}: {b}");
            b["data"]["events"]
                .as_array()
                .expect("events")
                .iter()
                .filter_map(|e| e["audit_id"].as_i64())
                .collect::<Vec<i64>>()
        }
    };
    let at = |i: usize| ids[i];
    assert_eq!(
        picked(vec![("actor", "olivia".into())]).await,
        vec![at(2), at(7), at(8), at(9), at(10)]
    );
    assert_eq!(
        picked(vec![("actor", "-".into())]).await,
        vec![at(4), at(5)]
    );
    assert_eq!(
        picked(vec![("action", "deployment.create".into())]).await,
        vec![at(5), at(6), at(9), at(10)]
    );
    assert_eq!(
        picked(vec![("outcome", "forbidden".into())]).await,
        vec![at(2), at(3), at(6)]
    );
    assert_eq!(
        picked(vec![("target", id.clone())]).await,
        vec![at(1), at(4), at(8), at(10)]
    );
    assert_eq!(
        picked(vec![("actor", "olivia".into()), ("outcome", "ok".into())]).await,
        vec![at(10)]
    );
    assert_eq!(
        picked(vec![("actor", "nobody".into())]).await,
        Vec::<i64>::new()
    );
    let time = |i: usize| events[i]["at"].as_str().expect("at").to_string();
    // since is inclusive, until exclusive.
    assert_eq!(
        picked(vec![("since", time(8)), ("until", time(3))]).await,
        vec![at(4), at(5), at(6), at(7), at(8)]
    );
    // Keyset paging: five at a time gives everything once, in order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut pairs = vec![("limit", "5".to_string())];
        if let Some(c) = &cursor {
            pairs.push(("cursor", c.clone()));
        }
        let pairs_ref: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, b) = get(&d, ROOT.2, &query(&pairs_ref)).await;
        assert_eq!(s, 200, "{b}");
        let page = b["data"]["events"].as_array().expect("events");
        assert!(page.len() <= 5);
        paged.extend(page.iter().filter_map(|e| e["audit_id"].as_i64()));
        match b["data"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, ids, "pages of 5");
    for (k, v) in [
        ("limit", "0"),
        ("limit", "501"),
        ("cursor", "abc"),
        ("since", "yesterday"),
        ("actor", ""),
        ("colour", "red"),
    ] {
        let (s, b) = get(&d, ROOT.2, &query(&[(k, v)])).await;
        assert!(s == 400 || s == 422, "{k}={v}: {s} {b}");
    }
    // A bad query by an admin is a read: not audited either.
    assert_eq!(
        db.count("SELECT count(*) AS n FROM audit_events"),
        events.len() as i64
    );

    // No parameter value, token or webhook secret anywhere in the table or its API.
    let mut pages_text = all.to_string();
    for actor in ["olivia", "-"] {
        let (_, b) = get(&d, ROOT.2, &query(&[("actor", actor)])).await;
        pages_text.push_str(&b.to_string());
    }
    for needle in [
        MESSAGE, SECRET, SECRET2, WH_SECRET, ROOT.2, ALICE.2, BOB.2, OLIVIA.2, VERA.2, LEGACY,
        WRONG,
    ] {
        assert_eq!(
            rows_containing(&db, "audit_events", needle),
            0,
            "{needle} in audit_events"
        );
        assert!(!pages_text.contains(needle), "{needle} in GET /audit");
        if needle != MESSAGE {
            assert!(
                !d.log_text().contains(needle),
                "{needle} in the daemon's log"
            );
        }
    }
    // The scan does find what is there (it can fail).
    assert_eq!(rows_containing(&db, "audit_events", "token-6"), 1);
    assert!(rows_containing(&db, "deployments", MESSAGE) > 0);
}

/// Groups received requests by event id (a receiver de-duplicates on it).
fn by_event_id(got: &[Received]) -> BTreeMap<String, Vec<&Received>> {
    let mut map: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in got {
        map.entry(r.event_id()).or_default().push(r);
    }
    map
}

/// Checks one delivered request the way a receiver would, and answers its body.
fn check_request(secret: &str, r: &Received) -> Value {
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hook"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        r.header("user-agent")
            .is_some_and(|u| u.starts_with("multicloud/")),
        "{:?}",
        r.headers
    );
    verify(secret.as_bytes(), r).unwrap_or_else(|e| panic!("{e}: {:?}", r.headers));
    let body = r.json();
    assert_eq!(body["id"], r.event_id().as_str());
    assert_eq!(body["type"], r.event_type().as_str());
    assert!(
        body["occurred_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn webhooks_are_signed_and_cover_the_lifecycle() {
    const SECRET: &str = "whsec-lifecycle-0123456789";
    const MESSAGE: &str = "webhook-message-value-1234";
    const SENSITIVE: &str = "webhook-sensitive-value-77";
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start().await;
    let d = daemon(
        &db,
        &dir,
        "",
        &[("MULTICLOUD__WEBHOOKS__ALLOW_PRIVATE", "true")],
    )
    .await;

    // Registering: admins only; the secret is never shown and stored sealed.
    let body = json!({"url": rx.url, "events": ALL_EVENTS, "secret": SECRET});
    let (s, b) = post(&d, ALICE.2, "/webhooks", body.clone()).await;
    assert_eq!(assert_error(s, &b, 403), "forbidden");
    for (bad, field) in [
        (
            json!({"url": rx.url, "events": ALL_EVENTS, "secret": "short"}),
            "secret",
        ),
        (
            json!({"url": rx.url, "events": ["run.exploded"], "secret": SECRET}),
            "events",
        ),
        (
            json!({"url": rx.url, "events": [], "secret": SECRET}),
            "events",
        ),
        (
            json!({"url": "ftp://127.0.0.1/x", "events": ALL_EVENTS, "secret": SECRET}),
            "url",
        ),
    ] {
        let (s, b) = post(&d, ROOT.2, "/webhooks", bad.clone()).await;
        assert_eq!(assert_error(s, &b, 422), "validation_error", "{bad}");
        assert!(problem(&b, field).is_some(), "{bad}: {b}");
    }
    let r = reqwest::Client::new()
        .post(d.url("/webhooks"))
        .bearer_auth(ROOT.2)
        .json(&body)
        .send()
        .await
        .expect("POST /webhooks");
    assert_eq!(r.status().as_u16(), 201);
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(String::from);
    let created: Value = r.json().await.expect("json");
    let wh = created["data"]["webhook_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(location, Some(format!("/webhooks/{wh}")));
    let keys: BTreeSet<&str> = created["data"]
        .as_object()
        .expect("webhook")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["webhook_id", "url", "events", "created_by", "created_at"])
    );
    assert_eq!(created["data"]["created_by"], "root");
    assert_eq!(created["data"]["events"], json!(ALL_EVENTS));
    let (s, list) = get(&d, ROOT.2, "/webhooks").await;
    assert_eq!(s, 200);
    assert_eq!(list["data"]["webhooks"][0]["webhook_id"], wh.as_str());
    let (s, one) = get(&d, ROOT.2, &format!("/webhooks/{wh}")).await;
    assert_eq!(s, 200);
    for text in [created.to_string(), list.to_string(), one.to_string()] {
        assert!(!text.contains(SECRET), "{text}");
    }
    assert_eq!(rows_containing(&db, "webhooks", SECRET), 0, "sealed");
    let (s, b) = get(&d, OLIVIA.2, &format!("/webhooks/{wh}")).await;
    assert_eq!(assert_error(s, &b, 403), "forbidden");

    let params = |extra: Value| {
        let mut p = json!({"message": MESSAGE, "secret": SENSITIVE});
        if let (Some(p), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        p
    };
    // D1: gated, approved, applied; then drifted; then destroyed.
    let d1 = deploy(&d, OLIVIA.2, false, params(json!({}))).await;
    assert_eq!(wait_terminal(&d, &d1).await["status"], "planned");
    let (s, b) = post(&d, ALICE.2, &format!("/deployments/{d1}/apply"), json!({})).await;
    assert_eq!(s, 202, "{b}");
    let d1_run = run_id(&b);
    assert_eq!(wait_run(&d, &d1_run).await["status"], "completed");
    // A plan without changes is announced as completed too.
    let (s, b) = post(&d, OLIVIA.2, &format!("/deployments/{d1}/plan"), json!({})).await;
    assert_eq!(s, 202, "{b}");
    let d1_plan = run_id(&b);
    assert_eq!(wait_run(&d, &d1_plan).await["status"], "no_changes");
    // Real drift cannot be made with terraform_data (a refresh never changes it), so the drift
    // result is written as a drift check would: the outbox trigger announces the transition.
    sql(
        &db,
        &format!(
            "UPDATE deployments SET drift = jsonb_build_object('status', 'drifted', \
             'run_id', NULL, 'resources', '[]'::jsonb) WHERE deployment_id = '{d1}'"
        ),
    );
    // D2: fails.
    let d2 = deploy(&d, OLIVIA.2, true, params(json!({"fail": true}))).await;
    assert_eq!(wait_terminal(&d, &d2).await["status"], "failed");
    // D3: gated, then cancelled while its plan waits.
    let d3 = deploy(&d, OLIVIA.2, false, params(json!({}))).await;
    assert_eq!(wait_terminal(&d, &d3).await["status"], "planned");
    let (s, b) = post(
        &d,
        OLIVIA.2,
        &format!("/deployments/{d3}/cancel"),
        json!({}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    // D1 destroyed.
    let (s, b) = call(
        &d,
        "DELETE",
        &format!("/deployments/{d1}"),
        Some(OLIVIA.2),
        None,
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(wait_terminal(&d, &d1).await["status"], "destroyed");

    let mut want: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    want.insert(
        d1.clone(),
        vec![
            "deployment.destroyed",
            "deployment.drifted",
            "run.completed",
            "run.completed",
            "run.completed",
            "run.pending",
            "run.pending",
            "run.pending",
            "run.planned",
        ],
    );
    want.insert(d2.clone(), vec!["run.failed", "run.pending"]);
    want.insert(
        d3.clone(),
        vec!["run.cancelled", "run.pending", "run.planned"],
    );
    let total: usize = want.values().map(Vec::len).sum();
    let list = wait_deliveries(&d, &wh, Duration::from_secs(30), "all delivered", |l| {
        all_status(l, total, "delivered")
    })
    .await;
    // Nothing more comes (a moment past the notifier's poll).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = rx.received();
    assert_eq!(got.len(), total, "one request per event");
    assert_eq!(
        db.count("SELECT count(*) AS n FROM webhook_events"),
        total as i64
    );

    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut bodies = Vec::new();
    for r in &got {
        let body = check_request(SECRET, r);
        assert_eq!(r.attempt(), 1, "{body}");
        let dep = body["deployment"]["deployment_id"]
            .as_str()
            .expect("deployment")
            .to_string();
        seen.entry(dep)
            .or_default()
            .push(body["type"].as_str().expect("type").to_string());
        bodies.push(body);
    }
    for types in seen.values_mut() {
        types.sort();
    }
    let want: BTreeMap<String, Vec<String>> = want
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(by_event_id(&got).len(), total, "event ids are unique");

    // The verifier can fail: a changed body, another secret, another time.
    let r = &got[0];
    let ts = r.header("x-multicloud-timestamp").expect("timestamp");
    let sig = r.header("x-multicloud-signature").expect("signature");
    assert!(sig.starts_with("sha256=") && sig.len() == 71, "{sig}");
    verify_parts(SECRET.as_bytes(), ts, &r.body, sig).expect("the original verifies");
    let mut forged = r.body.clone();
    let pos = forged
        .iter()
        .position(|b| *b == b'.')
        .expect("a dot in the body");
    forged[pos] = b'-';
    assert!(verify_parts(SECRET.as_bytes(), ts, &forged, sig).is_err());
    assert!(verify_parts(b"whsec-someone-else-0123", ts, &r.body, sig).is_err());
    let later = (ts.parse::<i64>().expect("ts") + 1).to_string();
    assert!(verify_parts(SECRET.as_bytes(), &later, &r.body, sig).is_err());

    // The payloads: summaries, never parameter values.
    let find = |dep: &str, kind: &str, ty: &str| -> Value {
        bodies
            .iter()
            .find(|b| {
                b["deployment"]["deployment_id"] == dep
                    && b["type"] == ty
                    && (kind.is_empty() || b["run"]["kind"] == kind)
            })
            .cloned()
            .unwrap_or_else(|| panic!("no {ty} of a {kind} run of {dep}"))
    };
    let completed = find(&d1, "deploy", "run.completed");
    let deployment_keys: BTreeSet<&str> = completed["deployment"]
        .as_object()
        .expect("deployment")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        deployment_keys,
        BTreeSet::from([
            "deployment_id",
            "template_name",
            "provider_type",
            "resource_group",
            "status",
            "operation",
            "drift"
        ])
    );
    let run_keys: BTreeSet<&str> = completed["run"]
        .as_object()
        .expect("run")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        run_keys,
        BTreeSet::from([
            "run_id",
            "kind",
            "status",
            "auto_apply",
            "requested_by",
            "approved_by",
            "plan",
            "error_message",
            "created_at",
            "completed_at"
        ])
    );
    assert_eq!(completed["deployment"]["template_name"], "echo");
    // As the API shows the deployment.
    let (_, record) = get(&d, VERA.2, &format!("/deployments/{d1}")).await;
    assert_eq!(
        completed["deployment"]["provider_type"], record["data"]["provider_type"],
        "{record}"
    );
    assert_eq!(completed["deployment"]["provider_type"], "terraform-aws");
    assert_eq!(
        completed["deployment"]["status"], "completed",
        "{completed}"
    );
    assert_eq!(completed["run"]["run_id"], d1_run.as_str());
    assert_eq!(completed["run"]["status"], "completed");
    assert_eq!(completed["run"]["auto_apply"], false);
    assert_eq!(completed["run"]["requested_by"], "olivia");
    assert_eq!(completed["run"]["approved_by"], "alice");
    assert_eq!(
        completed["run"]["plan"],
        json!({"add": 1, "change": 0, "destroy": 0})
    );
    assert!(completed["run"]["completed_at"].is_string(), "{completed}");
    let planned = find(&d1, "deploy", "run.planned");
    assert_eq!(planned["run"]["status"], "planned");
    assert_eq!(planned["deployment"]["status"], "planned");
    assert_eq!(planned["run"]["approved_by"], Value::Null);
    let no_changes = find(&d1, "plan", "run.completed");
    assert_eq!(no_changes["run"]["run_id"], d1_plan.as_str());
    assert_eq!(no_changes["run"]["status"], "no_changes", "{no_changes}");
    assert_eq!(no_changes["run"]["requested_by"], "olivia");
    let failed = find(&d2, "deploy", "run.failed");
    assert_eq!(failed["run"]["status"], "failed");
    assert!(
        failed["run"]["error_message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{failed}"
    );
    let cancelled = find(&d3, "deploy", "run.cancelled");
    assert_eq!(cancelled["run"]["status"], "cancelled");
    assert_eq!(
        cancelled["deployment"]["status"], "cancelled",
        "{cancelled}"
    );
    let destroyed = find(&d1, "", "deployment.destroyed");
    assert_eq!(destroyed["deployment"]["status"], "destroyed");
    assert_eq!(destroyed["run"]["kind"], "destroy", "{destroyed}");
    assert_eq!(destroyed["run"]["status"], "completed", "{destroyed}");
    let drifted = find(&d1, "", "deployment.drifted");
    assert_eq!(drifted["deployment"]["drift"], "drifted");
    assert_eq!(drifted["run"], Value::Null);
    for needle in [MESSAGE, SENSITIVE, SECRET] {
        assert!(
            !got.iter()
                .any(|r| String::from_utf8_lossy(&r.body).contains(needle)),
            "{needle} was sent"
        );
        assert_eq!(
            rows_containing(&db, "webhook_events", needle),
            0,
            "{needle}"
        );
    }

    // The deliveries as the API shows them.
    let ids: BTreeSet<String> = got.iter().map(Received::event_id).collect();
    for x in &list {
        assert_eq!(x["status"], "delivered", "{x}");
        assert_eq!(x["attempts"], 1, "{x}");
        assert_eq!(x["last_status_code"], 200, "{x}");
        assert_eq!(x["last_error"], Value::Null, "{x}");
        assert_eq!(x["response_excerpt"], "ok", "{x}");
        assert!(x["delivered_at"].is_string(), "{x}");
        assert!(
            ids.contains(x["event_id"].as_str().expect("event id")),
            "{x}"
        );
        assert!(
            ALL_EVENTS.contains(&x["event_type"].as_str().expect("type")),
            "{x}"
        );
    }
    let (s, b) = get(&d, ROOT.2, &format!("/webhooks/{wh}/deliveries?limit=4")).await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["count"], 4);
    assert!(b["data"]["next_cursor"].is_string(), "{b}");

    // Deleted: no more events are even written.
    let (s, b) = call(&d, "DELETE", &format!("/webhooks/{wh}"), Some(ROOT.2), None).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = get(&d, ROOT.2, &format!("/webhooks/{wh}")).await;
    assert_eq!(assert_error(s, &b, 404), "webhook_not_found");
    let d4 = deploy(&d, OLIVIA.2, false, params(json!({}))).await;
    assert_eq!(wait_terminal(&d, &d4).await["status"], "planned");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM webhook_events WHERE deployment_id = '{d4}'"
        )),
        0
    );
    assert_eq!(rx.received().len(), total);
}

#[tokio::test]
async fn a_receiver_failing_with_500_is_retried_with_backoff_then_dead() {
    const SECRET: &str = "whsec-retries-0123456789";
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    // A: 500 three times, then 200. B: 500 until told otherwise. C: nobody listens.
    let a = Receiver::with_policy(Box::new(|i, _| {
        Reply::Status(if i < 3 { 500 } else { 200 })
    }))
    .await;
    let b = Receiver::with_policy(Box::new(|_, _| Reply::Status(500))).await;
    let closed = format!("http://127.0.0.1:{}/hook", free_port());
    // Waits of 1 s, 2 s, 4 s (each between half and all of it): above the notifier's 1 s poll.
    let d = daemon(
        &db,
        &dir,
        "",
        &[
            ("MULTICLOUD__WEBHOOKS__ALLOW_PRIVATE", "true"),
            ("MULTICLOUD__WEBHOOKS__BACKOFF_INITIAL_MS", "1000"),
            ("MULTICLOUD__WEBHOOKS__BACKOFF_MAX_SECS", "4"),
            ("MULTICLOUD__WEBHOOKS__MAX_ATTEMPTS", "4"),
            ("MULTICLOUD__WEBHOOKS__TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    let events = json!(["run.completed"]);
    let wa = register(&d, &a.url, events.clone(), SECRET).await;
    let wb = register(&d, &b.url, events.clone(), SECRET).await;
    let wc = register(&d, &closed, events, SECRET).await;
    let id = deploy(&d, OLIVIA.2, true, json!({"message": "retry"})).await;
    assert_eq!(wait_terminal(&d, &id).await["status"], "completed");

    let timeout = Duration::from_secs(40);
    let la = wait_deliveries(&d, &wa, timeout, "delivered", |l| {
        all_status(l, 1, "delivered")
    })
    .await;
    let lb = wait_deliveries(&d, &wb, timeout, "dead", |l| all_status(l, 1, "dead")).await;
    let lc = wait_deliveries(&d, &wc, timeout, "dead", |l| all_status(l, 1, "dead")).await;
    // Dead is final: nothing more is sent (a moment past the notifier's poll).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let got_a = a.received();
    assert_eq!(
        got_a.len(),
        4,
        "three failures, then success on the last allowed attempt"
    );
    let event_id = got_a[0].event_id();
    for (i, r) in got_a.iter().enumerate() {
        check_request(SECRET, r);
        assert_eq!(r.event_id(), event_id, "the same event id on every attempt");
        assert_eq!(r.attempt(), i as u32 + 1);
        assert_eq!(r.event_type(), "run.completed");
    }
    let timestamps: BTreeSet<&str> = got_a
        .iter()
        .filter_map(|r| r.header("x-multicloud-timestamp"))
        .collect();
    assert!(
        timestamps.len() >= 2,
        "each attempt is signed anew: {timestamps:?}"
    );
    // The waits grow: at least half of 1 s, 2 s, 4 s (the jitter's floor: a constant
    // backoff fails the last bound); at most that plus the notifier's 1 s poll and slack.
    let gaps: Vec<f64> = got_a
        .windows(2)
        .map(|w| w[1].at.duration_since(w[0].at).as_secs_f64())
        .collect();
    for (gap, cap) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            *gap >= cap / 2.0 - 0.05 && *gap <= cap + 5.0,
            "gap {gap:.2}s after a wait capped at {cap}s: {gaps:?}"
        );
    }
    assert_eq!(
        (
            la[0]["attempts"].as_i64(),
            la[0]["last_status_code"].as_i64()
        ),
        (Some(4), Some(200)),
        "{la:?}"
    );
    assert_eq!(la[0]["response_excerpt"], "ok");
    assert_eq!(la[0]["event_id"], event_id.as_str());

    let got_b = b.received();
    assert_eq!(got_b.len(), 4, "max_attempts, then dead");
    assert!(got_b.iter().all(|r| r.event_id() == event_id));
    assert_eq!(
        got_b.iter().map(Received::attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let dead = &lb[0];
    assert_eq!(
        (dead["attempts"].as_i64(), dead["last_status_code"].as_i64()),
        (Some(4), Some(500)),
        "{dead}"
    );
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{dead}"
    );
    assert_eq!(dead["response_excerpt"], "receiver says no (500)");
    assert_eq!(dead["delivered_at"], Value::Null);
    // Connection errors are retried the same way.
    assert_eq!(lc[0]["attempts"], 4, "{lc:?}");
    assert_eq!(lc[0]["last_status_code"], Value::Null);
    assert!(
        lc[0]["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{lc:?}"
    );

    // Redelivered: pending again from attempt 1, retried while the receiver still fails,
    // delivered once it recovers.
    let delivery = dead["delivery_id"].as_i64().expect("delivery id");
    let redeliver = format!("/webhooks/{wb}/deliveries/{delivery}/redeliver");
    let (s, body) = post(&d, OLIVIA.2, &redeliver, json!({})).await;
    assert_eq!(assert_error(s, &body, 403), "forbidden");
    let (s, body) = post(
        &d,
        ROOT.2,
        &format!("/webhooks/{wb}/deliveries/99999/redeliver"),
        json!({}),
    )
    .await;
    assert_eq!(assert_error(s, &body, 404), "delivery_not_found");
    let (s, body) = post(
        &d,
        ROOT.2,
        &format!("/webhooks/{wa}/deliveries/{delivery}/redeliver"),
        json!({}),
    )
    .await;
    assert_eq!(
        assert_error(s, &body, 404),
        "delivery_not_found",
        "another webhook's delivery"
    );
    let (s, body) = post(&d, ROOT.2, &redeliver, json!({})).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["data"]["status"], "pending");
    assert_eq!(body["data"]["attempts"], 0);
    assert_eq!(body["data"]["event_id"], event_id.as_str());
    b.wait_for(5, Duration::from_secs(10)).await;
    b.set_policy(Box::new(|_, _| Reply::Status(204)));
    wait_deliveries(&d, &wb, Duration::from_secs(10), "retried", |l| {
        l.len() == 1
            && l[0]["status"] == "pending"
            && l[0]["attempts"] == 1
            && l[0]["last_status_code"] == 500
    })
    .await;
    let lb = wait_deliveries(&d, &wb, timeout, "delivered", |l| {
        all_status(l, 1, "delivered")
    })
    .await;
    assert_eq!(
        (
            lb[0]["attempts"].as_i64(),
            lb[0]["last_status_code"].as_i64()
        ),
        (Some(2), Some(204)),
        "{lb:?}"
    );
    let got_b = b.received();
    assert_eq!(got_b.len(), 6);
    assert_eq!(
        got_b.iter().map(Received::attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 1, 2]
    );
    assert!(got_b.iter().all(|r| r.event_id() == event_id));
    for r in &got_b {
        check_request(SECRET, r);
    }
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'root' \
             AND action = 'webhook.redeliver' AND target = '{wb}' AND outcome = 'ok'"
        )),
        1
    );
    assert_eq!(a.received().len(), 4, "the other webhooks are left alone");
}

#[tokio::test]
async fn an_event_survives_kill_9_before_delivery() {
    const SECRET: &str = "whsec-kill9-0123456789";
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    // The first request is held until the daemon dies; every other one is answered.
    let rx = Receiver::with_policy(Box::new(|i, _| {
        if i == 0 {
            Reply::Hold(Duration::from_secs(120))
        } else {
            Reply::Status(200)
        }
    }))
    .await;
    let env = [
        ("MULTICLOUD__WEBHOOKS__ALLOW_PRIVATE", "true"),
        ("MULTICLOUD__WEBHOOKS__TIMEOUT_SECS", "2"),
        ("MULTICLOUD__WEBHOOKS__BACKOFF_INITIAL_MS", "200"),
        ("MULTICLOUD__WEBHOOKS__BACKOFF_MAX_SECS", "1"),
    ];
    // First life: this node delivers nothing (`delivery_workers = 0`, from the config file).
    let mut d = daemon(&db, &dir, "[webhooks]\ndelivery_workers = 0\n", &env).await;
    let wh = register(&d, &rx.url, json!(ALL_EVENTS), SECRET).await;
    let id = deploy(&d, ALICE.2, false, json!({"message": "kill"})).await;
    assert_eq!(wait_terminal(&d, &id).await["status"], "planned");
    // The events were written with the status changes, and are not delivered yet.
    assert_eq!(db.count("SELECT count(*) AS n FROM webhook_events"), 2);
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending' AND attempts = 0"
        ),
        2
    );
    d.kill9();
    assert_eq!(rx.connections(), 0);

    // Second life, delivering: the first request is held, and the daemon dies mid-delivery.
    write_config(dir.path(), "[webhooks]\ndelivery_workers = 4\n");
    d.start_again().await;
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    d.kill9();
    let held = got[0].event_id();
    assert_eq!(got[0].attempt(), 1);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE event_id = '{held}' \
             AND status = 'pending' AND attempts = 1 AND lease_owner IS NOT NULL \
             AND last_status_code IS NULL AND last_error IS NULL"
        )),
        1,
        "the held delivery was claimed, its result never recorded"
    );

    // Third life: the plan is approved; the held event is sent again once its lease expires.
    let restarted = Instant::now();
    d.start_again().await;
    let (s, b) = post(&d, BOB.2, &format!("/deployments/{id}/apply"), json!({})).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(wait_run(&d, &run_id(&b)).await["status"], "completed");
    // The lease is the attempt's timeout plus 10 s.
    let list = wait_deliveries(&d, &wh, Duration::from_secs(60), "all delivered", |l| {
        all_status(l, 3, "delivered")
    })
    .await;

    let got = rx.received();
    let events = by_event_id(&got);
    let stored: BTreeSet<String> = {
        #[derive(diesel::QueryableByName)]
        struct E {
            #[diesel(sql_type = diesel::sql_types::Text)]
            event_id: String,
        }
        let mut conn = PgConnection::establish(&db.url).expect("connect");
        diesel::sql_query("SELECT event_id FROM webhook_events")
            .load::<E>(&mut conn)
            .expect("events")
            .into_iter()
            .map(|e| e.event_id)
            .collect()
    };
    assert_eq!(
        events.keys().cloned().collect::<BTreeSet<_>>(),
        stored,
        "every stored event arrived, none other"
    );
    let mut types: Vec<String> = events.values().map(|rs| rs[0].event_type()).collect();
    types.sort();
    assert_eq!(types, vec!["run.completed", "run.pending", "run.planned"]);
    for (event, rs) in &events {
        for r in rs {
            check_request(SECRET, r);
            assert_eq!(&r.event_id(), event);
        }
        let attempts: Vec<u32> = rs.iter().map(|r| r.attempt()).collect();
        assert!(
            attempts.windows(2).all(|w| w[0] < w[1]),
            "{event}: attempts {attempts:?}"
        );
        // The same event each time: one id, one body.
        assert!(rs.iter().all(|r| r.body == rs[0].body), "{event}");
    }
    let again = &events[&held];
    assert!(again.len() >= 2, "the held event was sent again: {again:?}");
    assert!(
        again[1].at > restarted,
        "sent again by the restarted daemon"
    );
    let held_delivery = list
        .iter()
        .find(|x| x["event_id"] == held.as_str())
        .expect("the held delivery");
    assert_eq!(held_delivery["attempts"], again.len(), "{held_delivery}");
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    const SECRET: &str = "whsec-private-0123456789";
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = Receiver::start().await;
    let port = rx
        .url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/hook")
        .to_string();
    let d = daemon(&db, &dir, "", &[]).await;

    for (url, why) in [
        (rx.url.clone(), "loopback"),
        (format!("http://localhost:{port}/hook"), "loopback"),
        (format!("http://[::1]:{port}/hook"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "metadata",
        ),
        (format!("http://[::ffff:127.0.0.1]:{port}/hook"), "loopback"),
        ("http://10.0.0.1/hook".to_string(), "private"),
        // Numeric host names the resolver reads as 127.0.0.1: judged by what they resolve to.
        (format!("http://127.1:{port}/hook"), "loopback"),
        (format!("http://2130706433:{port}/hook"), "loopback"),
        ("https://192.168.1.10/hook".to_string(), "private"),
        ("http://[fd00:ec2::254]/hook".to_string(), "metadata"),
    ] {
        let (s, b) = post(
            &d,
            ROOT.2,
            "/webhooks",
            json!({"url": url, "events": ["run.completed"], "secret": SECRET}),
        )
        .await;
        assert_eq!(assert_error(s, &b, 422), "validation_error", "{url}");
        let problem = problem(&b, "url").unwrap_or_else(|| panic!("{url}: {b}"));
        assert!(
            problem.contains(why) && problem.contains("allow_private"),
            "{url}: {problem}"
        );
    }
    assert_eq!(db.count("SELECT count(*) AS n FROM webhooks"), 0);
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM audit_events WHERE action = 'webhook.create' \
             AND outcome = 'invalid' AND status_code = 422"
        ),
        10
    );
    // Without a secrets key there is nowhere safe to keep a webhook's secret.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        write_config(dir.path(), "");
        let keyless = Daemon::start(DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)).await;
        let (s, b) = post(
            &keyless,
            ROOT.2,
            "/webhooks",
            json!({"url": "https://93.184.215.14/hook", "events": ["run.completed"], "secret": SECRET}),
        )
        .await;
        assert_eq!(assert_error(s, &b, 422), "validation_error");
        assert!(
            problem(&b, "secret").is_some_and(|p| p.contains("secrets.key")),
            "{b}"
        );
    }
    // A public address is accepted (and removed again).
    let public = register(
        &d,
        "https://93.184.215.14/hook",
        json!(["deployment.drifted"]),
        SECRET,
    )
    .await;
    let (s, b) = call(
        &d,
        "DELETE",
        &format!("/webhooks/{public}"),
        Some(ROOT.2),
        None,
    )
    .await;
    assert_eq!(s, 200, "{b}");

    // A webhook written straight into the database (past the API's check) is refused at
    // delivery: dead at once, and the receiver never sees a connection.
    let wh = "wh-00000000000000aa";
    let mut sealed = vec![0u8];
    sealed.extend_from_slice(SECRET.as_bytes());
    {
        use diesel::sql_types::{Array, Bytea, Text};
        let mut conn = PgConnection::establish(&db.url).expect("connect");
        diesel::sql_query(
            "INSERT INTO webhooks (webhook_id, url, events, secret_sealed, created_by) \
             VALUES ($1, $2, $3, $4, 'sql')",
        )
        .bind::<Text, _>(wh)
        .bind::<Text, _>(&rx.url)
        .bind::<Array<Text>, _>(vec!["run.pending", "run.completed"])
        .bind::<Bytea, _>(&sealed)
        .execute(&mut conn)
        .expect("insert a webhook");
    }
    let id = deploy(&d, OLIVIA.2, true, json!({"message": "private"})).await;
    assert_eq!(wait_terminal(&d, &id).await["status"], "completed");
    let list = wait_deliveries(&d, wh, Duration::from_secs(20), "dead", |l| {
        all_status(l, 2, "dead")
    })
    .await;
    for x in &list {
        assert_eq!(x["attempts"], 1, "not retried: {x}");
        assert_eq!(x["last_status_code"], Value::Null, "{x}");
        let error = x["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("127.0.0.1") && error.contains("loopback"),
            "{x}"
        );
    }
    // A moment past the notifier's poll: still nothing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rx.connections(), 0, "the receiver was never called");
    assert!(rx.received().is_empty());
}

/// The guard decides on the raw request path while the router matches the percent-decoded one,
/// so an encoded letter (`/%61udit` for `/audit`) reaches the handler without the role check.
#[tokio::test]
async fn percent_encoded_paths_cannot_skip_the_role_check() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, "", &[]).await;
    let id = deploy(&d, OLIVIA.2, false, json!({"message": "encoded"})).await;
    assert_eq!(wait_terminal(&d, &id).await["status"], "planned");

    for path in ["/%61udit", "/%77ebhooks", "/audit"] {
        let (s, b) = get(&d, VERA.2, path).await;
        assert_eq!(
            assert_error(s, &b, 403),
            "forbidden",
            "a viewer reading {path}"
        );
    }
    let (s, b) = post(
        &d,
        OLIVIA.2,
        &format!("/deployments/{id}/%61pply"),
        json!({}),
    )
    .await;
    assert_eq!(
        assert_error(s, &b, 403),
        "forbidden",
        "an operator applying"
    );
    let (s, b) = post(
        &d,
        VERA.2,
        "/%64eploy",
        json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "v"}}),
    )
    .await;
    assert_eq!(assert_error(s, &b, 403), "forbidden", "a viewer deploying");
    assert_eq!(db.count("SELECT count(*) AS n FROM deployments"), 1);
    let history = runs(&d, &id).await;
    assert_eq!(history[0]["status"], "planned", "{history:?}");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'olivia' AND action = 'run.apply' \
             AND target = '{id}' AND outcome = 'forbidden'"
        )),
        1
    );
}

/// A deploy refused by the rate limit is a refused state-changing request: it has its row.
#[tokio::test]
async fn a_rate_limited_deploy_is_audited() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(
        &db,
        &dir,
        "",
        &[("MULTICLOUD__SERVER__DEPLOY_RATE_PER_MINUTE", "1")],
    )
    .await;
    deploy(&d, OLIVIA.2, true, json!({"message": "first"})).await;
    let (s, b) = post(
        &d,
        OLIVIA.2,
        "/deploy",
        json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "second"}}),
    )
    .await;
    assert_eq!(assert_error(s, &b, 429), "rate_limited");
    assert_eq!(
        db.count(
            "SELECT count(*) AS n FROM audit_events WHERE actor = 'olivia' AND role = 'operator' \
             AND action = 'deployment.create' AND outcome = 'rate_limited' AND status_code = 429 \
             AND error_code = 'rate_limited'"
        ),
        1
    );
    assert_eq!(db.count("SELECT count(*) AS n FROM audit_events"), 2);
}

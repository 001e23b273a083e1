//! `/openapi.json` describes every route, and real responses (successes and errors) validate
//! against the schemas the document declares for their method, path and status.

mod common;

use std::time::Duration;

use common::arm::ArmServer;
use common::*;
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-000000000002";

/// The schema the spec declares for `method path` answering `status`.
fn declared_schema(spec: &Value, method: &str, path: &str, status: u16) -> Value {
    let op = &spec["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not in the document");
    let response = &op["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} does not declare {status}"
    );
    response["content"]["application/json"]["schema"].clone()
}

fn check(spec: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let schema = declared_schema(spec, method, path, status);
    let mut doc = spec.clone();
    let obj = doc.as_object_mut().expect("object");
    for (k, v) in schema.as_object().expect("schema").clone() {
        obj.insert(k, v);
    }
    let validator = jsonschema::validator_for(&doc).expect("valid JSON schema");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?}\n{body}"
    );
}

#[tokio::test]
async fn real_responses_match_the_openapi_document() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY)
            .set("MULTICLOUD__WEBHOOKS__ALLOW_PRIVATE", true)
            .set("MULTICLOUD__WEBHOOKS__BACKOFF_INITIAL_MS", 100)
            .with_arm(&server),
    )
    .await;
    let (s, spec) = d.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.")),
        "{}",
        spec["openapi"]
    );
    // Every route the daemon serves is documented.
    for (method, path) in [
        ("get", "/"),
        ("get", "/health"),
        ("get", "/providers"),
        ("get", "/metrics"),
        ("get", "/templates"),
        ("get", "/templates/{provider_type}/{name}"),
        ("get", "/templates/{provider_type}/{name}/parameters"),
        ("get", "/templates/{provider_type}/{name}/content"),
        ("post", "/deploy"),
        ("get", "/deployments"),
        ("get", "/deployments/{id}"),
        ("delete", "/deployments/{id}"),
        ("get", "/deployments/{id}/status"),
        ("get", "/deployments/{id}/logs"),
        ("post", "/deployments/{id}/cancel"),
        ("patch", "/deployments/{id}"),
        ("get", "/deployments/{id}/runs"),
        ("post", "/deployments/{id}/plan"),
        ("post", "/deployments/{id}/drift-check"),
        ("post", "/deployments/{id}/apply"),
        ("post", "/deployments/{id}/discard"),
        ("get", "/runs/{id}"),
        ("get", "/runs/{id}/logs"),
        ("get", "/resource-groups"),
        ("post", "/resource-groups"),
        ("delete", "/resource-groups/{name}"),
        ("get", "/resource-groups/{name}/resources"),
        ("get", "/audit"),
        ("get", "/webhooks"),
        ("post", "/webhooks"),
        ("get", "/webhooks/{id}"),
        ("delete", "/webhooks/{id}"),
        ("get", "/webhooks/{id}/deliveries"),
        ("post", "/webhooks/{id}/deliveries/{delivery_id}/redeliver"),
    ] {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }

    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let req = client.request(method, d.url(&path));
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        async move {
            let r = req.send().await.expect("request");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.expect("json"))
        }
    };
    use reqwest::Method as M;

    for (path, doc) in [
        ("/", "/"),
        ("/health", "/health"),
        ("/providers", "/providers"),
        ("/templates", "/templates"),
        ("/templates/aws/echo", "/templates/{provider_type}/{name}"),
        (
            "/templates/aws/echo/parameters",
            "/templates/{provider_type}/{name}/parameters",
        ),
        (
            "/templates/azure/storage-demo/content",
            "/templates/{provider_type}/{name}/content",
        ),
    ] {
        let (s, b) = call(M::GET, path.into(), None).await;
        check(&spec, "get", doc, s, &b);
    }
    let (s, b) = call(M::GET, "/templates/aws/nope".into(), None).await;
    check(&spec, "get", "/templates/{provider_type}/{name}", s, &b);

    // Deploy: accepted, and each kind of refusal.
    let (s, b) = call(M::POST, "/deploy".into(), Some(json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "spec", "secret": "shh-shh-shh"}}))).await;
    assert_eq!(s, 202);
    check(&spec, "post", "/deploy", s, &b);
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    for body in [
        json!({"provider_type": "aws"}),
        json!({"template_name": "nope", "provider_type": "aws"}),
    ] {
        let (s, b) = call(M::POST, "/deploy".into(), Some(body)).await;
        check(&spec, "post", "/deploy", s, &b);
    }
    let r = client
        .post(d.url("/deploy"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("post");
    let s = r.status().as_u16();
    check(&spec, "post", "/deploy", s, &r.json().await.expect("json"));

    d.wait_terminal(&id, Duration::from_secs(60)).await;
    for (path, doc) in [
        (format!("/deployments/{id}"), "/deployments/{id}"),
        (
            format!("/deployments/{id}/status"),
            "/deployments/{id}/status",
        ),
        (format!("/deployments/{id}/logs"), "/deployments/{id}/logs"),
        ("/deployments".to_string(), "/deployments"),
        ("/deployments?limit=0".to_string(), "/deployments"),
        (
            "/deployments/deploy-0123456789abcdef".to_string(),
            "/deployments/{id}",
        ),
    ] {
        let (s, b) = call(M::GET, path, None).await;
        check(&spec, "get", doc, s, &b);
    }
    let (s, b) = call(
        M::POST,
        format!("/deployments/{id}/cancel"),
        Some(json!({})),
    )
    .await;
    assert_eq!(s, 409);
    check(&spec, "post", "/deployments/{id}/cancel", s, &b);
    // The lifecycle: an update, a plan, a drift check, the runs and their logs, refusals.
    let (s, b) = call(
        M::PATCH,
        format!("/deployments/{id}"),
        Some(json!({"parameters": {"message": "spec 2"}, "auto_apply": false})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    check(&spec, "patch", "/deployments/{id}", s, &b);
    let update = b["data"]["run_id"].as_str().expect("run").to_string();
    let planned = d.wait_run(&update, Duration::from_secs(60)).await;
    assert_eq!(planned["status"], "planned");
    let (s, b) = call(M::GET, format!("/runs/{update}"), None).await;
    check(&spec, "get", "/runs/{id}", s, &b);
    let (s, b) = call(M::POST, format!("/deployments/{id}/discard"), None).await;
    assert_eq!(s, 200, "{b}");
    check(&spec, "post", "/deployments/{id}/discard", s, &b);
    for (path, want) in [("apply", 409), ("discard", 409)] {
        let (s, b) = call(M::POST, format!("/deployments/{id}/{path}"), None).await;
        assert_eq!(s, want, "{b}");
        check(&spec, "post", &format!("/deployments/{{id}}/{path}"), s, &b);
    }
    let (s, b) = call(
        M::POST,
        format!("/deployments/{id}/plan"),
        Some(json!({"parameters": {"message": "spec 3"}})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    check(&spec, "post", "/deployments/{id}/plan", s, &b);
    let plan = b["data"]["run_id"].as_str().expect("run").to_string();
    d.wait_run(&plan, Duration::from_secs(60)).await;
    let (s, b) = call(M::POST, format!("/deployments/{id}/drift-check"), None).await;
    assert_eq!(s, 202, "{b}");
    check(&spec, "post", "/deployments/{id}/drift-check", s, &b);
    d.wait_run(
        b["data"]["run_id"].as_str().expect("run"),
        Duration::from_secs(60),
    )
    .await;
    for (path, doc) in [
        (format!("/deployments/{id}/runs"), "/deployments/{id}/runs"),
        (
            format!("/deployments/{id}/runs?limit=0"),
            "/deployments/{id}/runs",
        ),
        (format!("/runs/{plan}"), "/runs/{id}"),
        (format!("/runs/{plan}/logs"), "/runs/{id}/logs"),
        (format!("/runs/{plan}/logs?after=-1"), "/runs/{id}/logs"),
        ("/runs/run-0123456789abcdef".to_string(), "/runs/{id}"),
        (
            format!("/deployments/{id}/logs?run=all"),
            "/deployments/{id}/logs",
        ),
        ("/deployments?drift=in_sync".to_string(), "/deployments"),
        (format!("/deployments/{id}"), "/deployments/{id}"),
    ] {
        let (s, b) = call(M::GET, path, None).await;
        check(&spec, "get", doc, s, &b);
    }
    let (s, b) = call(
        M::PATCH,
        format!("/deployments/{id}"),
        Some(json!({"parameters": {"message": 7}, "template_version": "newest"})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    check(&spec, "patch", "/deployments/{id}", s, &b);

    let (s, b) = call(M::DELETE, format!("/deployments/{id}"), None).await;
    assert_eq!(s, 202);
    check(&spec, "delete", "/deployments/{id}", s, &b);

    // Azure resource groups (against the ARM test server).
    let (s, b) = call(
        M::POST,
        "/resource-groups".into(),
        Some(json!({"name": "rg-spec", "location": "westeurope", "subscription_id": SUB})),
    )
    .await;
    assert_eq!(s, 201);
    check(&spec, "post", "/resource-groups", s, &b);
    let (s, b) = call(
        M::GET,
        format!("/resource-groups?subscription_id={SUB}"),
        None,
    )
    .await;
    check(&spec, "get", "/resource-groups", s, &b);
    let (s, b) = call(
        M::GET,
        format!("/resource-groups/rg-spec/resources?subscription_id={SUB}"),
        None,
    )
    .await;
    check(&spec, "get", "/resource-groups/{name}/resources", s, &b);
    let (s, b) = call(
        M::DELETE,
        format!("/resource-groups/rg-spec?subscription_id={SUB}"),
        None,
    )
    .await;
    assert_eq!(s, 202);
    check(&spec, "delete", "/resource-groups/{name}", s, &b);

    // Teams: webhooks (a receiver that is not listening: its deliveries fail), the audit trail.
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["run.pending", "run.completed"], "secret": "spec-secret-0123456789"});
    let (s, b) = call(M::POST, "/webhooks".into(), Some(hook)).await;
    assert_eq!(s, 201, "{b}");
    check(&spec, "post", "/webhooks", s, &b);
    let wh = b["data"]["webhook_id"]
        .as_str()
        .expect("webhook")
        .to_string();
    for body in [
        json!({"url": "ftp://example.org", "events": ["run.nope"], "secret": "short"}),
        json!({"url": "http://127.0.0.1:9/", "events": [], "secret": "spec-secret-0123456789", "extra": 1}),
    ] {
        let (s, b) = call(M::POST, "/webhooks".into(), Some(body)).await;
        assert_eq!(s, 422, "{b}");
        check(&spec, "post", "/webhooks", s, &b);
    }
    let (s, b) = call(M::POST, "/deploy".into(), Some(json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "hook"}}))).await;
    assert_eq!(s, 202, "{b}");
    d.wait_terminal(
        b["data"]["deployment_id"].as_str().expect("id"),
        Duration::from_secs(60),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let delivery = loop {
        let (s, b) = call(M::GET, format!("/webhooks/{wh}/deliveries"), None).await;
        check(&spec, "get", "/webhooks/{id}/deliveries", s, &b);
        if let Some(first) = b["data"]["deliveries"]
            .as_array()
            .and_then(|l| l.iter().find(|d| d["attempts"].as_i64() > Some(0)))
        {
            break first["delivery_id"].as_i64().expect("delivery id");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery attempt: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (path, doc) in [
        ("/webhooks".to_string(), "/webhooks"),
        (format!("/webhooks/{wh}"), "/webhooks/{id}"),
        (
            "/webhooks/wh-0123456789abcdef".to_string(),
            "/webhooks/{id}",
        ),
        (
            format!("/webhooks/{wh}/deliveries?limit=0"),
            "/webhooks/{id}/deliveries",
        ),
        ("/audit".to_string(), "/audit"),
        ("/audit?action=webhook.create&limit=1".to_string(), "/audit"),
        ("/audit?since=yesterday".to_string(), "/audit"),
    ] {
        let (s, b) = call(M::GET, path, None).await;
        check(&spec, "get", doc, s, &b);
    }
    for path in [
        format!("/webhooks/{wh}/deliveries/{delivery}/redeliver"),
        format!("/webhooks/{wh}/deliveries/999999/redeliver"),
    ] {
        let (s, b) = call(M::POST, path, None).await;
        check(
            &spec,
            "post",
            "/webhooks/{id}/deliveries/{delivery_id}/redeliver",
            s,
            &b,
        );
    }
    let (s, b) = call(M::DELETE, format!("/webhooks/{wh}"), None).await;
    assert_eq!(s, 200, "{b}");
    check(&spec, "delete", "/webhooks/{id}", s, &b);
    let (s, b) = call(M::DELETE, format!("/webhooks/{wh}"), None).await;
    assert_eq!(s, 404, "{b}");
    check(&spec, "delete", "/webhooks/{id}", s, &b);

    // The interactive docs point at the document.
    let html = client
        .get(d.url("/docs"))
        .send()
        .await
        .expect("docs")
        .text()
        .await
        .expect("html");
    assert!(html.contains("/openapi.json"));
}

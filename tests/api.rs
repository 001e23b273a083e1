//! The REST surface through the real daemon: templates endpoints and every bad input of the
//! core issue (status code, envelope, and that no row was written).

mod common;

use common::*;
use serde_json::{Value, json};

async fn daemon(db: &TestDb, dir: &tempfile::TempDir) -> Daemon {
    Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .set("MULTICLOUD__SERVER__MAX_BODY_BYTES", 2048)
            // Nothing runs: the tests look only at what the API accepts and stores.
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 0),
    )
    .await
}

async fn raw_post(
    d: &Daemon,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(d.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_inputs_answer_in_the_envelope_and_write_nothing() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    let ok_body =
        json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "hi"}});

    // Malformed JSON: 400.
    let (s, b) = raw_post(&d, "/deploy", "application/json", "{\"template_name\": ").await;
    assert_eq!(assert_error(s, &b, 400), "bad_request");
    // Not JSON: 415.
    let (s, b) = raw_post(&d, "/deploy", "text/plain", ok_body.to_string()).await;
    assert_eq!(assert_error(s, &b, 415), "unsupported_media_type");
    // Too large: 413.
    let big = json!({"template_name": "echo", "provider_type": "aws", "parameters": {"message": "x".repeat(4096)}});
    let (s, b) = raw_post(&d, "/deploy", "application/json", big.to_string()).await;
    assert_eq!(assert_error(s, &b, 413), "payload_too_large");
    // Not an object, missing fields, wrong types, unknown fields: 422 naming each.
    let (s, b) = d.post_json("/deploy", &json!([1, 2])).await;
    assert_eq!(assert_error(s, &b, 422), "validation_error");
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"parameters": "x", "colour": 1, "location": 5}),
        )
        .await;
    assert_error(s, &b, 422);
    for f in [
        "template_name",
        "provider_type",
        "parameters",
        "colour",
        "location",
    ] {
        assert!(problem(&b, f).is_some(), "{f} not named: {b}");
    }
    // Unknown provider type: 422.
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "echo", "provider_type": "digitalocean"}),
        )
        .await;
    assert_error(s, &b, 422);
    assert!(
        problem(&b, "provider_type").is_some_and(|m| m.contains("digitalocean")),
        "{b}"
    );
    // Unknown template, and names that try to leave the folder: 404.
    for name in [
        "nope",
        "../../etc/passwd",
        "terraform/aws/echo",
        "echo\u{0}",
        "..",
        "/echo",
    ] {
        let (s, b) = d
            .post_json(
                "/deploy",
                &json!({"template_name": name, "provider_type": "aws"}),
            )
            .await;
        assert_eq!(assert_error(s, &b, 404), "template_not_found", "{name:?}");
    }
    // Parameters checked against the template: unknown, missing, wrong type: 422.
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "echo", "provider_type": "aws", "parameters": {"colour": "red", "fail": "yes"}}))
        .await;
    assert_error(s, &b, 422);
    assert!(
        problem(&b, "parameters.colour").is_some_and(|m| m.contains("unknown")),
        "{b}"
    );
    assert!(
        problem(&b, "parameters.message").is_some_and(|m| m.contains("required")),
        "{b}"
    );
    assert!(
        problem(&b, "parameters.fail").is_some_and(|m| m.contains("boolean")),
        "{b}"
    );
    // Bad Idempotency-Key header.
    let r = reqwest::Client::new()
        .post(d.url("/deploy"))
        .header("Idempotency-Key", "")
        .json(&ok_body)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 422);

    // Unknown deployment (well-formed or not): 404.
    for id in ["deploy-0123456789abcdef", "nope", "deploy-..%2F..%2Fetc"] {
        for suffix in ["", "/status", "/logs"] {
            let (s, b) = d.get(&format!("/deployments/{id}{suffix}")).await;
            assert_eq!(
                assert_error(s, &b, 404),
                "deployment_not_found",
                "{id}{suffix}"
            );
        }
    }
    // Unknown route 404, wrong method 405.
    let (s, b) = d.get("/no/such/route").await;
    assert_eq!(assert_error(s, &b, 404), "route_not_found");
    let (s, b) = d.get("/deploy").await;
    assert_eq!(assert_error(s, &b, 405), "method_not_allowed");
    let r = reqwest::Client::new()
        .put(d.url("/deployments"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET"),
        "a 405 says which methods the resource answers"
    );
    let r = reqwest::Client::new()
        .put(d.url("/deployments/deploy-0123456789abcdef"))
        .send()
        .await
        .expect("PUT");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, PATCH, DELETE")
    );
    // Query parameters out of range, or text PostgreSQL cannot hold: 422.
    for q in [
        "limit=0",
        "limit=501",
        "limit=abc",
        "status=archived",
        "cursor=garbage",
        "provider_type=x",
        "colour=red",
        "template_name=a%00b",
        "resource_group=rg%01",
    ] {
        let (s, b) = d.get(&format!("/deployments?{q}")).await;
        assert_eq!(assert_error(s, &b, 422), "validation_error", "{q}");
    }
    let (s, b) = d
        .get("/deployments/deploy-0123456789abcdef/logs?after=-1")
        .await;
    assert_error(s, &b, 422);

    // A NUL anywhere in the parameters (a value or a key, however deep): 422 naming it.
    for params in [
        json!({"message": "a\u{0}b"}),
        json!({"message": "ok", "lines": {"k\u{0}": 1}}),
        json!({"message": ["x", {"y": "z\u{0}"}]}),
    ] {
        let (s, b) = d
            .post_json(
                "/deploy",
                &json!({"template_name": "echo", "provider_type": "aws", "parameters": params}),
            )
            .await;
        assert_eq!(assert_error(s, &b, 422), "validation_error", "{params}");
        assert!(
            b["error"]["details"].as_array().is_some_and(|d| d
                .iter()
                .any(|p| p["problem"].as_str().is_some_and(|t| t.contains("NUL")))),
            "{b}"
        );
    }

    // Nothing of the above reached the database.
    assert_eq!(db.count("SELECT count(*) AS n FROM deployments"), 0);
    let (s, b) = d.get("/deployments").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["count"], 0);

    // And a good request is still accepted and committed before the 202.
    let (s, b) = d.post_json("/deploy", &ok_body).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["status"], "pending");
    assert_eq!(b["data"]["provider"], "terraform-aws");
    assert_eq!(b["data"]["template"], "echo");
    assert_eq!(b["data"]["task_id"], b["data"]["deployment_id"]);
    assert_eq!(
        db.count("SELECT count(*) AS n FROM deployments WHERE status = 'pending'"),
        1
    );
}

#[tokio::test]
async fn template_endpoints_describe_the_catalog() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 0),
    )
    .await;

    let (s, b) = d.get("/templates").await;
    assert_eq!(s, 200, "{b}");
    let names: Vec<&str> = b["data"]["templates"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"storage-bucket"), "{b}");
    assert_eq!(b["data"]["count"], names.len());
    let (_, b) = d.get("/templates?provider_type=gcp").await;
    assert!(
        b["data"]["templates"]
            .as_array()
            .expect("list")
            .iter()
            .all(|t| t["provider_type"] == "terraform-gcp")
    );
    let (_, b) = d.get("/templates?cloud=aws").await;
    assert!(
        b["data"]["templates"]
            .as_array()
            .expect("list")
            .iter()
            .all(|t| t["cloud"] == "aws")
    );

    // Forgiving lookup, aliases.
    for path in [
        "/templates/terraform-aws/storage-bucket",
        "/templates/aws/Storage%20Bucket",
        "/templates/AWS/storage_bucket",
    ] {
        let (s, b) = d.get(path).await;
        assert_eq!(s, 200, "{path}: {b}");
        assert_eq!(b["data"]["name"], "storage-bucket");
    }
    let (s, b) = d.get("/templates/aws/storage-bucket/parameters").await;
    assert_eq!(s, 200);
    let params = b["data"]["parameters"].as_array().expect("params");
    let bucket = params
        .iter()
        .find(|p| p["name"] == "bucket_name")
        .expect("bucket_name");
    assert_eq!(bucket["required"], true);
    assert_eq!(bucket["type"], "string");
    let tags = params.iter().find(|p| p["name"] == "tags").expect("tags");
    assert_eq!(tags["required"], false);
    assert_eq!(tags["default"], json!({}));
    let (s, b) = d.get("/templates/aws/storage-bucket/content").await;
    assert_eq!(s, 200);
    assert!(
        b["data"]["content"]
            .as_str()
            .is_some_and(|c| c.contains("aws_s3_bucket"))
    );

    for path in [
        "/templates/aws/nope",
        "/templates/nope/storage-bucket",
        "/templates/aws/..%2F..%2Fetc%2Fpasswd/content",
        "/templates/aws/nope/parameters",
    ] {
        let (s, b) = d.get(path).await;
        assert_eq!(assert_error(s, &b, 404), "template_not_found", "{path}");
    }

    let (s, b) = d.get("/providers").await;
    assert_eq!(s, 200);
    let aws = b["data"]["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|p| p["provider_type"] == "terraform-aws")
        .cloned()
        .expect("aws");
    assert_eq!(aws["available"], true);
    assert!(aws["template_count"].as_u64().is_some_and(|n| n >= 1));
    let azure = b["data"]["providers"]
        .as_array()
        .expect("providers")
        .iter()
        .find(|p| p["provider_type"] == "azure")
        .cloned()
        .expect("azure");
    assert_eq!(azure["available"], false);
    assert!(azure["reason"].as_str().is_some());
    let (s, b) = d.get("/").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["name"], "multicloud");
    let (s, b) = d.get("/health").await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["database"]["reachable"], true);
}

#[test]
fn print_config_masks_secrets_and_unknown_keys_fail() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_multicloud"))
        .args(["serve", "--print-config"])
        .env("MULTICLOUD__AWS__SECRET_ACCESS_KEY", "very-secret-value")
        .env("MULTICLOUD__RUNNER__MAX_CONCURRENT", "7")
        .output()
        .expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_concurrent = 7"), "{text}");
    assert!(!text.contains("very-secret-value"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_multicloud"))
        .args(["serve", "--print-config"])
        .env("MULTICLOUD__RUNNER__MAX_CONCURENT", "7")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_concurent"));
}

#[tokio::test]
async fn sighup_rescans_the_templates_and_422_lists_each_problem() {
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(templates.join("terraform/aws")).expect("mkdir");
    std::fs::copy(
        format!("{TEMPLATES}/terraform/aws/storage-bucket.tf"),
        templates.join("terraform/aws/storage-bucket.tf"),
    )
    .expect("copy");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), templates.to_str().expect("utf8"))
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 0),
    )
    .await;
    let (_, b) = d.get("/templates").await;
    assert_eq!(b["data"]["count"], 1);

    // The template's own rules, every problem at once, as a list of {field, problem}.
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "storage-bucket", "provider_type": "aws", "parameters": {"bucket_name": "Bad..Name", "tags": "x"}}))
        .await;
    assert_error(s, &b, 422);
    let details = b["error"]["details"].as_array().expect("a list");
    assert_eq!(details.len(), 2, "{b}");
    assert!(
        problem(&b, "parameters.bucket_name").is_some_and(|p| p.contains("lowercase")),
        "{b}"
    );
    assert!(
        problem(&b, "parameters.tags").is_some_and(|p| p.contains("map")),
        "{b}"
    );

    std::fs::copy(
        format!("{FIXTURES}/terraform/aws/echo.tf"),
        templates.join("terraform/aws/echo.tf"),
    )
    .expect("copy");
    let (s, _) = d.get("/templates/aws/echo").await;
    assert_eq!(s, 404, "not seen before the signal");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, b) = d.get("/templates/aws/echo").await;
        if s == 200 {
            assert_eq!(b["data"]["name"], "echo");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not re-scan"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (s, _) = d.get("/health").await;
    assert_eq!(s, 200, "still serving after SIGHUP");
}

/// A log stream that has nothing to say sends a comment line now and then (so a client that
/// went away is noticed and the stream ends instead of polling forever).
#[tokio::test]
async fn a_quiet_log_stream_sends_keep_alive_comments() {
    use futures_util::StreamExt;
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir).await;
    // Nothing runs on this node: the deployment stays pending, its log quiet.
    let id = d.deploy("echo", "aws", json!({"message": "quiet"})).await;
    let r = reqwest::get(d.url(&format!("/deployments/{id}/logs?follow=true")))
        .await
        .expect("follow");
    assert_eq!(r.status().as_u16(), 200);
    let mut body = r.bytes_stream();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    let mut seen = String::new();
    while !seen.contains(": keep-alive") {
        assert!(
            std::time::Instant::now() < deadline,
            "no keep-alive: {seen:?}"
        );
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(25), body.next())
            .await
            .expect("a chunk in time")
            .expect("stream open")
            .expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

//! End to end on AWS (moto on loopback): the storage-bucket template through the daemon with
//! real terraform and the AWS provider, then destroyed.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn storage_bucket_deploys_to_moto_and_is_destroyed() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)
            .set("MULTICLOUD__AWS__ENDPOINT_URL", &moto.url)
            .set("MULTICLOUD__AWS__ACCESS_KEY_ID", "testing")
            .set("MULTICLOUD__AWS__SECRET_ACCESS_KEY", "moto-secret-key"),
    )
    .await;
    let bucket = format!("mc-e2e-{}", &uuidish()[..12]);
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({
                "template_name": "storage-bucket",
                "provider_type": "terraform-aws",
                "subscription_id": "123456789012",
                "location": "eu-west-1",
                "parameters": {"bucket_name": bucket, "tags": {"team": "qa"}}
            }),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, Duration::from_secs(180)).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(st["outputs"]["bucket_name"], bucket.as_str());
    assert_eq!(
        st["outputs"]["bucket_arn"],
        format!("arn:aws:s3:::{bucket}")
    );
    assert_eq!(st["outputs"]["bucket_region"], "eu-west-1");

    // The bucket exists in moto (path-style HEAD) with its tags.
    let head = reqwest::Client::new()
        .head(format!("{}/{bucket}", moto.url))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 200);
    let tags = reqwest::get(format!("{}/{bucket}?tagging", moto.url))
        .await
        .expect("tagging")
        .text()
        .await
        .expect("text");
    assert!(tags.contains("qa") && tags.contains("managed-by"), "{tags}");
    // No credential in the logs.
    let (_, logs) = d.get(&format!("/deployments/{id}/logs?limit=5000")).await;
    assert!(!logs.to_string().contains("moto-secret-key"));

    let r = reqwest::Client::new()
        .delete(d.url(&format!("/deployments/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 202);
    let st = d.wait_terminal(&id, Duration::from_secs(180)).await;
    assert_eq!(st["status"], "destroyed", "{st}");
    let head = reqwest::Client::new()
        .head(format!("{}/{bucket}", moto.url))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 404, "the bucket is gone");
}

#[tokio::test]
async fn a_wrong_account_fails_with_terraforms_message() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)
            .set("MULTICLOUD__AWS__ENDPOINT_URL", &moto.url)
            .set("MULTICLOUD__AWS__ACCESS_KEY_ID", "testing")
            .set("MULTICLOUD__AWS__SECRET_ACCESS_KEY", "moto-secret-key"),
    )
    .await;
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "storage-bucket", "provider_type": "aws", "subscription_id": "999999999999", "parameters": {"bucket_name": "mc-wrong-account"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(st["status"], "failed");
    assert!(
        st["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("not allowed")),
        "{st}"
    );
}

fn uuidish() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:08x}", nanos, std::process::id())
}

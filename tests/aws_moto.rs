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
    let d = Daemon::start(DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES).with_moto(&moto))
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

    // The next deployment of the template runs no init at all: the template's initialised
    // directory is linked into its workspace, so nothing is installed into the shared cache
    // again (which rewrote files other runs were loading).
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "storage-bucket", "provider_type": "aws", "subscription_id": "123456789012",
                    "parameters": {"bucket_name": format!("{bucket}-2")}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id2 = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id2, Duration::from_secs(180)).await;
    assert_eq!(st["status"], "completed", "{st}");
    let (_, logs) = d.get(&format!("/deployments/{id2}/logs?limit=5000")).await;
    let text = logs.to_string();
    assert!(
        text.contains("using the initialised template terraform-aws-storage-bucket-")
            && !text.contains("$ terraform init")
            && !text.contains("Installing hashicorp/aws"),
        "{text}"
    );
}

#[tokio::test]
async fn a_wrong_account_fails_with_terraforms_message() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES).with_moto(&moto))
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

/// Every terraform-aws template deploys and destroys on moto with only its required parameters.
#[tokio::test]
async fn every_aws_template_deploys_and_destroys_with_only_required_parameters() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 3)
            .with_moto(&moto),
    )
    .await;
    let (_, list) = d.get("/templates?provider_type=aws").await;
    let mut ids = Vec::new();
    for t in list["data"]["templates"].as_array().expect("templates") {
        let name = t["name"].as_str().expect("name").to_string();
        let (_, schema) = d.get(&format!("/templates/aws/{name}/parameters")).await;
        let mut params = serde_json::Map::new();
        for p in schema["data"]["parameters"].as_array().expect("params") {
            if p["required"] == true {
                let value = format!(
                    "mc-req-{}-{}",
                    &uuidish()[..8],
                    p["name"].as_str().unwrap_or("x").replace('_', "-")
                );
                params.insert(p["name"].as_str().expect("name").into(), json!(value));
            }
        }
        let id = d
            .deploy(&name, "aws", serde_json::Value::Object(params))
            .await;
        ids.push((name, id));
    }
    let names: Vec<&str> = ids.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["compute-instance", "lambda-function", "storage-bucket"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    for (name, id) in &ids {
        let st = d.wait_terminal(id, Duration::from_secs(300)).await;
        assert_eq!(st["status"], "completed", "{name}: {st}");
        assert!(
            st["outputs"].as_object().is_some_and(|o| !o.is_empty()),
            "{name}: {st}"
        );
    }
    let (_, inst) = d
        .get(&format!(
            "/deployments/{}/status",
            ids.iter()
                .find(|(n, _)| n == "compute-instance")
                .expect("ec2")
                .1
        ))
        .await;
    assert!(
        inst["data"]["outputs"]["instance_id"]
            .as_str()
            .is_some_and(|i| i.starts_with("i-")),
        "{inst}"
    );
    let (_, lambda) = d
        .get(&format!(
            "/deployments/{}/status",
            ids.iter()
                .find(|(n, _)| n == "lambda-function")
                .expect("lambda")
                .1
        ))
        .await;
    assert!(
        lambda["data"]["outputs"]["function_arn"]
            .as_str()
            .is_some_and(|a| a.contains(":function:")),
        "{lambda}"
    );

    for (_, id) in &ids {
        let r = reqwest::Client::new()
            .delete(d.url(&format!("/deployments/{id}")))
            .send()
            .await
            .expect("DELETE");
        assert_eq!(r.status().as_u16(), 202);
    }
    for (name, id) in &ids {
        let st = d.wait_terminal(id, Duration::from_secs(300)).await;
        assert_eq!(st["status"], "destroyed", "{name}: {st}");
    }
}

/// Four deployments at once share the plugin cache (their inits take turns), and a destroy
/// queued after a restart works because the state is in PostgreSQL.
#[tokio::test]
async fn four_at_once_share_the_plugin_cache_and_destroy_after_a_restart() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 4)
            .with_moto(&moto),
    )
    .await;
    let tag = &uuidish()[..10];
    let mut ids = Vec::new();
    for i in 0..4 {
        let bucket = format!("mc-four-{tag}-{i}");
        ids.push((
            bucket.clone(),
            d.deploy("storage-bucket", "aws", json!({"bucket_name": bucket}))
                .await,
        ));
    }
    for (bucket, id) in &ids {
        let st = d.wait_terminal(id, Duration::from_secs(240)).await;
        assert_eq!(st["status"], "completed", "{st}");
        assert_eq!(st["outputs"]["bucket_name"], bucket.as_str());
    }
    // The inits took turns on the cache: at least one run waited for another's.
    let mut waited = 0;
    for (_, id) in &ids {
        let (_, logs) = d.get(&format!("/deployments/{id}/logs?limit=5000")).await;
        if logs
            .to_string()
            .contains("for the plugin cache (another init)")
        {
            waited += 1;
        }
    }
    assert!(waited >= 1, "inits were serialized on the shared cache");
    assert!(
        dir.path()
            .join("plugin-cache/.multicloud-init.lock")
            .exists()
    );

    d.restart().await;
    for (_, id) in &ids {
        let r = reqwest::Client::new()
            .delete(d.url(&format!("/deployments/{id}")))
            .send()
            .await
            .expect("DELETE");
        assert_eq!(r.status().as_u16(), 202);
    }
    for (bucket, id) in &ids {
        let st = d.wait_terminal(id, Duration::from_secs(240)).await;
        assert_eq!(st["status"], "destroyed", "{st}");
        let head = reqwest::Client::new()
            .head(format!("{}/{bucket}", moto.url))
            .send()
            .await
            .expect("HEAD");
        assert_eq!(head.status().as_u16(), 404, "{bucket} is gone");
    }
}

/// A new version of a template is initialised again (its own prepared directory), starting
/// from the previous version's lock file: terraform links the cached provider as it is instead
/// of installing it into the shared cache again.
#[tokio::test]
async fn a_changed_template_is_initialised_again_from_its_previous_lock_file() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = tempfile::tempdir().expect("templates");
    let tf = templates.path().join("terraform/aws");
    std::fs::create_dir_all(&tf).expect("mkdir");
    let source = std::fs::read_to_string(format!("{TEMPLATES}/terraform/aws/storage-bucket.tf"))
        .expect("template");
    std::fs::write(tf.join("storage-bucket.tf"), &source).expect("write");
    let d = Daemon::start(
        DaemonConfig::new(
            Some(&db.url),
            dir.path(),
            &templates.path().display().to_string(),
        )
        .with_moto(&moto),
    )
    .await;
    let tag = &uuidish()[..10];
    let logs_of = async |id: &str| {
        let st = d.wait_terminal(id, Duration::from_secs(180)).await;
        assert_eq!(st["status"], "completed", "{st}");
        let (_, logs) = d.get(&format!("/deployments/{id}/logs?limit=5000")).await;
        logs.to_string()
    };
    let first = d
        .deploy(
            "storage-bucket",
            "aws",
            json!({"bucket_name": format!("mc-v1-{tag}")}),
        )
        .await;
    let text = logs_of(&first).await;
    assert!(text.contains("$ terraform init"), "{text}");

    // Version 2 of the file (a comment is enough to make it another version).
    std::fs::write(
        tf.join("storage-bucket.tf"),
        format!("{source}\n# version 2\n"),
    )
    .expect("write");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = d
        .deploy(
            "storage-bucket",
            "aws",
            json!({"bucket_name": format!("mc-v2-{tag}")}),
        )
        .await;
    let text = logs_of(&second).await;
    assert!(
        text.contains("$ terraform init")
            && text.contains("from the shared cache directory")
            && !text.contains("Installing hashicorp/aws"),
        "{text}"
    );
    let prepared = std::fs::read_dir(dir.path().join("plugin-cache/.multicloud-init"))
        .expect("prepared dirs")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("terraform-aws-storage-bucket-")
        })
        .count();
    assert_eq!(prepared, 2, "one initialised directory per version");

    // The run's lock file selects the same provider without its checksums (terraform would
    // hash the 700 MB package in every process); the prepared one, which init checked, keeps
    // them.
    let run_lock = std::fs::read_to_string(
        dir.path()
            .join(format!("workspaces/{second}/.terraform.lock.hcl")),
    )
    .expect("run lock file");
    assert!(
        run_lock.contains("version") && !run_lock.contains("hashes"),
        "{run_lock}"
    );
    let ready: Vec<std::path::PathBuf> =
        std::fs::read_dir(dir.path().join("plugin-cache/.multicloud-init"))
            .expect("prepared dirs")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
    for p in &ready {
        let lock = std::fs::read_to_string(p.join(".terraform.lock.hcl")).expect("lock");
        assert!(lock.contains("hashes"), "{lock}");
    }
    // A provider package that is no longer the one init checked is initialised again before
    // a run uses it (its record stands in for a replaced package).
    for p in &ready {
        std::fs::write(p.join(".multicloud-providers"), "a package replaced since").expect("write");
    }
    let third = d
        .deploy(
            "storage-bucket",
            "aws",
            json!({"bucket_name": format!("mc-v3-{tag}")}),
        )
        .await;
    let text = logs_of(&third).await;
    assert!(
        text.contains("the provider packages changed since init checked them; initializing again")
            && text.contains("$ terraform init"),
        "{text}"
    );
}

/// The bucket's tags as moto returns them (path-style `?tagging`).
async fn bucket_tags(moto: &Moto, bucket: &str) -> String {
    reqwest::get(format!("{}/{bucket}?tagging", moto.url))
        .await
        .expect("tagging")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn plan_approve_update_and_drift_on_moto() {
    let db = TestDb::new();
    let moto = Moto::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES).with_moto(&moto))
        .await;
    let t = Duration::from_secs(180);
    let bucket = format!("mc-life-{}", &uuidish()[..12]);
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({
                "template_name": "storage-bucket", "provider_type": "aws",
                "subscription_id": "123456789012", "location": "us-east-1", "auto_apply": false,
                "parameters": {"bucket_name": bucket, "tags": {"team": "qa"}}
            }),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, t).await;
    assert_eq!(st["status"], "planned", "{st}\n{}", d.log_text());
    let (_, runs) = d.get(&format!("/deployments/{id}/runs")).await;
    let plan = &runs["data"]["runs"][0]["plan"];
    assert_eq!(
        plan["headline"], "Plan: 4 to add, 0 to change, 0 to destroy.",
        "{plan}"
    );
    let addresses: Vec<&str> = plan["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["address"].as_str())
        .collect();
    assert!(addresses.contains(&"aws_s3_bucket.this"), "{addresses:?}");
    // Nothing exists in the cloud before the apply.
    let head = reqwest::Client::new()
        .head(format!("{}/{bucket}", moto.url))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status().as_u16(), 404, "planned, not applied");

    let (s, b) = d
        .post_json(&format!("/deployments/{id}/apply"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&id, t).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(st["outputs"]["bucket_name"], bucket.as_str());
    assert!(bucket_tags(&moto, &bucket).await.contains("qa"));

    // An update changes a real attribute: the tags, read back from moto.
    let (s, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"parameters": {"tags": {"team": "platform"}}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let run = d
        .wait_run(b["data"]["run_id"].as_str().expect("run"), t)
        .await;
    assert_eq!(run["status"], "completed", "{run}\n{}", d.log_text());
    let tags = bucket_tags(&moto, &bucket).await;
    assert!(
        tags.contains("platform") && !tags.contains(">qa<"),
        "{tags}"
    );

    // In sync right after the apply.
    let (_, b) = d
        .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
        .await;
    let check = d
        .wait_run(b["data"]["run_id"].as_str().expect("run"), t)
        .await;
    assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["drift"]["status"], "in_sync", "{rec}");

    // Someone changes the tags behind the daemon's back: the next check names the bucket.
    let put = reqwest::Client::new()
        .put(format!("{}/{bucket}?tagging", moto.url))
        .body("<Tagging><TagSet><Tag><Key>team</Key><Value>rogue</Value></Tag></TagSet></Tagging>")
        .send()
        .await
        .expect("PUT tagging");
    assert!(put.status().is_success(), "{:?}", put.text().await);
    assert!(bucket_tags(&moto, &bucket).await.contains("rogue"));
    let (_, b) = d
        .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
        .await;
    let check = d
        .wait_run(b["data"]["run_id"].as_str().expect("run"), t)
        .await;
    assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    let drift = &rec["data"]["drift"];
    assert_eq!(drift["status"], "drifted", "{rec}");
    assert!(
        drift["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r["address"] == "aws_s3_bucket.this"),
        "{drift}"
    );
    let (_, list) = d.get("/deployments?drift=drifted").await;
    assert_eq!(list["data"]["deployments"][0]["deployment_id"], id.as_str());
    // A drift check changed nothing.
    assert!(bucket_tags(&moto, &bucket).await.contains("rogue"));

    let (s, _) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202);
    let st = d.wait_terminal(&id, t).await;
    assert_eq!(st["status"], "destroyed", "{st}");
}

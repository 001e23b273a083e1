//! The native Azure engine through the daemon's HTTP API against a test server that follows the
//! ARM REST contract (tests/common/arm.rs).

mod common;

use std::time::Duration;

use common::arm::{self, ArmServer};
use common::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);
const SUB: &str = "00000000-0000-0000-0000-000000000001";

async fn daemon(db: &TestDb, dir: &tempfile::TempDir, server: &ArmServer) -> Daemon {
    Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), FIXTURES)
            .with_arm(server)
            .set("MULTICLOUD__AZURE__BICEP_BINARY", "/nonexistent/bicep")
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY)
            .set("MULTICLOUD__RUNNER__CANCEL_GRACE_SECS", 10),
    )
    .await
}

/// The `azure` entry of `/providers`.
async fn azure_provider(d: &Daemon) -> serde_json::Value {
    let (_, p) = d.get("/providers").await;
    p["data"]["providers"]
        .as_array()
        .expect("list")
        .iter()
        .find(|x| x["provider_type"] == "azure")
        .cloned()
        .expect("azure")
}

async fn deploy(d: &Daemon, rg: &str, params: serde_json::Value) -> String {
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "storage-demo", "provider_type": "arm", "subscription_id": SUB,
                    "resource_group": rg, "location": "westeurope", "parameters": params}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    b["data"]["deployment_id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn an_arm_template_deploys_through_throttling_and_token_refresh_then_is_destroyed() {
    let server = ArmServer::start();
    server.with(|s| s.throttle_next_puts = 1);
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, &server).await;

    let id = deploy(
        &d,
        "rg-demo",
        json!({"storageAccountName": "mcstore1", "adminKey": "very-secret-admin-key"}),
    )
    .await;
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(
        st["outputs"],
        json!({"accountName": "mcstore1", "adminKey": "(sensitive)"})
    );
    server.with(|s| {
        assert_eq!(s.throttled, 1, "one 429");
        assert_eq!(
            s.deployment_puts, 1,
            "retried after Retry-After, accepted once"
        );
        assert_eq!(s.token_requests, 1, "one token, cached for every call");
        assert!(
            s.resource_groups.contains_key("rg-demo"),
            "resource group created"
        );
        assert_eq!(s.resources.len(), 2);
    });
    // Nothing secret in responses or logs.
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    let (_, logs) = d.get(&format!("/deployments/{id}/logs")).await;
    for text in [rec.to_string(), logs.to_string(), d.log_text()] {
        assert!(
            !text.contains("very-secret-admin-key")
                && !text.contains(arm::CLIENT_SECRET)
                && !text.contains("tok-")
        );
    }

    // The resource group endpoints see what was deployed.
    let (s, b) = d
        .get(&format!("/resource-groups?subscription_id={SUB}"))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["resource_groups"][0]["name"], "rg-demo");
    let (s, b) = d
        .get(&format!(
            "/resource-groups/rg-demo/resources?subscription_id={SUB}"
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["data"]["count"], 2);

    // Tokens revoked (as if expired early): the next call is refused, the client logs in again
    // and goes on. Destroy deletes outputResources newest first.
    server.with(|s| s.revoke_tokens());
    let r = reqwest::Client::new()
        .delete(d.url(&format!("/deployments/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 202);
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}\n{}", d.log_text());
    server.with(|s| {
        assert!(s.unauthorized >= 1, "the revoked token was refused");
        assert_eq!(s.token_requests, 2, "and replaced once");
        assert!(s.resources.is_empty(), "{:?}", s.resources);
        assert!(
            s.deleted[0].contains("publicIPAddresses/mc-demo-ip"),
            "{:?}",
            s.deleted
        );
        assert!(
            s.deleted[1].contains("storageAccounts/mcstore1"),
            "{:?}",
            s.deleted
        );
    });
}

#[tokio::test]
async fn a_failing_deployment_ends_failed_with_arms_code_and_message() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, &server).await;
    let id = deploy(
        &d,
        "rg-fail",
        json!({"storageAccountName": "takenname", "shouldFail": true}),
    )
    .await;
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "failed");
    let msg = st["error_message"].as_str().expect("message");
    assert!(
        msg.starts_with("DeploymentFailed: At least one resource deployment operation failed."),
        "{msg}"
    );
    assert!(
        msg.contains("Conflict: The storage account name is already taken.")
            && msg.contains(
                "StorageAccountAlreadyTaken: The storage account named takenname is already taken."
            ),
        "{msg}"
    );
}

#[tokio::test]
async fn cancel_calls_arms_cancel_action() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, &server).await;
    let id = deploy(
        &d,
        "rg-slow",
        json!({"storageAccountName": "slowone", "slow": true}),
    )
    .await;
    d.wait_status(&id, "running", T).await;
    let deadline = std::time::Instant::now() + T;
    while server.with(|s| s.deployment_puts) == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _) = d
        .post_json(&format!("/deployments/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(s, 202);
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "cancelled", "{st}");
    server.with(|s| {
        assert_eq!(s.cancels, 1);
        assert!(s.deployments.values().all(|d| d.state == "Canceled"));
    });
}

#[tokio::test]
async fn resource_group_endpoints_answer_as_specified() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, &server).await;

    let (s, b) = d.post_json("/resource-groups", &json!({"name": "rg-api", "location": "westeurope", "subscription_id": SUB, "tags": {"team": "a"}})).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["data"]["name"], "rg-api");
    assert_eq!(b["data"]["tags"]["team"], "a");
    let (s, b) = d
        .post_json(
            "/resource-groups",
            &json!({"name": "bad/name.", "subscription_id": "x y"}),
        )
        .await;
    assert_error(s, &b, 422);
    for f in ["name", "location", "subscription_id"] {
        assert!(problem(&b, f).is_some(), "{f}: {b}");
    }
    let (s, b) = d.get("/resource-groups").await;
    assert_error(s, &b, 422);
    let (s, b) = d
        .get(&format!(
            "/resource-groups/nope/resources?subscription_id={SUB}"
        ))
        .await;
    assert_eq!(assert_error(s, &b, 404), "resource_group_not_found");

    let r = reqwest::Client::new()
        .delete(d.url(&format!("/resource-groups/rg-api?subscription_id={SUB}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 202);
    // The daemon follows the long-running delete to its end.
    let deadline = std::time::Instant::now() + T;
    while server.with(|s| s.resource_groups.contains_key("rg-api")) {
        assert!(std::time::Instant::now() < deadline, "delete not followed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = reqwest::Client::new()
        .delete(d.url(&format!("/resource-groups/rg-api?subscription_id={SUB}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test]
async fn bicep_without_a_compiler_and_azure_without_credentials_fail_clearly() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    // Only the official CLI, which is not installed.
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)
            .with_arm(&server)
            .set("MULTICLOUD__AZURE__BICEP_COMPILER", "external")
            .set("MULTICLOUD__AZURE__BICEP_BINARY", "/nonexistent/bicep"),
    )
    .await;
    let azure = azure_provider(&d).await;
    assert_eq!(azure["available"], true, "ARM JSON deploys: {azure}");
    assert!(
        azure["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Bicep CLI")),
        "{azure}"
    );
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "storage-account", "provider_type": "bicep", "subscription_id": SUB,
            "resource_group": "rg-b", "location": "westeurope", "parameters": {"storageAccountName": "mcbicep1"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let st = d
        .wait_terminal(b["data"]["deployment_id"].as_str().expect("id"), T)
        .await;
    assert_eq!(st["status"], "failed");
    assert!(
        st["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("install it (https://aka.ms/bicep-install)")),
        "{st}"
    );
    // Azure requires a subscription and a resource group.
    let (s, b) = d.post_json("/deploy", &json!({"template_name": "storage-account", "provider_type": "azure", "parameters": {"storageAccountName": "abc"}})).await;
    assert_error(s, &b, 422);
    assert!(
        problem(&b, "subscription_id").is_some() && problem(&b, "resource_group").is_some(),
        "{b}"
    );
    drop(d);

    // Without credentials: /providers says why, and a run fails saying what to set.
    let db2 = TestDb::new();
    let dir2 = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db2.url), dir2.path(), FIXTURES)
            .set("MULTICLOUD__AZURE__MANAGEMENT_ENDPOINT", &server.url),
    )
    .await;
    let azure = azure_provider(&d).await;
    assert_eq!(azure["available"], false);
    assert!(
        azure["reason"]
            .as_str()
            .is_some_and(|r| r.contains("azure.client_secret")),
        "{azure}"
    );
    // A provider the operator did not configure is a 4xx naming the settings, not an outage
    // (5xx) and not a run that fails later.
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "storage-demo", "provider_type": "arm", "subscription_id": SUB,
                    "resource_group": "rg-x", "location": "westeurope", "parameters": {"storageAccountName": "nocreds"}}),
        )
        .await;
    assert_eq!(assert_error(s, &b, 422), "provider_not_configured");
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains("azure.client_secret")),
        "{b}"
    );
    for path in [
        format!("/resource-groups?subscription_id={SUB}"),
        format!("/resource-groups/rg-x/resources?subscription_id={SUB}"),
    ] {
        let (s, b) = d.get(&path).await;
        assert_eq!(
            assert_error(s, &b, 422),
            "provider_not_configured",
            "{path}"
        );
    }
    let (s, b) = d
        .post_json(
            "/resource-groups",
            &json!({"name": "rg-x", "location": "westeurope", "subscription_id": SUB}),
        )
        .await;
    assert_eq!(assert_error(s, &b, 422), "provider_not_configured");
    let (_, list) = d.get("/deployments").await;
    assert_eq!(list["data"]["count"], 0, "nothing was queued: {list}");
}

/// Azure Resource Manager takes a string parameter only as a JSON string (terraform converts,
/// ARM does not): a number is refused at the door, not by ARM minutes later.
#[tokio::test]
async fn azure_parameters_are_judged_by_arms_types() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(&db, &dir, &server).await;
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "storage-demo", "provider_type": "arm", "subscription_id": SUB,
                    "resource_group": "rg-t", "location": "westeurope", "parameters": {"storageAccountName": 12345}}),
        )
        .await;
    assert_error(s, &b, 422);
    assert_eq!(
        problem(&b, "parameters.storageAccountName").as_deref(),
        Some("must be a string"),
        "{b}"
    );
}

/// The real compiler, where one is installed (it is not on this project's CI machine).
#[tokio::test]
async fn bicep_templates_compile_with_the_official_cli_when_installed() {
    let Some(bicep) = multicloud::engines::terraform::which("bicep") else {
        eprintln!("SKIPPED: no `bicep` on PATH; the missing-compiler case is covered above");
        return;
    };
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)
            .with_arm(&server)
            .set("MULTICLOUD__AZURE__BICEP_BINARY", bicep.display()),
    )
    .await;
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "public-ip", "provider_type": "bicep", "subscription_id": SUB,
            "resource_group": "rg-bicep", "location": "westeurope", "parameters": {"publicIpName": "ip1"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let st = d
        .wait_terminal(b["data"]["deployment_id"].as_str().expect("id"), T)
        .await;
    assert_eq!(st["status"], "completed", "{st}");
}

/// A value for a declared parameter that its own rules accept (allowed values, lengths,
/// bounds), of its declared type.
fn value_for(p: &serde_json::Value, n: usize) -> serde_json::Value {
    if let Some(first) = p["allowed_values"].as_array().and_then(|a| a.first()) {
        return first.clone();
    }
    match p["type"].as_str().unwrap_or_default() {
        "int" | "number" => json!(p["min_value"].as_f64().unwrap_or(1.0) as i64),
        "bool" => json!(true),
        "object" => json!({}),
        "array" => json!([]),
        _ if p["sensitive"] == true => json!("Sup3r-Secret-Passw0rd!"),
        _ => {
            let min = p["min_length"].as_u64().unwrap_or(3) as usize;
            let max = p["max_length"].as_u64().unwrap_or(24) as usize;
            let mut s = format!("mc{n}native");
            while s.len() < min {
                s.push('x');
            }
            s.truncate(max.max(1));
            json!(s)
        }
    }
}

/// Every Bicep template of the catalog compiles with the built-in compiler (no Bicep CLI
/// here) and deploys to `completed` against the ARM contract server, which checks the template
/// (expressions, references, dependsOn) and the parameters against their declarations.
#[tokio::test]
async fn every_catalog_bicep_template_compiles_natively_and_deploys() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), TEMPLATES)
            .with_arm(&server)
            .set("MULTICLOUD__AZURE__BICEP_BINARY", "/nonexistent/bicep")
            .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY)
            .set("MULTICLOUD__RUNNER__MAX_CONCURRENT", 4),
    )
    .await;
    let azure = azure_provider(&d).await;
    assert_eq!(azure["available"], true, "{azure}");
    assert_eq!(azure["bicep_compiler"], "native", "{azure}");
    assert!(azure["reason"].is_null(), "{azure}");

    let (_, list) = d.get("/templates?provider_type=azure").await;
    let names: Vec<String> = list["data"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .filter(|t| t["format"] == "bicep")
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names.len(), 15, "{names:?}");
    let mut runs = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let (s, spec) = d.get(&format!("/templates/azure/{name}/parameters")).await;
        assert_eq!(s, 200, "{spec}");
        let mut params = serde_json::Map::new();
        for p in spec["data"]["parameters"].as_array().expect("parameters") {
            if p["required"] == true {
                params.insert(p["name"].as_str().expect("name").into(), value_for(p, n));
            }
        }
        let (s, b) = d
            .post_json("/deploy", &json!({"template_name": name, "provider_type": "azure", "subscription_id": SUB,
                "resource_group": format!("rg-{name}"), "location": "westeurope", "parameters": params}))
            .await;
        assert_eq!(s, 202, "{name}: {b}");
        runs.push((
            name.clone(),
            b["data"]["deployment_id"].as_str().expect("id").to_string(),
            params,
        ));
    }
    for (name, id, params) in runs {
        let st = d.wait_terminal(&id, T).await;
        assert_eq!(st["status"], "completed", "{name}: {st}");
        let (_, logs) = d.get(&format!("/deployments/{id}/logs")).await;
        assert!(
            logs.to_string()
                .contains("with the built-in Bicep compiler"),
            "{name}: {logs}"
        );
        // The parameters reached ARM exactly as declared and given (types kept).
        let deployed = server.with(|s| {
            s.deployments
                .iter()
                .find(|(k, _)| k.starts_with(&format!("{SUB}/rg-{name}/")))
                .map(|(_, dep)| dep.parameters.clone())
        });
        let deployed = deployed.unwrap_or_else(|| panic!("{name}: no deployment reached ARM"));
        for (k, v) in &params {
            assert_eq!(&deployed[k], v, "{name}: parameter {k}");
        }
    }
}

/// A Bicep template beyond the built-in compiler's subset is still described by the catalog,
/// and its deployment fails with the construct, its line and its column; nothing reaches ARM.
#[tokio::test]
async fn a_bicep_template_beyond_the_subset_fails_with_the_construct_and_its_position() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        templates.path().join("many-accounts.bicep"),
        "// Many accounts\n@description('How many')\n@minValue(1)\nparam count int = 2\n\nresource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = [for i in range(0, count): {\n  name: 'acct${i}'\n  location: resourceGroup().location\n}]\n\nassert enough = count > 0\n",
    )
    .expect("write");
    let d = Daemon::start(
        DaemonConfig::new(
            Some(&db.url),
            dir.path(),
            templates.path().to_str().expect("utf-8"),
        )
        .with_arm(&server)
        .set("MULTICLOUD__AZURE__BICEP_COMPILER", "native"),
    )
    .await;
    let (s, spec) = d.get("/templates/azure/many-accounts/parameters").await;
    assert_eq!(s, 200, "{spec}");
    assert_eq!(spec["data"]["parameters"][0]["name"], "count", "{spec}");
    assert_eq!(spec["data"]["parameters"][0]["min_value"], 1.0, "{spec}");
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "many-accounts", "provider_type": "azure", "subscription_id": SUB,
            "resource_group": "rg-loop", "location": "westeurope", "parameters": {"count": 3}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let st = d
        .wait_terminal(b["data"]["deployment_id"].as_str().expect("id"), T)
        .await;
    assert_eq!(st["status"], "failed", "{st}");
    assert_eq!(
        st["error_message"],
        "many-accounts.bicep does not compile: line 11, column 1: assertions are not supported by the built-in Bicep compiler",
        "{st}"
    );
    server.with(|s| assert_eq!(s.deployment_puts, 0, "nothing reached ARM"));
}

/// A subscription-scope template (ARM JSON, then Bicep) deploys with the subscription-level
/// deployment API: no resource group in the request (the template creates its own), a location
/// for ARM's record; the listing says the template's scope, and a destroy deletes the group it
/// created.
#[tokio::test]
async fn a_subscription_scope_template_creates_its_resource_group_and_is_destroyed() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/templates-subscription"
    );
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), templates)
            .with_arm(&server)
            .set("MULTICLOUD__AZURE__BICEP_COMPILER", "native"),
    )
    .await;
    let azure = azure_provider(&d).await;
    assert_eq!(
        azure["target_scopes"],
        json!(["resourceGroup", "subscription", "managementGroup", "tenant"]),
        "{azure}"
    );
    let (_, t) = d.get("/templates?provider_type=azure").await;
    assert_eq!(t["data"]["templates"][0]["name"], "group-creator", "{t}");
    assert_eq!(
        t["data"]["templates"][0]["target_scope"], "subscription",
        "{t}"
    );

    // A resource group in the request is refused (the template makes its own), and the
    // deployment's record needs a location.
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "group-creator", "provider_type": "azure", "subscription_id": SUB,
            "resource_group": "rg-x", "parameters": {"groupName": "rg-made"}}))
        .await;
    assert_error(s, &b, 422);
    assert!(
        problem(&b, "resource_group").is_some_and(|p| p.contains("subscription scope")),
        "{b}"
    );
    assert!(problem(&b, "location").is_some(), "{b}");

    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "group-creator", "provider_type": "azure", "subscription_id": SUB,
            "location": "westeurope", "parameters": {"groupName": "rg-made"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(st["outputs"]["groupName"], "rg-made");
    // ARM got a subscription-level deployment with a location, and made the group.
    server.with(|s| {
        let key = format!("{SUB}/-/multicloud-{id}");
        assert!(
            s.deployments.contains_key(&key),
            "{:?}",
            s.deployments.keys()
        );
        let group = s
            .resource_groups
            .get("rg-made")
            .expect("the group was created");
        assert_eq!(group["tags"]["purpose"], "subscription-scope-test");
    });
    let (s, list) = d
        .get(&format!("/resource-groups?subscription_id={SUB}"))
        .await;
    assert_eq!(s, 200, "{list}");
    assert!(list.to_string().contains("rg-made"), "{list}");

    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}\n{}", d.log_text());
    assert!(server.with(|s| !s.resource_groups.contains_key("rg-made")));

    // The same from Bicep: `targetScope = 'subscription'` is read by the catalog, compiled to
    // the subscription deployment schema by the built-in compiler, and deployed at that scope.
    let (s, t) = d.get("/templates/azure/rg-from-bicep").await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["data"]["target_scope"], "subscription", "{t}");
    assert_eq!(t["data"]["format"], "bicep", "{t}");
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "rg-from-bicep", "provider_type": "bicep", "subscription_id": SUB,
            "location": "northeurope", "parameters": {"groupName": "rg-bicep-made"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(st["outputs"]["groupName"], "rg-bicep-made");
    server.with(|s| {
        assert!(
            s.deployments
                .contains_key(&format!("{SUB}/-/multicloud-{id}"))
        );
        assert!(s.resource_groups.contains_key("rg-bicep-made"));
    });
    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}");
    assert!(server.with(|s| !s.resource_groups.contains_key("rg-bicep-made")));
}

/// A Bicep template with a local module deploys through the built-in compiler: the module is
/// a nested deployment ARM runs, and its outputs are the deployment's outputs. A module from a
/// registry (`br:`) fails its run with a message naming it, and nothing reaches ARM.
#[tokio::test]
async fn a_bicep_template_with_a_local_module_deploys_and_a_registry_module_is_refused() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/templates-modules"
    );
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), templates)
            .with_arm(&server)
            .set("MULTICLOUD__AZURE__BICEP_COMPILER", "native"),
    )
    .await;
    // Module files live in a subfolder: they are not templates of their own.
    let (_, t) = d.get("/templates?provider_type=azure").await;
    let names: Vec<&str> = t["data"]["templates"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["registry-module", "storage-module"], "{t}");

    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "storage-module", "provider_type": "bicep", "subscription_id": SUB,
            "resource_group": "rg-mod", "location": "westeurope", "parameters": {"storageAccountName": "mcmodule1"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    let account = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-mod/providers/Microsoft.Storage/storageAccounts/mcmodule1"
    );
    assert_eq!(st["outputs"]["accountName"], "mcmodule1", "{st}");
    assert_eq!(st["outputs"]["accountId"], account.as_str(), "{st}");
    assert!(
        server.with(|s| s.resources.contains(&account)),
        "the module's resource exists"
    );
    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}");
    assert!(server.with(|s| !s.resources.contains(&account)));

    let puts = server.with(|s| s.deployment_puts);
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "registry-module", "provider_type": "bicep", "subscription_id": SUB,
            "resource_group": "rg-remote", "location": "westeurope", "parameters": {"name": "x"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "failed", "{st}");
    let msg = st["error_message"].as_str().expect("message");
    assert!(
        msg.contains("br:") && msg.contains("azure.bicep_module_cache"),
        "{msg}"
    );
    assert_eq!(
        server.with(|s| s.deployment_puts),
        puts,
        "nothing reached ARM"
    );
    assert!(server.with(|s| !s.resource_groups.contains_key("rg-remote")));
}

/// With `azure.bicep_module_cache` (a copy of a `~/.bicep` folder that `bicep restore` filled),
/// the same registry module is read from the cache and deploys as a nested deployment.
#[tokio::test]
async fn a_registry_module_deploys_from_the_configured_module_cache() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache");
    let module = multicloud::bicep::compile(
        "param name string\n\
         param location string = resourceGroup().location\n\
         resource sa 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: name\n  location: location\n  sku: { name: 'Standard_LRS' }\n  kind: 'StorageV2'\n}\n\
         output id string = sa.id\n",
    )
    .expect("module");
    // The official CLI's layout: br/<registry>/<repository, '/' as '$'>/<tag>$/main.json.
    let folder = cache
        .path()
        .join("br/mcr.microsoft.com/bicep$storage$storage-account/1.0.1$");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(folder.join("main.json"), module.to_string()).expect("write");
    let templates = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/templates-modules"
    );
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), templates)
            .with_arm(&server)
            .set("MULTICLOUD__AZURE__BICEP_COMPILER", "native")
            .set(
                "MULTICLOUD__AZURE__BICEP_MODULE_CACHE",
                cache.path().display(),
            ),
    )
    .await;
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "registry-module", "provider_type": "bicep", "subscription_id": SUB,
            "resource_group": "rg-registry", "location": "westeurope", "parameters": {"name": "mcregistry1"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    let account = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-registry/providers/Microsoft.Storage/storageAccounts/mcregistry1"
    );
    assert!(
        server.with(|s| s.resources.contains(&account)),
        "the registry module's resource exists"
    );
}

async fn runs(d: &Daemon, id: &str) -> Vec<serde_json::Value> {
    let (s, b) = d.get(&format!("/deployments/{id}/runs")).await;
    assert_eq!(s, 200, "{b}");
    b["data"]["runs"].as_array().expect("runs").clone()
}

fn run_id(body: &serde_json::Value) -> String {
    body["data"]["run_id"].as_str().expect("run id").to_string()
}

/// A run's own log lines.
async fn run_lines(d: &Daemon, run_id: &str) -> Vec<String> {
    let (s, logs) = d.get(&format!("/runs/{run_id}/logs?limit=5000")).await;
    assert_eq!(s, 200, "{logs}");
    logs["data"]["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["line"].as_str().map(str::to_string))
        .collect()
}

/// The lifecycle of an Azure deployment on ARM's what-if, with the catalog's storage account
/// template (compiled by the built-in compiler): a gated deploy is previewed (nothing deployed)
/// and its approval deploys exactly the previewed template even though the file changed since;
/// updates applied at once or after their plan (Modify shows as "update"), a speculative plan,
/// a gated update without changes; drift checks compare the cloud with the applied template
/// and parameters: in sync, then drifted once the account is changed behind the daemon's back.
#[tokio::test]
async fn arm_runs_plan_with_what_if_apply_the_saved_plan_and_check_drift() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = tempfile::tempdir().expect("tempdir");
    let file = templates.path().join("storage-account.bicep");
    let source =
        std::fs::read_to_string(format!("{TEMPLATES}/storage-account.bicep")).expect("template");
    std::fs::write(&file, &source).expect("write");
    let d = Daemon::start(
        DaemonConfig::new(
            Some(&db.url),
            dir.path(),
            templates.path().to_str().expect("utf-8"),
        )
        .with_arm(&server)
        .set("MULTICLOUD__AZURE__BICEP_COMPILER", "native")
        .set("MULTICLOUD__SECRETS__KEY", SECRETS_KEY),
    )
    .await;
    let account = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-life/providers/Microsoft.Storage/storageAccounts/mclife1"
    );
    let blobs = format!("{account}/blobServices/default");

    // A gated deploy: previewed by what-if, nothing deployed before the decision.
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "storage-account", "provider_type": "azure",
            "subscription_id": SUB, "resource_group": "rg-life", "location": "westeurope",
            "auto_apply": false, "parameters": {"storageAccountName": "mclife1"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "planned", "{st}\n{}", d.log_text());
    let history = runs(&d, &id).await;
    let first = &history[0];
    assert_eq!(
        (first["kind"].as_str(), first["status"].as_str()),
        (Some("deploy"), Some("planned"))
    );
    assert_eq!(
        first["plan"]["headline"], "Plan: 2 to add, 0 to change, 0 to destroy.",
        "{first}"
    );
    assert_eq!(
        first["plan"]["resources"],
        json!([
            {"address": account, "type": "Microsoft.Storage/storageAccounts", "action": "create"},
            {"address": blobs, "type": "Microsoft.Storage/storageAccounts/blobServices", "action": "create"},
        ])
    );
    assert_eq!(first["has_saved_plan"], true);
    assert_eq!(st["outputs"], serde_json::Value::Null);
    server.with(|s| {
        assert_eq!(s.deployment_puts, 0, "nothing deployed before the decision");
        assert!(s.resources.is_empty(), "{:?}", s.resources);
        assert_eq!(s.what_if_requests.len(), 1);
        let request = &s.what_if_requests[0];
        assert_eq!(request["resourceGroup"], "rg-life");
        assert_eq!(request["deployment"], format!("multicloud-{id}"));
        assert_eq!(request["body"]["properties"]["mode"], "Incremental");
        assert_eq!(
            request["body"]["properties"]["parameters"]["storageAccountName"],
            json!({"value": "mclife1"})
        );
    });
    let first_id = first["run_id"].as_str().expect("id").to_string();
    let lines = run_lines(&d, &first_id).await;
    for want in [
        format!("POST what-if of deployment multicloud-{id} in rg-life"),
        "Plan: 2 to add, 0 to change, 0 to destroy.".to_string(),
        format!("  + {account} (Microsoft.Storage/storageAccounts)"),
        format!("  + {blobs} (Microsoft.Storage/storageAccounts/blobServices)"),
    ] {
        assert!(lines.contains(&want), "{want:?} not in {lines:#?}");
    }

    // The template changes on disk after the plan: the approval deploys what was previewed.
    let changed = source.replace("minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_3'");
    assert_ne!(changed, source);
    std::fs::write(&file, &changed).expect("write");
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/apply"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let run = d.wait_run(&first_id, T).await;
    assert_eq!(run["status"], "completed", "{run}\n{}", d.log_text());
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}");
    assert_eq!(st["outputs"]["storageAccountName"], "mclife1", "{st}");
    assert_eq!(st["outputs"]["storageAccountId"], account.as_str(), "{st}");
    server.with(|s| {
        assert_eq!(s.deployment_puts, 1);
        assert_eq!(
            s.what_if_requests.len(),
            1,
            "the approval previews nothing again"
        );
        let state = s.resource(&account).expect("the account exists");
        assert_eq!(
            state["properties"]["minimumTlsVersion"], "TLS1_2",
            "the saved template, not a recompile"
        );
        assert_eq!(state["sku"]["name"], "Standard_LRS");
        assert_eq!(state["location"], "westeurope");
        assert_eq!(state["tags"], json!({"managed-by": "multicloud"}));
        assert!(s.resource(&blobs).is_some(), "{:?}", s.resources);
    });
    let lines = run_lines(&d, &first_id).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("applying the saved plan")),
        "{lines:#?}"
    );
    // The ARM JSON that ran is kept: later runs use it, whatever the file says now.
    let v1 = run["template_hash"]
        .as_str()
        .expect("the applied source is kept")
        .to_string();
    assert_eq!(v1.len(), 64);

    // A drift check compares with the applied template (not the changed file): in sync.
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let check = d.wait_run(&run_id(&b), T).await;
    assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["drift"]["status"], "in_sync", "{rec}");
    assert_eq!(rec["data"]["drift"]["resources"], json!([]), "{rec}");
    assert_eq!(check["template_hash"], v1.as_str());
    let lines = run_lines(&d, check["run_id"].as_str().expect("id")).await;
    assert!(
        lines.contains(&"Drift: none. The cloud matches the applied template.".to_string()),
        "{lines:#?}"
    );
    // A plan uses the applied source too (nothing to change), unless asked for the file as it
    // is now (its TLS version changes the account).
    let (_, b) = d
        .post_json(&format!("/deployments/{id}/plan"), &json!({}))
        .await;
    let plan = d.wait_run(&run_id(&b), T).await;
    assert_eq!(
        plan["status"],
        "no_changes",
        "{plan}
{}",
        d.log_text()
    );
    assert_eq!(plan["template_hash"], v1.as_str());
    let (_, b) = d
        .post_json(
            &format!("/deployments/{id}/plan"),
            &json!({"template_version": "latest"}),
        )
        .await;
    let plan = d.wait_run(&run_id(&b), T).await;
    assert_eq!(
        plan["status"],
        "completed",
        "{plan}
{}",
        d.log_text()
    );
    assert_ne!(plan["template_hash"], v1.as_str());
    assert_eq!(
        plan["plan"]["resources"],
        json!([{"address": account, "type": "Microsoft.Storage/storageAccounts", "action": "update"}])
    );
    // A deployment applied before sources were kept: the drift check compares with the
    // template ARM keeps with the deployment (exportTemplate), not the changed file.
    assert_eq!(
        db.count(&format!(
            "WITH forgotten AS (UPDATE runs SET template_hash = NULL, base_template_hash = NULL \
             WHERE deployment_id = '{id}' RETURNING 1) SELECT count(*) AS n FROM forgotten"
        )),
        4
    );
    let (_, b) = d
        .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
        .await;
    let check = d.wait_run(&run_id(&b), T).await;
    assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["drift"]["status"], "in_sync", "{rec}");
    let lines = run_lines(&d, check["run_id"].as_str().expect("id")).await;
    assert!(
        lines.contains(
            &"comparing the cloud with the template of the last ARM deployment".to_string()
        ),
        "{lines:#?}"
    );
    std::fs::write(&file, &source).expect("write");

    // An update applied at once: ARM holds the new sku.
    let (s, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"parameters": {"skuName": "Standard_GRS"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["data"]["kind"], "update");
    let update = d.wait_run(&run_id(&b), T).await;
    assert_eq!(update["status"], "completed", "{update}\n{}", d.log_text());
    server.with(|s| {
        assert_eq!(
            s.resource(&account).expect("account")["sku"]["name"],
            "Standard_GRS"
        );
        assert_eq!(s.deployment_puts, 2);
    });
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["parameters"]["skuName"], "Standard_GRS");

    // A speculative plan: a summary, nothing kept, nothing applied.
    let (s, b) = d
        .post_json(
            &format!("/deployments/{id}/plan"),
            &json!({"parameters": {"skuName": "Standard_ZRS"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let plan = d.wait_run(&run_id(&b), T).await;
    assert_eq!(plan["status"], "completed", "{plan}\n{}", d.log_text());
    assert_eq!(plan["plan"]["change"], 1, "{plan}");
    assert_eq!(plan["has_saved_plan"], false);
    server.with(|s| {
        assert_eq!(
            s.resource(&account).expect("account")["sku"]["name"],
            "Standard_GRS"
        );
    });

    // A gated update: the account's Modify is an "update" in the plan; applied once approved.
    let (s, b) = d
        .patch_json(
            &format!("/deployments/{id}"),
            &json!({"parameters": {"accessTier": "Cool", "tags": {"team": "data"}}, "auto_apply": false}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let gated = d.wait_run(&run_id(&b), T).await;
    assert_eq!(gated["status"], "planned", "{gated}\n{}", d.log_text());
    assert_eq!(
        gated["plan"]["headline"], "Plan: 0 to add, 1 to change, 0 to destroy.",
        "{gated}"
    );
    assert_eq!(
        gated["plan"]["resources"],
        json!([{"address": account, "type": "Microsoft.Storage/storageAccounts", "action": "update"}])
    );
    let gated_id = gated["run_id"].as_str().expect("id").to_string();
    let lines = run_lines(&d, &gated_id).await;
    assert!(
        lines.contains(&format!(
            "  ~ {account} (Microsoft.Storage/storageAccounts)"
        )),
        "{lines:#?}"
    );
    server.with(|s| {
        assert_eq!(
            s.resource(&account).expect("account")["properties"]["accessTier"],
            "Hot"
        );
        // What the what-if answered: the account's delta, its blob service unchanged.
        let op = format!("whatif-{}", s.what_if_requests.len());
        let changes = s.what_ifs[&op].result["properties"]["changes"].clone();
        let of = |id: &str| {
            changes
                .as_array()
                .expect("changes")
                .iter()
                .find(|c| c["resourceId"] == id)
                .cloned()
                .expect("a change")
        };
        let change = of(&account);
        assert_eq!(change["changeType"], "Modify");
        assert_eq!(
            change["delta"],
            json!([
                {"path": "properties.accessTier", "propertyChangeType": "Modify", "before": "Hot", "after": "Cool"},
                {"path": "tags.team", "propertyChangeType": "Create", "after": "data"},
            ])
        );
        assert_eq!(of(&blobs)["changeType"], "NoChange");
    });
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/apply"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let gated = d.wait_run(&gated_id, T).await;
    assert_eq!(gated["status"], "completed", "{gated}\n{}", d.log_text());
    server.with(|s| {
        let state = s.resource(&account).expect("account");
        assert_eq!(state["properties"]["accessTier"], "Cool");
        assert_eq!(state["sku"]["name"], "Standard_GRS", "kept");
        assert_eq!(
            state["tags"],
            json!({"team": "data", "managed-by": "multicloud"})
        );
    });

    // A gated update that changes nothing ends without a decision.
    let (s, b) = d
        .patch_json(&format!("/deployments/{id}"), &json!({"auto_apply": false}))
        .await;
    assert_eq!(s, 202, "{b}");
    let same = d.wait_run(&run_id(&b), T).await;
    assert_eq!(same["status"], "no_changes", "{same}\n{}", d.log_text());

    // Someone changes the account in the portal: the drift check names it.
    assert!(server.with(|s| s.edit_resource(&account, |r| {
        r["tags"]["owner"] = json!("portal-user-7");
        r["properties"]["allowBlobPublicAccess"] = json!(true);
    })));
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let check = d.wait_run(&run_id(&b), T).await;
    assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    let drift = &rec["data"]["drift"];
    assert_eq!(drift["status"], "drifted", "{rec}");
    assert_eq!(
        drift["resources"],
        json!([{"address": account, "type": "Microsoft.Storage/storageAccounts", "action": "update"}])
    );
    assert_eq!(drift["run_id"], check["run_id"]);
    let (_, list) = d.get("/deployments?drift=drifted").await;
    assert_eq!(list["data"]["count"], 1);
    let lines = run_lines(&d, check["run_id"].as_str().expect("id")).await;
    assert!(
        lines.contains(&"Drift: 1 resource(s) differ from the applied template.".to_string()),
        "{lines:#?}"
    );
    assert!(
        lines.contains(&format!(
            "  ~ {account} (Microsoft.Storage/storageAccounts)"
        )),
        "{lines:#?}"
    );
    // Values (what-if's before, after and delta) are never written anywhere.
    let (_, all) = d
        .get(&format!("/deployments/{id}/logs?run=all&limit=5000"))
        .await;
    for text in [all.to_string(), rec.to_string(), d.log_text()] {
        assert!(!text.contains("portal-user-7"), "{text}");
    }

    // Destroy still deletes what the deployment made, child first.
    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}\n{}", d.log_text());
    server.with(|s| {
        assert!(s.resources.is_empty(), "{:?}", s.resources);
        assert_eq!(s.deleted, vec![blobs.clone(), account.clone()]);
    });
}

/// At subscription scope: the what-if of a gated deploy previews the resource group the
/// template creates (nothing is created before the approval), and a drift check sees the
/// group's tags changed behind the daemon's back.
#[tokio::test]
async fn a_subscription_scope_plan_previews_its_resource_group_and_drift_is_seen() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/templates-subscription"
    );
    let d = Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), templates)
            .with_arm(&server)
            .set("MULTICLOUD__AZURE__BICEP_COMPILER", "native"),
    )
    .await;
    let group = format!("/subscriptions/{SUB}/resourceGroups/rg-planned");
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "group-creator", "provider_type": "azure",
            "subscription_id": SUB, "location": "westeurope", "auto_apply": false,
            "parameters": {"groupName": "rg-planned"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "planned", "{st}\n{}", d.log_text());
    let first = runs(&d, &id).await[0].clone();
    assert_eq!(
        first["plan"]["resources"],
        json!([{"address": group, "type": "Microsoft.Resources/resourceGroups", "action": "create"}])
    );
    server.with(|s| {
        assert!(!s.resource_groups.contains_key("rg-planned"));
        assert_eq!(s.deployment_puts, 0);
        let request = &s.what_if_requests[0];
        assert_eq!(request["resourceGroup"], serde_json::Value::Null);
        assert_eq!(request["body"]["location"], "westeurope");
    });

    let (s, b) = d
        .post_json(&format!("/deployments/{id}/apply"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let run = d.wait_run(first["run_id"].as_str().expect("id"), T).await;
    assert_eq!(run["status"], "completed", "{run}\n{}", d.log_text());
    assert_eq!(
        server.with(|s| s.resource(&group)),
        Some(json!({"location": "westeurope", "tags": {"purpose": "subscription-scope-test"}}))
    );

    let drift_check = || async {
        let (s, b) = d
            .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
            .await;
        assert_eq!(s, 202, "{b}");
        let check = d.wait_run(&run_id(&b), T).await;
        assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
        let (_, rec) = d.get(&format!("/deployments/{id}")).await;
        rec["data"]["drift"].clone()
    };
    assert_eq!(drift_check().await["status"], "in_sync");
    assert!(server.with(|s| s.edit_resource(&group, |g| g["tags"]["purpose"] = json!("edited"))));
    let drift = drift_check().await;
    assert_eq!(drift["status"], "drifted", "{drift}");
    assert_eq!(
        drift["resources"],
        json!([{"address": group, "type": "Microsoft.Resources/resourceGroups", "action": "update"}])
    );
}

/// A daemon whose templates are the management-group and tenant-scope fixtures (Bicep compiled
/// by the built-in compiler).
async fn scope_daemon(db: &TestDb, dir: &tempfile::TempDir, server: &ArmServer) -> Daemon {
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates-mgmt");
    Daemon::start(
        DaemonConfig::new(Some(&db.url), dir.path(), templates)
            .with_arm(server)
            .set("MULTICLOUD__AZURE__BICEP_COMPILER", "native"),
    )
    .await
}

const MG_ID: &str = "/providers/Microsoft.Management/managementGroups";

/// Management-group and tenant-scope templates (ARM JSON and Bicep) deploy with ARM's
/// management group and tenant deployment APIs, report their outputs and are destroyed (what
/// they made deleted through the resources' ids); the request takes the management group and
/// a location, and refuses what the scope does not use.
#[tokio::test]
async fn management_group_and_tenant_templates_deploy_at_their_scopes_and_are_destroyed() {
    let server = ArmServer::start();
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = scope_daemon(&db, &dir, &server).await;
    let (_, t) = d.get("/templates?provider_type=azure").await;
    let scopes: std::collections::BTreeMap<String, String> = t["data"]["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .map(|t| {
            let scope = t["target_scope"].as_str().expect("scope").to_string();
            (t["name"].as_str().expect("name").to_string(), scope)
        })
        .collect();
    assert_eq!(scopes["policy-definition"], "managementGroup", "{t}");
    assert_eq!(scopes["policy-from-bicep"], "managementGroup", "{t}");
    assert_eq!(scopes["group-creator-tenant"], "tenant", "{t}");

    // What the scope needs is required, what it does not use is refused, each by its name.
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "policy-definition", "provider_type": "azure",
            "subscription_id": SUB, "resource_group": "rg-x", "parameters": {"policyName": "p"}}),
        )
        .await;
    assert_error(s, &b, 422);
    assert!(
        problem(&b, "management_group").is_some_and(|p| p.contains("required")),
        "{b}"
    );
    assert!(
        problem(&b, "location").is_some_and(|p| p.contains("required")),
        "{b}"
    );
    assert!(
        problem(&b, "resource_group").is_some_and(|p| p.contains("managementGroup scope")),
        "{b}"
    );
    assert!(
        problem(&b, "subscription_id").is_some_and(|p| p.contains("not used")),
        "{b}"
    );
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "policy-definition", "provider_type": "azure",
            "management_group": "mg-bad.", "location": "westeurope", "parameters": {"policyName": "p"}}))
        .await;
    assert_error(s, &b, 422);
    assert!(
        problem(&b, "management_group").is_some_and(|p| p.contains("management group id")),
        "{b}"
    );
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "group-creator-tenant", "provider_type": "azure",
            "resource_group": "rg-x", "management_group": "mg-x", "parameters": {"groupName": "g"}}))
        .await;
    assert_error(s, &b, 422);
    assert!(
        problem(&b, "resource_group").is_some_and(|p| p.contains("tenant scope")),
        "{b}"
    );
    assert!(
        problem(&b, "management_group").is_some_and(|p| p.contains("tenant scope")),
        "{b}"
    );
    assert!(problem(&b, "location").is_some(), "{b}");
    assert_eq!(server.with(|s| s.deployment_puts), 0);

    // Tenant scope: the template creates a management group.
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "group-creator-tenant", "provider_type": "azure",
            "location": "westeurope", "parameters": {"groupName": "mg-made"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let tenant_id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&tenant_id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    assert_eq!(st["outputs"]["groupId"], format!("{MG_ID}/mg-made"));
    let (_, rec) = d.get(&format!("/deployments/{tenant_id}")).await;
    assert!(
        rec["data"].get("management_group").is_none(),
        "only a management-group deployment has one: {rec}"
    );
    server.with(|s| {
        let key = format!("tenant/-/multicloud-{tenant_id}");
        assert!(
            s.deployments.contains_key(&key),
            "{:?}",
            s.deployments.keys()
        );
        assert!(s.management_groups.contains("mg-made"));
    });

    // Management group scope, ARM JSON: a policy definition in the group just made.
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "policy-definition", "provider_type": "azure",
            "management_group": "mg-made", "location": "westeurope", "parameters": {"policyName": "require-owner"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    let policy = format!(
        "{MG_ID}/mg-made/providers/Microsoft.Authorization/policyDefinitions/require-owner"
    );
    assert_eq!(
        st["outputs"],
        json!({"policyId": policy, "managementGroup": "mg-made"})
    );
    let (_, rec) = d.get(&format!("/deployments/{id}")).await;
    assert_eq!(rec["data"]["management_group"], "mg-made", "{rec}");
    assert_eq!(
        rec["data"]["subscription_id"],
        serde_json::Value::Null,
        "{rec}"
    );
    assert_eq!(rec["data"]["location"], "westeurope", "{rec}");
    assert_eq!(
        server
            .with(|s| s.resource(&policy))
            .expect("the policy exists")["properties"]["policyRule"]["then"]["effect"],
        "Audit"
    );
    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}\n{}", d.log_text());
    server.with(|s| {
        assert!(s.resource(&policy).is_none());
        assert!(s.deleted.contains(&policy), "{:?}", s.deleted);
    });

    // The same from Bicep (`targetScope = 'managementGroup'`).
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "policy-from-bicep", "provider_type": "bicep",
            "management_group": "mg-made", "location": "northeurope", "parameters": {"policyName": "bicep-owner", "effect": "Deny"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "completed", "{st}\n{}", d.log_text());
    let policy =
        format!("{MG_ID}/mg-made/providers/Microsoft.Authorization/policyDefinitions/bicep-owner");
    assert_eq!(st["outputs"]["policyId"], policy, "{st}");
    server.with(|s| {
        assert!(
            s.deployments
                .contains_key(&format!("mg/mg-made/multicloud-{id}"))
        );
        assert_eq!(
            s.resource(&policy).expect("exists")["properties"]["policyRule"]["then"]["effect"],
            "Deny"
        );
    });
    let (s, b) = d.delete(&format!("/deployments/{id}")).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(d.wait_terminal(&id, T).await["status"], "destroyed");
    assert!(server.with(|s| s.resource(&policy).is_none()));

    // ARM's refusals end the run failed with its message: a management group that does not
    // exist, a resource type that cannot live at tenant scope.
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "policy-definition", "provider_type": "azure",
            "management_group": "mg-missing", "location": "westeurope", "parameters": {"policyName": "p"}}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "failed", "{st}");
    assert!(
        st["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("mg-missing")),
        "{st}"
    );
    let (s, b) = d
        .post_json("/deploy", &json!({"template_name": "storage-at-tenant", "provider_type": "azure", "location": "westeurope"}))
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "failed", "{st}");
    assert!(
        st["error_message"].as_str().is_some_and(|m| m
            .contains("Microsoft.Storage/storageAccounts")
            && m.contains("tenant")),
        "{st}"
    );

    // The tenant deployment's destroy deletes the management group it made.
    let (s, b) = d.delete(&format!("/deployments/{tenant_id}")).await;
    assert_eq!(s, 202, "{b}");
    let st = d.wait_terminal(&tenant_id, T).await;
    assert_eq!(st["status"], "destroyed", "{st}\n{}", d.log_text());
    server.with(|s| {
        assert!(!s.management_groups.contains("mg-made"));
        assert!(s.resource(&format!("{MG_ID}/mg-made")).is_none());
    });
}

/// A gated management-group deployment is previewed by ARM's what-if at that scope (with the
/// record's location), applied as previewed, and drift-checked there.
#[tokio::test]
async fn a_management_group_plan_previews_its_policy_applies_and_sees_drift() {
    let server = ArmServer::start();
    server.with(|s| s.management_groups.insert("mg-platform".into()));
    let db = TestDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = scope_daemon(&db, &dir, &server).await;
    let policy =
        format!("{MG_ID}/mg-platform/providers/Microsoft.Authorization/policyDefinitions/planned");
    let (s, b) = d
        .post_json(
            "/deploy",
            &json!({"template_name": "policy-definition", "provider_type": "azure",
            "management_group": "mg-platform", "location": "westeurope", "auto_apply": false,
            "parameters": {"policyName": "planned"}}),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let id = b["data"]["deployment_id"].as_str().expect("id").to_string();
    let st = d.wait_terminal(&id, T).await;
    assert_eq!(st["status"], "planned", "{st}\n{}", d.log_text());
    let first = runs(&d, &id).await[0].clone();
    assert_eq!(
        first["plan"]["resources"],
        json!([{"address": policy, "type": "Microsoft.Authorization/policyDefinitions", "action": "create"}])
    );
    server.with(|s| {
        assert_eq!(s.deployment_puts, 0);
        let request = &s.what_if_requests[0];
        assert_eq!(request["scope"], format!("{MG_ID}/mg-platform"));
        assert_eq!(request["body"]["location"], "westeurope");
    });
    let (s, b) = d
        .post_json(&format!("/deployments/{id}/apply"), &json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let run = d.wait_run(first["run_id"].as_str().expect("id"), T).await;
    assert_eq!(run["status"], "completed", "{run}\n{}", d.log_text());
    assert!(server.with(|s| s.resource(&policy).is_some()));

    let drift_check = || async {
        let (s, b) = d
            .post_json(&format!("/deployments/{id}/drift-check"), &json!({}))
            .await;
        assert_eq!(s, 202, "{b}");
        let check = d.wait_run(&run_id(&b), T).await;
        assert_eq!(check["status"], "completed", "{check}\n{}", d.log_text());
        let (_, rec) = d.get(&format!("/deployments/{id}")).await;
        rec["data"]["drift"].clone()
    };
    assert_eq!(drift_check().await["status"], "in_sync");
    assert!(server.with(
        |s| s.edit_resource(&policy, |p| p["properties"]["displayName"] =
            json!("edited"))
    ));
    let drift = drift_check().await;
    assert_eq!(drift["status"], "drifted", "{drift}");
    assert_eq!(
        drift["resources"],
        json!([{"address": policy, "type": "Microsoft.Authorization/policyDefinitions", "action": "update"}])
    );
}

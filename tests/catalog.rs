//! Every template of `templates/` parses, and its parameter schema is what the template says
//! (table-driven). Each validation rule is exercised on real templates with a rejected and an
//! accepted value.

use multicloud::catalog::{Catalog, ParamType, Template};
use multicloud::domain::ProviderType::{self, *};
use serde_json::{Value, json};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");

/// (provider, name, required parameters, sensitive parameters, a parameter and its type).
type Row = (
    ProviderType,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    (&'static str, ParamType),
);

const TABLE: &[Row] = &[
    (
        TerraformAws,
        "storage-bucket",
        &["bucket_name"],
        &[],
        ("tags", ParamType::Map),
    ),
    (
        TerraformAws,
        "compute-instance",
        &[],
        &[],
        ("root_volume_size", ParamType::Number),
    ),
    (
        TerraformAws,
        "lambda-function",
        &["function_name"],
        &[],
        ("environment", ParamType::Map),
    ),
    (
        TerraformGcp,
        "storage-bucket",
        &["bucket_name"],
        &[],
        ("force_destroy", ParamType::Bool),
    ),
    (
        TerraformGcp,
        "compute-instance",
        &["name"],
        &[],
        ("network_tags", ParamType::List),
    ),
    (
        TerraformGcp,
        "cloud-function",
        &["function_name", "source_bucket", "source_object"],
        &[],
        ("max_instances", ParamType::Number),
    ),
    (
        TerraformAzure,
        "storage-account",
        &["resource_group_name", "storage_account_name"],
        &[],
        ("tags", ParamType::Map),
    ),
    (
        Azure,
        "aks",
        &["clusterName"],
        &[],
        ("maxNodeCount", ParamType::Number),
    ),
    (
        Azure,
        "cosmos-db",
        &["accountName"],
        &[],
        ("serverless", ParamType::Bool),
    ),
    (
        Azure,
        "diagnostic-settings",
        &["storageAccountName", "workspaceName"],
        &[],
        ("retentionInDays", ParamType::Number),
    ),
    (
        Azure,
        "function-app",
        &["functionAppName"],
        &[],
        ("runtime", ParamType::String),
    ),
    (
        Azure,
        "key-vault",
        &["keyVaultName"],
        &[],
        ("disablePublicAccess", ParamType::Bool),
    ),
    (
        Azure,
        "load-balancer",
        &["loadBalancerName"],
        &[],
        ("frontendPort", ParamType::Number),
    ),
    (
        Azure,
        "log-analytics",
        &["workspaceName"],
        &[],
        ("dailyQuotaGb", ParamType::Number),
    ),
    (
        Azure,
        "network-security-group",
        &["nsgName"],
        &[],
        ("allowedPorts", ParamType::List),
    ),
    (
        Azure,
        "public-ip",
        &["publicIpName"],
        &[],
        ("zones", ParamType::List),
    ),
    (
        Azure,
        "sql-database",
        &[
            "administratorLogin",
            "administratorPassword",
            "databaseName",
            "serverName",
        ],
        &["administratorPassword"],
        ("maxSizeGb", ParamType::Number),
    ),
    (
        Azure,
        "storage-account",
        &["storageAccountName"],
        &[],
        ("tags", ParamType::Object),
    ),
    (
        Azure,
        "virtual-machine",
        &["sshPublicKey", "vmName"],
        &["sshPublicKey"],
        ("createPublicIp", ParamType::Bool),
    ),
    (
        Azure,
        "virtual-network",
        &["vnetName"],
        &[],
        ("addressPrefix", ParamType::String),
    ),
    (
        Azure,
        "vm-scale-set",
        &["sshPublicKey", "vmssName"],
        &["sshPublicKey"],
        ("instanceCount", ParamType::Number),
    ),
    (
        Azure,
        "web-app",
        &["webAppName"],
        &[],
        ("appSettings", ParamType::List),
    ),
];

fn catalog() -> Catalog {
    Catalog::scan(std::path::Path::new(TEMPLATES))
}

fn template<'a>(c: &'a Catalog, p: ProviderType, name: &str) -> &'a Template {
    c.find(p, name)
        .unwrap_or_else(|| panic!("{p}/{name} in the catalog"))
}

#[test]
fn every_template_parses_with_the_expected_schema() {
    let c = catalog();
    assert_eq!(
        c.list(None, None).count(),
        TABLE.len(),
        "the table covers every template"
    );
    for (p, name, required, sensitive, (typed, ty)) in TABLE {
        let t = template(&c, *p, name);
        assert_eq!(t.error, None, "{p}/{name}");
        assert!(
            !t.title.is_empty() && !t.description.is_empty(),
            "{p}/{name} describes itself"
        );
        let req: Vec<&str> = t
            .parameters
            .iter()
            .filter(|x| x.required)
            .map(|x| x.name.as_str())
            .collect();
        assert_eq!(&req, required, "{p}/{name} required");
        let sens: Vec<&str> = t.sensitive_parameters().collect();
        assert_eq!(&sens, sensitive, "{p}/{name} sensitive");
        let param = t
            .parameters
            .iter()
            .find(|x| x.name == *typed)
            .unwrap_or_else(|| panic!("{p}/{name}.{typed}"));
        assert_eq!(param.param_type, *ty, "{p}/{name}.{typed}");
        // Only parameters without a default are required; every one has a description.
        for x in &t.parameters {
            if x.required {
                assert!(
                    x.default.is_none() && x.default_expression.is_none(),
                    "{p}/{name}.{}",
                    x.name
                );
            }
            assert!(
                !x.description.is_empty(),
                "{p}/{name}.{} has a description",
                x.name
            );
        }
        if p.is_terraform() {
            let provider = match p {
                TerraformAws => "aws",
                TerraformGcp => "google",
                _ => "azurerm",
            };
            assert_eq!(t.required_providers, vec![provider], "{p}/{name}");
        }
    }
    // Listings are sorted by name within a provider type.
    let names: Vec<&str> = c.list(Some(Azure), None).map(|t| t.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn decorators_and_defaults_reach_the_schema() {
    let c = catalog();
    let sa = template(&c, Azure, "storage-account");
    let name = sa
        .parameters
        .iter()
        .find(|p| p.name == "storageAccountName")
        .expect("param");
    assert_eq!((name.min_length, name.max_length), (Some(3), Some(24)));
    let sku = sa
        .parameters
        .iter()
        .find(|p| p.name == "skuName")
        .expect("param");
    assert_eq!(sku.default, Some(json!("Standard_LRS")));
    assert_eq!(sku.allowed_values.as_ref().map(Vec::len), Some(5));
    let days = sa
        .parameters
        .iter()
        .find(|p| p.name == "softDeleteDays")
        .expect("param");
    assert_eq!((days.min_value, days.max_value), (Some(0.0), Some(365.0)));
    let loc = sa
        .parameters
        .iter()
        .find(|p| p.name == "location")
        .expect("param");
    assert_eq!(
        loc.default_expression.as_deref(),
        Some("resourceGroup().location")
    );

    let lambda = template(&c, TerraformAws, "lambda-function");
    let runtime = lambda
        .parameters
        .iter()
        .find(|p| p.name == "runtime")
        .expect("param");
    assert!(
        runtime
            .allowed_values
            .as_ref()
            .is_some_and(|v| v.contains(&json!("python3.12")))
    );
    let mem = lambda
        .parameters
        .iter()
        .find(|p| p.name == "memory_size")
        .expect("param");
    assert_eq!((mem.min_value, mem.max_value), (Some(128.0), Some(10240.0)));
    let bucket = template(&c, TerraformAws, "storage-bucket");
    let bn = bucket
        .parameters
        .iter()
        .find(|p| p.name == "bucket_name")
        .expect("param");
    assert_eq!((bn.min_length, bn.max_length), (Some(3), Some(63)));
    assert_eq!(bn.patterns.iter().filter(|p| p.must_match).count(), 1);
    assert_eq!(bn.patterns.iter().filter(|p| !p.must_match).count(), 2);
}

/// (template, parameters accepted, parameters rejected, the field and words of the problem).
#[test]
fn each_validation_rule_rejects_and_accepts() {
    let c = catalog();
    let cases: &[(ProviderType, &str, Value, Value, &str, &str)] = &[
        // terraform: length from `length(var.x) >= n`
        (
            TerraformAws,
            "storage-bucket",
            json!({"bucket_name": "abc"}),
            json!({"bucket_name": "ab"}),
            "parameters.bucket_name",
            "at least 3",
        ),
        // terraform: `can(regex(...))`, with the template's own message
        (
            TerraformAws,
            "storage-bucket",
            json!({"bucket_name": "my.bucket-1"}),
            json!({"bucket_name": "My_Bucket"}),
            "parameters.bucket_name",
            "lowercase letters",
        ),
        // terraform: `!can(regex(...))`
        (
            TerraformAws,
            "storage-bucket",
            json!({"bucket_name": "a.b-c"}),
            json!({"bucket_name": "a..b"}),
            "parameters.bucket_name",
            "adjacent periods",
        ),
        (
            TerraformAws,
            "storage-bucket",
            json!({"bucket_name": "bucket-10"}),
            json!({"bucket_name": "10.0.0.1"}),
            "parameters.bucket_name",
            "IP address",
        ),
        // terraform: `contains([...], var.x)`
        (
            TerraformAws,
            "lambda-function",
            json!({"function_name": "f", "runtime": "nodejs20.x"}),
            json!({"function_name": "f", "runtime": "cobol"}),
            "parameters.runtime",
            "one of",
        ),
        // terraform: `var.x >= a && var.x <= b`
        (
            TerraformAws,
            "lambda-function",
            json!({"function_name": "f", "memory_size": 10240}),
            json!({"function_name": "f", "memory_size": 64}),
            "parameters.memory_size",
            "at least 128",
        ),
        (
            TerraformAws,
            "lambda-function",
            json!({"function_name": "f", "timeout": 900}),
            json!({"function_name": "f", "timeout": 901}),
            "parameters.timeout",
            "at most 900",
        ),
        // types
        (
            TerraformAws,
            "storage-bucket",
            json!({"bucket_name": "abc", "tags": {"a": "b"}}),
            json!({"bucket_name": "abc", "tags": ["a"]}),
            "parameters.tags",
            "a map",
        ),
        (
            TerraformGcp,
            "storage-bucket",
            json!({"bucket_name": "abc", "force_destroy": true}),
            json!({"bucket_name": "abc", "force_destroy": "yes"}),
            "parameters.force_destroy",
            "a boolean",
        ),
        (
            TerraformGcp,
            "compute-instance",
            json!({"name": "vm", "network_tags": ["web"]}),
            json!({"name": "vm", "network_tags": "web"}),
            "parameters.network_tags",
            "a list",
        ),
        // required, unknown
        (
            TerraformGcp,
            "cloud-function",
            json!({"function_name": "f", "source_bucket": "b", "source_object": "o"}),
            json!({"function_name": "f", "source_bucket": "b"}),
            "parameters.source_object",
            "required",
        ),
        (
            TerraformAws,
            "compute-instance",
            json!({}),
            json!({"colour": "red"}),
            "parameters.colour",
            "unknown",
        ),
        // Bicep decorators
        (
            Azure,
            "storage-account",
            json!({"storageAccountName": "abcdefghijklmnopqrstuvwx"}),
            json!({"storageAccountName": "abcdefghijklmnopqrstuvwxy"}),
            "parameters.storageAccountName",
            "at most 24",
        ),
        (
            Azure,
            "storage-account",
            json!({"storageAccountName": "abc"}),
            json!({"storageAccountName": "ab"}),
            "parameters.storageAccountName",
            "at least 3",
        ),
        (
            Azure,
            "storage-account",
            json!({"storageAccountName": "abc", "skuName": "Premium_LRS"}),
            json!({"storageAccountName": "abc", "skuName": "Ultra"}),
            "parameters.skuName",
            "one of",
        ),
        (
            Azure,
            "storage-account",
            json!({"storageAccountName": "abc", "softDeleteDays": 365}),
            json!({"storageAccountName": "abc", "softDeleteDays": 366}),
            "parameters.softDeleteDays",
            "at most 365",
        ),
        (
            Azure,
            "log-analytics",
            json!({"workspaceName": "ws-1", "retentionInDays": 30}),
            json!({"workspaceName": "ws-1", "retentionInDays": 29}),
            "parameters.retentionInDays",
            "at least 30",
        ),
        (
            Azure,
            "sql-database",
            json!({"serverName": "s", "databaseName": "d", "administratorLogin": "a", "administratorPassword": "long-enough-pw"}),
            json!({"serverName": "s", "databaseName": "d", "administratorLogin": "a", "administratorPassword": "short"}),
            "parameters.administratorPassword",
            "at least 12",
        ),
        (
            Azure,
            "load-balancer",
            json!({"loadBalancerName": "lb", "frontendPort": 443}),
            json!({"loadBalancerName": "lb", "frontendPort": "443"}),
            "parameters.frontendPort",
            // ARM converts nothing: an `int` parameter takes a JSON integer.
            "an integer",
        ),
    ];
    for (p, name, good, bad, field, words) in cases {
        let t = template(&c, *p, name);
        let ok = t.validate(good.as_object().expect("object"));
        assert!(ok.is_ok(), "{name} accepts {good}: {ok:?}");
        let err = t
            .validate(bad.as_object().expect("object"))
            .expect_err("rejected");
        let problem = err
            .0
            .get(*field)
            .unwrap_or_else(|| panic!("{name}: {field} named in {err:?}"));
        assert!(
            problem.contains(words),
            "{name}: {field}: {problem:?} should say {words:?}"
        );
    }
}

#[test]
fn defaults_are_applied_to_the_effective_parameters() {
    let c = catalog();
    let t = template(&c, TerraformAws, "lambda-function");
    let given = json!({"function_name": "f", "memory_size": 256});
    let eff = t.effective_parameters(given.as_object().expect("object"));
    assert_eq!(eff["memory_size"], 256);
    assert_eq!(eff["runtime"], "python3.12");
    assert_eq!(eff["timeout"], 10);
    // A computed Bicep default is left to the deployment.
    let sa = template(&c, Azure, "storage-account");
    let eff = sa.effective_parameters(
        json!({"storageAccountName": "abc"})
            .as_object()
            .expect("object"),
    );
    assert!(!eff.contains_key("location"));
    assert_eq!(eff["skuName"], "Standard_LRS");
}

#[test]
fn a_broken_template_is_listed_with_its_error_and_links_outside_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("terraform/aws")).expect("mkdir");
    std::fs::write(
        dir.path().join("terraform/aws/broken.tf"),
        "variable \"x\" {",
    )
    .expect("write");
    std::fs::write(dir.path().join("bad.bicep"), "param x string = 'open\n").expect("write");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("secret.tf"), "variable \"leak\" {}").expect("write");
    std::os::unix::fs::symlink(
        outside.path().join("secret.tf"),
        dir.path().join("terraform/aws/leak.tf"),
    )
    .expect("symlink");
    let c = Catalog::scan(dir.path());
    let broken = c.find(TerraformAws, "broken").expect("listed");
    assert!(
        broken
            .error
            .as_deref()
            .is_some_and(|e| e.contains("invalid HCL"))
    );
    let bad = c.find(Azure, "bad").expect("listed");
    assert!(
        bad.error.as_deref().is_some_and(|e| e.contains("line 1")),
        "{bad:?}"
    );
    assert!(
        c.find(TerraformAws, "leak").is_none(),
        "a link out of the folder is not a template"
    );
}

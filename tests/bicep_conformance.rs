//! The native Bicep compiler against the official compiler's own test data
//! (tests/fixtures/bicep-conformance, Azure/bicep at a pinned commit): every sample is compiled
//! and compared with its `main.json`, semantically (objects unordered, arrays ordered) after
//! removing `metadata._generator` at every depth. Prints a table; tier A of the user-submitted
//! samples and the listed baselines must pass in full, every other sample must either pass or
//! be rejected with a positioned error, and the invalid baselines must be rejected, never panic.

use std::path::{Path, PathBuf};

use multicloud::bicep;
use serde_json::Value;

const ROOT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bicep-conformance"
);

/// SCOPE.md §3.2 tier A: the features resource templates use.
const TIER_A: &[&str] = &[
    "000/01-hello-world",
    "000/21-array-lookup",
    "101/1vm-2nics-2subnets-1vnet",
    "101/aad-domainservices",
    "101/aadds-dual-region-replica-sets",
    "101/aci-linuxcontainer-public-ip",
    "101/aks-vmss-systemassigned-identity",
    "101/aks",
    "101/api-management-create-with-msi",
    "101/app-config",
    "101/app-service-regional-vnet-integration",
    "101/application-gateway-v2-autoscale-create",
    "101/avd-backplane",
    "101/azure-automation-account",
    "101/azure-search-create",
    "101/azure-sentinel",
    "101/azurefirewall-create-with-zones",
    "101/basic-batch-account",
    "101/cognitive-services",
    "101/container-registry",
    "101/cosmosdb-free",
    "101/cosmosdb-private-endpoint",
    "101/cosmosdb-webapp",
    "101/create-managedidentity-rbac",
    "101/data-factory-v2-blob-to-blob-copy",
    "101/data-factory-v2",
    "101/data-lake-store-encryption-adls",
    "101/databricks-workspace",
    "101/deployment-script-with-storage",
    "101/event-grid-servicebus-queue",
    "101/eventhub-namespace",
    "101/expressroute-circuit-create",
    "101/front-door-basic",
    "101/front-door-custom-domain",
    "101/front-door-redirect",
    "101/function-app-create",
    "101/hdinsight-spark-linux",
    "101/key-vault-create",
    "101/key-vault-secret-only",
    "101/logic-app-create",
    "101/monitor-action-groups",
    "101/nat-gateway-vnet",
    "101/private-dns-zone",
    "101/private-endpoint-webapp",
    "101/redis-cache",
    "101/resource-with-lock",
    "101/sql-database",
    "101/sqlmi-new-vnet",
    "101/storage-blob-container",
    "101/templatespec-create",
    "101/vm-simple-linux",
    "101/vm-simple-windows",
    "101/vnet-two-subnets",
    "101/web-app-linux",
    "101/web-app-windows",
    "101/webapp-managed-mysql",
    "101/webapp-privateendpoint-vnet-injection",
    "201/aci-sftp-files",
    "201/aci-wordpress",
    "201/api-management-create-all-resources",
    "201/asev2-ilb-with-web-app",
    "201/cdn-with-storage-account",
    "201/create-and-enable-ddos-protection-plans",
    "201/decrypt-running-windows-vm-without-aad",
    "201/event-hub-and-consumer-group",
    "201/existing-vnet-to-vnet-peering",
    "201/firewall-with-ip-from-prefix",
    "201/front-door-with-webapplication-firewall",
    "201/iot-with-storage",
    "201/log-analytics-with-solutions-and-diagnostics",
    "201/portal-dashboard-with-appinsights",
    "201/redis-premium-cluster-diagnostics",
    "201/servicebus-create-queue",
    "201/shared-image-gallery-with-image-defintition-and-role-assignment",
    "201/sql",
    "201/traffic-manager-webapp",
    "201/vm-domain-join",
    "201/vm-new-or-existing-conditions",
    "201/vm-push-certificate-windows",
    "201/vm-windows10-with-nvidia-gpu-extension-and-condition",
    "201/vmss-windows-autoscale",
    "201/vnet-to-vnet-bgp",
    "201/vnet-to-vnet-peering",
    "201/vnet-with-subnet-and-user-defined-route",
    "201/vwan-shared-services",
    "201/web-app-asev2-create",
    "201/web-app-loganalytics",
    "201/web-app-sql-database",
    "301/expressroute-circuit-vnet-connection",
    "301/insights-alertrules-application-insights",
    "301/servicebus-namespace-vnet",
    "301/web-app-managed-identity-sql-db",
];

/// Baselines (language-edge cases) that compile to the official output.
const BASELINES_PASSING: &[&str] = &[
    "AKS_LF",
    "Dependencies_LF",
    "DisableNextLineDiagnosticsDirective_CRLF",
    "Empty",
    "IntermediaryVariables_LF",
    "LargeTemplate_Stress_LF",
    "Metadata_CRLF",
    "NewlineSensitivity_LF",
    "Outputs_CRLF",
    "Parameters_LF",
    "PrettyPrint_LF",
    "Unicode_LF",
];

/// Baselines outside what SCOPE.md §3.3 calls eligible (experimental language versions,
/// compile-time imports, the registry, a diagnostics case).
const BASELINES_EXCLUDED: &[&str] = &[
    "Extensions_CRLF",
    "TestFramework_CRLF",
    "Imports_LF",
    "Registry_LF",
    "InvalidLambdas_LF",
];

enum Outcome {
    Pass,
    /// Equal once resource type names are compared without case: the official compiler
    /// rewrites a type to the casing of its bundled Azure type index
    /// (`Microsoft.Web/serverFarms` → `Microsoft.Web/serverfarms`), which is not available
    /// here; ARM treats type names case-insensitively.
    PassTypeCasing,
    Mismatch(String),
    Rejected(bicep::CompileError),
}

fn strip_generator(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                meta.remove("_generator");
                if meta.is_empty() {
                    m.remove("metadata");
                }
            }
            m.values_mut().for_each(strip_generator);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_generator),
        _ => {}
    }
}

/// Lower-cases every resource type name (`Namespace.Provider/type/child`) in every string.
fn fold_type_casing(v: &mut Value) {
    static TYPE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"[A-Za-z][A-Za-z0-9]*\.[A-Za-z0-9.]+(/[A-Za-z0-9]+)+").expect("regex")
    });
    match v {
        Value::String(s) => {
            *s = TYPE
                .replace_all(s, |c: &regex::Captures| c[0].to_lowercase())
                .into_owned()
        }
        Value::Object(m) => m.values_mut().for_each(fold_type_casing),
        Value::Array(a) => a.iter_mut().for_each(fold_type_casing),
        _ => {}
    }
}

/// The first path where two documents differ.
fn diff(path: &str, want: &Value, got: &Value) -> Option<String> {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    None => return Some(format!("{path}.{k}: missing (want {})", short(v))),
                    Some(w) => {
                        if let Some(d) = diff(&format!("{path}.{k}"), v, w) {
                            return Some(d);
                        }
                    }
                }
            }
            b.keys()
                .find(|k| !a.contains_key(*k))
                .map(|k| format!("{path}.{k}: unexpected {}", short(&b[k])))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| diff(&format!("{path}[{i}]"), x, y)),
        _ if want == got => None,
        _ => Some(format!("{path}: want {}, got {}", short(want), short(got))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!("{}...", &s[..300])
    } else {
        s
    }
}

fn run(dir: &Path) -> Outcome {
    let src = std::fs::read_to_string(dir.join("main.bicep")).expect("main.bicep");
    let expected = std::fs::read_to_string(dir.join("main.json")).expect("main.json");
    let mut want: Value =
        serde_json::from_str(expected.trim_start_matches('\u{feff}')).expect("main.json parses");
    match bicep::compile(&src) {
        Err(e) => Outcome::Rejected(e),
        Ok(mut got) => {
            strip_generator(&mut want);
            strip_generator(&mut got);
            if diff("$", &want, &got).is_none() {
                return Outcome::Pass;
            }
            fold_type_casing(&mut want);
            fold_type_casing(&mut got);
            match diff("$", &want, &got) {
                None => Outcome::PassTypeCasing,
                Some(d) => Outcome::Mismatch(d),
            }
        }
    }
}

fn samples(group: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let base = Path::new(ROOT).join(group);
    let mut stack = vec![base.clone()];
    while let Some(d) = stack.pop() {
        if d.join("main.bicep").is_file() && d.join("main.json").is_file() {
            let rel = d
                .strip_prefix(&base)
                .expect("under root")
                .display()
                .to_string();
            out.push((rel, d.clone()));
            continue;
        }
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn user_submitted_samples_compile_to_the_official_output() {
    let mut failures = Vec::new();
    let (mut pass, mut casing, mut rejected, mut mismatched) = (0, 0, 0, 0);
    let all = samples("user_submitted");
    for (name, dir) in &all {
        let tier_a = TIER_A.contains(&name.as_str());
        let outcome = std::panic::catch_unwind(|| run(dir));
        let line = match outcome {
            Err(_) => {
                failures.push(format!("{name}: PANIC"));
                format!("PANIC     {name}")
            }
            Ok(Outcome::Pass) => {
                pass += 1;
                format!("pass      {name}")
            }
            Ok(Outcome::PassTypeCasing) => {
                pass += 1;
                casing += 1;
                format!("pass*     {name} (resource type casing)")
            }
            Ok(Outcome::Rejected(e)) => {
                rejected += 1;
                if tier_a {
                    failures.push(format!("{name}: rejected: {e}"));
                }
                format!("rejected  {name}: {e}")
            }
            Ok(Outcome::Mismatch(d)) => {
                mismatched += 1;
                // Outside tier A, a sample must be rejected rather than compiled wrongly.
                failures.push(format!("{name}: differs: {d}"));
                format!("DIFFERS   {name}: {d}")
            }
        };
        println!("{line}");
    }
    let tier_a_pass = TIER_A
        .iter()
        .filter(|t| !failures.iter().any(|f| f.starts_with(&format!("{t}:"))))
        .count();
    println!(
        "\nuser_submitted: {pass} of {} pass ({casing} of them equal up to resource type casing), {rejected} rejected (outside the subset), {mismatched} differ; tier A: {tier_a_pass} of {} pass",
        all.len(),
        TIER_A.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn baselines_compile_or_are_rejected_and_invalid_ones_never_panic() {
    let mut failures = Vec::new();
    let mut pass = 0;
    let mut eligible = 0;
    let mut dirs: Vec<_> = std::fs::read_dir(Path::new(ROOT).join("baselines"))
        .expect("baselines")
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.starts_with("Invalid") {
            let src = std::fs::read_to_string(dir.join("main.bicep")).expect("main.bicep");
            match std::panic::catch_unwind(|| bicep::compile(&src)) {
                Err(_) => failures.push(format!("{name}: PANIC")),
                Ok(Ok(_)) => failures.push(format!("{name}: invalid, but compiled")),
                Ok(Err(e)) => println!("rejected  {name}: {e}"),
            }
            continue;
        }
        if !dir.join("main.json").is_file() || BASELINES_EXCLUDED.contains(&name.as_str()) {
            continue;
        }
        eligible += 1;
        let expected = BASELINES_PASSING.contains(&name.as_str());
        match std::panic::catch_unwind(|| run(&dir)) {
            Err(_) => failures.push(format!("{name}: PANIC")),
            Ok(outcome @ (Outcome::Pass | Outcome::PassTypeCasing)) => {
                pass += 1;
                let star = if matches!(outcome, Outcome::Pass) {
                    " "
                } else {
                    "*"
                };
                println!("pass{star}     {name}");
                if !expected {
                    failures.push(format!("{name}: passes now: add it to BASELINES_PASSING"));
                }
            }
            Ok(Outcome::Rejected(e)) => {
                println!("rejected  {name}: {e}");
                if expected {
                    failures.push(format!("{name}: rejected: {e}"));
                }
            }
            Ok(Outcome::Mismatch(d)) => {
                println!("DIFFERS   {name}: {d}");
                failures.push(format!("{name}: differs: {d}"));
            }
        }
    }
    println!("\nbaselines: {pass} of {eligible} eligible pass");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

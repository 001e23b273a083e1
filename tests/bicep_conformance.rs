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
    "NestedResources_LF",
    "NewlineSensitivity_LF",
    "Outputs_CRLF",
    "Parameters_LF",
    "PrettyPrint_LF",
    "ResourcesManagementGroup_CRLF",
    "ResourcesSubscription_CRLF",
    "ResourcesTenant_CRLF",
    "TypedVariables_LF",
    "Unicode_LF",
    "VariablesManagementGroup_LF",
    "VariablesSubscription_LF",
    "VariablesTenant_LF",
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
    let expected = std::fs::read_to_string(dir.join("main.json")).expect("main.json");
    let mut want: Value =
        serde_json::from_str(expected.trim_start_matches('\u{feff}')).expect("main.json parses");
    // Modules and load* targets are read from the sample's folder.
    match bicep::compile_file(dir, &dir.join("main.bicep")) {
        Err(e) => Outcome::Rejected(e),
        Ok(mut got) => {
            dump(dir, &got);
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

/// BICEP_CONFORMANCE_DUMP=<dir>: writes each compiled template there (as <sample>.json), for
/// diffing by hand.
fn dump(dir: &Path, got: &Value) {
    if let Some(out) = std::env::var_os("BICEP_CONFORMANCE_DUMP") {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        let path = Path::new(&out).join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(got).expect("json");
        std::fs::write(path, text).expect("dump");
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
            match std::panic::catch_unwind(|| bicep::compile_file(&dir, &dir.join("main.bicep"))) {
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

/// How many samples (user-submitted and baselines) compile, with symbolic names forced, to their
/// `main.symbolicnames.json`; every other one must be rejected (never differ).
const SYMBOLIC_NAMES_PASSING: usize = 162;

/// Every sample again, as the official compiler writes it with its `symbolicNameCodegen`
/// feature on (`main.symbolicnames.json`: `languageVersion` 2.0, resources by symbolic name):
/// the output for each template the classic run compiles, and a check of the 2.0 writer on far
/// more templates than those that need it.
#[test]
fn samples_compile_with_symbolic_names_to_the_official_output() {
    let mut dirs: Vec<(String, PathBuf)> = samples("user_submitted")
        .into_iter()
        .map(|(n, d)| (format!("user_submitted/{n}"), d))
        .collect();
    dirs.extend(
        samples("baselines")
            .into_iter()
            .map(|(n, d)| (format!("baselines/{n}"), d)),
    );
    let (mut pass, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    for (name, dir) in &dirs {
        let Ok(text) = std::fs::read_to_string(dir.join("main.symbolicnames.json")) else {
            continue;
        };
        let mut want: Value =
            serde_json::from_str(text.trim_start_matches('\u{feff}')).expect("oracle parses");
        let src = std::fs::read_to_string(dir.join("main.bicep")).expect("main.bicep");
        let files = bicep::Folder::new(dir);
        let compiled = std::panic::catch_unwind(|| {
            bicep::compile_with_symbolic_names(
                src.trim_start_matches('\u{feff}'),
                "main.bicep",
                &files,
            )
        });
        match compiled {
            Err(_) => failures.push(format!("{name}: PANIC")),
            Ok(Err(e)) => {
                rejected += 1;
                println!("rejected  {name}: {e}");
            }
            Ok(Ok(mut got)) => {
                strip_generator(&mut want);
                strip_generator(&mut got);
                fold_type_casing(&mut want);
                fold_type_casing(&mut got);
                match diff("$", &want, &got) {
                    None => pass += 1,
                    Some(d) => failures.push(format!("{name}: differs: {d}")),
                }
            }
        }
    }
    println!("\nsymbolic names: {pass} equal, {rejected} rejected");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        pass, SYMBOLIC_NAMES_PASSING,
        "update SYMBOLIC_NAMES_PASSING (and README.md)"
    );
}

// ---------------------------------------------------------------------------------------------
// Real-world templates: Azure quickstarts (tests/fixtures/bicep-quickstarts, see its README).

const QUICKSTARTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bicep-quickstarts"
);

/// A local module cache as the official CLI fills it (`bicep restore`, `~/.bicep`) with the
/// registry modules the samples use; see its README.md.
const MODULE_CACHE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/bicep-module-cache"
);

/// Samples whose `azuredeploy.json` was not regenerated after `main.bicep` was edited (checked by
/// hand: the difference is in the oracle, not in the compiler). Each must still compile.
const QUICKSTARTS_STALE: &[&str] = &[
    // The oracle deploys apiVersion 2020-05-01; main.bicep now says 2022-01-01.
    "quickstarts__microsoft.network__azure-bastion",
    // The oracle has a `secureBoot` parameter that main.bicep no longer declares.
    "quickstarts__microsoft.compute__vm-windows-ssh",
    "quickstarts__microsoft.sqlvirtualmachine__sql-vm-new-storage",
    // The oracle has a parameter `virtualNetworkNameResource`; main.bicep declares a variable.
    "quickstarts__microsoft.web__webapp-windows-with-privateendpoint-applicationgateway",
    // The oracle (Bicep 0.6.18) is of an older template: other api versions, parameters
    // (`autoscaleMaxThroughput`), indexes; main.bicep was rewritten since.
    "quickstarts__microsoft.documentdb__cosmosdb-mongodb-autoscale",
    // The oracle was compiled from a checkout with CRLF line endings: its multi-line string
    // (`customData`) has "\r\n" where main.bicep, stored with LF, has "\n". Equal otherwise.
    "application-workloads__azure-gamedev__gamedev-vmss",
];

/// Samples whose oracle comes from an older compiler that wrote them differently in more than
/// the documented style (checked against today's compiler sources); today's output is kept.
const QUICKSTARTS_OLDER_COMPILER: &[&str] = &[
    // Bicep 0.5.6 wrote no dependency through an existing parent
    // (`parent: frontDoor::frontendEndpoint`, an existing child of a deployed front door);
    // today's compiler depends on the deployed ancestor.
    "quickstarts__microsoft.network__front-door-custom-domain",
    "quickstarts__microsoft.network__front-door-custom-domain-customer-certificate",
    // Bicep 0.22.6 named the copy loop of a nested resource by its own name; today's compiler
    // names it `parent::child` (see baselines/NestedResources_LF).
    "quickstarts__microsoft.mobilenetwork__mobilenetwork-provision-proxy-sims",
    // The same in its module modules/devcenter.bicep (Bicep 0.21.1): `pools`, today
    // `project::pools`. Equal otherwise.
    "quickstarts__microsoft.devcenter__devbox-with-builtin-image",
    // The same in its module modules/avnm.bicep (Bicep 0.20.4): the loop of the nested
    // `staticMemberSpoke` (in a conditional parent, whose condition it stacks on its own),
    // today `networkGroupSpokesStatic::staticMemberSpoke`; its `scriptContent` also has the
    // "\r\n" of a CRLF checkout where the file has "\n". Equal otherwise.
    "subscription-deployments__microsoft.network__virtual-network-manager-connectivity",
];

/// Samples whose folder lacks a file that main.bicep uses, so that compiling them ends in
/// "no such file" (checked by hand against the upstream repository).
const QUICKSTARTS_INCOMPLETE: &[&str] = &[
    // modules/vnetconnections.bicep was not copied (main.bicep writes
    // `module vnetConnectionsModule'./modules/vnetconnections.bicep'`, without a space before the
    // path). With the upstream file in place, the output (languageVersion 2.0: typed-array
    // parameters) equals the oracle (Bicep 0.25.53) apart from two `dependsOn` entries on an
    // existing firewall that its route tables read only by id: today's compiler (since Bicep
    // #15693, December 2024) no longer writes those.
    "quickstarts__microsoft.network__virtual-wan-routing-intent",
];

/// The samples that are not equal to their oracle today, with what happens: `rejected` (an
/// error naming an unsupported construct), `stale`, `older`, `incomplete` (listed above) or `failed` (a wrong template,
/// or an error on valid input). Every other sample must be equal; a listed one that changes
/// outcome fails too, so that the list (and the table in README.md) is updated with it.
const QUICKSTARTS_NOT_EQUAL: &[(&str, &str)] = &[
    (
        "application-workloads__azure-gamedev__gamedev-vmss",
        "stale",
    ),
    ("quickstarts__microsoft.compute__vm-windows-ssh", "stale"),
    (
        "quickstarts__microsoft.devcenter__devbox-with-builtin-image",
        "older",
    ),
    (
        "quickstarts__microsoft.documentdb__cosmosdb-mongodb-autoscale",
        "stale",
    ),
    (
        "quickstarts__microsoft.mobilenetwork__mobilenetwork-provision-proxy-sims",
        "older",
    ),
    ("quickstarts__microsoft.network__azure-bastion", "stale"),
    (
        "quickstarts__microsoft.network__front-door-custom-domain",
        "older",
    ),
    (
        "quickstarts__microsoft.network__front-door-custom-domain-customer-certificate",
        "older",
    ),
    (
        "quickstarts__microsoft.network__virtual-wan-routing-intent",
        "incomplete",
    ),
    (
        "quickstarts__microsoft.sqlvirtualmachine__sql-vm-new-storage",
        "stale",
    ),
    (
        "quickstarts__microsoft.web__webapp-windows-with-privateendpoint-applicationgateway",
        "stale",
    ),
    (
        "subscription-deployments__microsoft.network__virtual-network-manager-connectivity",
        "older",
    ),
];

/// The oracle's compiler version, `(major, minor)`.
fn generator_version(v: &Value) -> (u64, u64) {
    let s = v["metadata"]["_generator"]["version"]
        .as_str()
        .unwrap_or("");
    let mut parts = s.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The top-level arguments of the call whose `(` is at `open`, and the index after its `)`.
fn call_args(s: &str, open: usize) -> Option<(Vec<(usize, usize)>, usize)> {
    let b = s.as_bytes();
    let (mut depth, mut quoted, mut start) = (0usize, false, open + 1);
    let mut args = Vec::new();
    let mut i = open;
    while i < b.len() {
        let c = b[i];
        if quoted {
            if c == b'\'' {
                if b.get(i + 1) == Some(&b'\'') {
                    i += 1;
                } else {
                    quoted = false;
                }
            }
        } else {
            match c {
                b'\'' => quoted = true,
                b'(' | b'[' => depth += 1,
                b')' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        args.push((start, i));
                        return Some((args, i + 1));
                    }
                }
                b',' if depth == 1 => {
                    args.push((start, i));
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Rewrites every `name(args)` call in an ARM expression string with `f` (innermost last).
fn rewrite_calls(s: &str, name: &str, f: &dyn Fn(&[&str]) -> Option<String>) -> String {
    let needle = format!("{name}(");
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find(&needle) {
        let boundary = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '.');
        let open = at + name.len();
        match call_args(rest, open).filter(|_| boundary) {
            Some((spans, end)) => {
                let args: Vec<&str> = spans.iter().map(|&(a, b)| rest[a..b].trim()).collect();
                out.push_str(&rest[..at]);
                match f(&args) {
                    Some(r) => out.push_str(&r),
                    None => out.push_str(&rest[at..end]),
                }
                rest = &rest[end..];
            }
            None => {
                out.push_str(&rest[..open + 1]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The style differences of older compilers that the fixtures' README documents (ARM reads
/// both forms the same), folded to one form on both sides:
/// - `secureString`/`secureObject` vs `securestring`/`secureobject` (parameter and output types);
/// - an extension resource's `scope` as `format('NS/type/{0}', x)` vs `resourceId('NS/type', x)`;
/// - `reference(resourceId(...))` (or of any other id function) without the api version
///   (compilers up to 0.11);
/// - the order of `dependsOn` entries;
/// - the API version of a module's nested deployment (`Microsoft.Resources/deployments`:
///   2020-10-01 up to 0.15, 2022-09-01 from 0.17, 2025-04-01 today), in its `apiVersion` and
///   in the `reference()` of its outputs.
///
/// Resource type casing is folded first, as for the other sets.
fn fold_quickstart_style(v: &mut Value, old_reference: bool) {
    const NESTED: &str = "microsoft.resources/deployments";
    fn fold(v: &mut Value, old_reference: bool, key: Option<&str>) {
        match v {
            Value::String(s) => {
                if s.starts_with('[') && s.contains(NESTED) {
                    *s = rewrite_calls(s, "reference", &|args| {
                        (args.len() == 2
                            && args[0].contains(&format!("'{NESTED}'"))
                            && args[1].starts_with("'20"))
                        .then(|| format!("reference({}, 'nested-deployment-api')", args[0]))
                    });
                }
                if old_reference && s.starts_with('[') {
                    // Any id function: a module's deployment in another scope is read through
                    // `extensionResourceId(...)`, a tenant resource through `tenantResourceId(...)`.
                    *s = rewrite_calls(s, "reference", &|args| {
                        (args.len() == 2
                            && [
                                "resourceId(",
                                "extensionResourceId(",
                                "subscriptionResourceId(",
                                "tenantResourceId(",
                            ]
                            .iter()
                            .any(|f| args[0].starts_with(f))
                            && args[1].starts_with('\''))
                        .then(|| format!("reference({})", args[0]))
                    });
                }
                if key == Some("scope") && s.starts_with("[format('") {
                    *s = rewrite_calls(s, "format", &|args| {
                        let pattern = args.first()?.strip_prefix('\'')?.strip_suffix('\'')?;
                        let segments: Vec<&str> = pattern.split('/').collect();
                        // 'NS/type/{0}/child/{1}': types at even positions from 1, names after.
                        if segments.len() < 3 || segments.len() % 2 == 0 {
                            return None;
                        }
                        let mut ty = vec![segments[0]];
                        for (i, pair) in segments[1..].chunks(2).enumerate() {
                            if pair[1] != format!("{{{i}}}") {
                                return None;
                            }
                            ty.push(pair[0]);
                        }
                        (args.len() == segments.len() / 2 + 1).then(|| {
                            format!("resourceId('{}', {})", ty.join("/"), args[1..].join(", "))
                        })
                    });
                }
            }
            Value::Object(m) => {
                if m.get("type").and_then(Value::as_str) == Some(NESTED)
                    && m.contains_key("apiVersion")
                {
                    m.insert("apiVersion".into(), Value::from("nested-deployment-api"));
                }
                for (k, x) in m.iter_mut() {
                    if k == "type" {
                        if let Value::String(t) = x {
                            if t.eq_ignore_ascii_case("securestring")
                                || t.eq_ignore_ascii_case("secureobject")
                            {
                                *t = t.to_lowercase();
                            }
                        }
                    }
                    fold(x, old_reference, Some(k));
                }
                if let Some(Value::Array(deps)) = m.get_mut("dependsOn") {
                    deps.sort_by_key(|d| d.to_string());
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| fold(x, old_reference, None)),
            _ => {}
        }
    }
    fold(v, old_reference, None)
}

enum Quickstart {
    Equal,
    Different(String),
    Rejected(bicep::CompileError),
    /// An error that names no unsupported construct: valid input the compiler cannot read.
    Error(bicep::CompileError),
}

fn run_quickstart(dir: &Path) -> Quickstart {
    let expected = std::fs::read_to_string(dir.join("azuredeploy.json")).expect("oracle");
    let mut want: Value =
        serde_json::from_str(expected.trim_start_matches('\u{feff}')).expect("oracle parses");
    let old_reference = generator_version(&want) <= (0, 11);
    // Registry modules (`br/public:...`) come from the module cache fixture.
    let src = std::fs::read_to_string(dir.join("main.bicep")).expect("main.bicep");
    let files = bicep::Folder::new(dir);
    let cache = bicep::Folder::new(MODULE_CACHE);
    let loader = bicep::WithModuleCache {
        files: &files,
        cache: &cache,
    };
    match bicep::compile_with(src.trim_start_matches('\u{feff}'), "main.bicep", &loader) {
        Err(e) if e.message.contains("are not supported") => Quickstart::Rejected(e),
        Err(e) => Quickstart::Error(e),
        Ok(mut got) => {
            dump(dir, &got);
            for v in [&mut want, &mut got] {
                strip_generator(v);
                fold_type_casing(v);
                fold_quickstart_style(v, old_reference);
            }
            match diff("$", &want, &got) {
                None => Quickstart::Equal,
                Some(d) => Quickstart::Different(d),
            }
        }
    }
}

#[test]
fn quickstarts_compile_to_the_official_output_or_are_rejected() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(QUICKSTARTS)
        .expect("quickstarts")
        .flatten()
        .map(|e| e.path())
        .filter(|d| d.join("main.bicep").is_file())
        .collect();
    dirs.sort();
    let mut failures = Vec::new();
    let (mut equal, mut stale, mut older, mut different, mut rejected, mut failed) =
        (0, 0, 0, 0, 0, 0);
    let mut incomplete = 0;
    let mut constructs: std::collections::BTreeMap<String, usize> = Default::default();
    for dir in &dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let is_stale = QUICKSTARTS_STALE.contains(&name.as_str());
        let (kind, line) = match std::panic::catch_unwind(|| run_quickstart(dir)) {
            Err(_) => {
                failed += 1;
                ("failed", "PANIC".to_string())
            }
            Ok(Quickstart::Equal) => {
                equal += 1;
                ("equal", String::new())
            }
            Ok(Quickstart::Different(d)) if QUICKSTARTS_OLDER_COMPILER.contains(&name.as_str()) => {
                older += 1;
                ("older", format!("differs (older compiler): {d}"))
            }
            Ok(Quickstart::Different(d)) if is_stale => {
                stale += 1;
                ("stale", format!("differs (stale oracle): {d}"))
            }
            Ok(Quickstart::Different(d)) => {
                different += 1;
                ("failed", format!("DIFFERS: {d}"))
            }
            Ok(Quickstart::Rejected(e)) => {
                rejected += 1;
                // In a module, the construct follows the module's own position.
                let construct = e.message.split(" are not supported").next().unwrap_or("");
                let construct = construct.rsplit("), line ").next().unwrap_or(construct);
                let construct = construct
                    .split_once(": ")
                    .filter(|_| e.message.starts_with("in module"))
                    .map_or(construct, |(_, c)| c);
                *constructs.entry(construct.to_string()).or_default() += 1;
                ("rejected", format!("rejected: {e}"))
            }
            Ok(Quickstart::Error(e))
                if QUICKSTARTS_INCOMPLETE.contains(&name.as_str())
                    && e.message.contains("no such file") =>
            {
                incomplete += 1;
                ("incomplete", format!("a file is missing: {e}"))
            }
            Ok(Quickstart::Error(e)) => {
                failed += 1;
                ("failed", format!("ERROR on valid input: {e}"))
            }
        };
        println!("{kind:<9} {name} {line}");
        let listed = QUICKSTARTS_NOT_EQUAL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, k)| *k)
            .unwrap_or("equal");
        if listed != kind {
            failures.push(format!("{name}: listed as {listed}, now {kind} {line}"));
        }
    }
    println!(
        "\nquickstarts: {} samples: {equal} equal, {stale} stale oracles, {older} older-compiler oracles, {incomplete} incomplete, {different} different, {rejected} rejected, {failed} failed on valid input",
        dirs.len()
    );
    for (construct, n) in &constructs {
        println!("  rejected: {n:>3}  {construct}");
    }
    for n in QUICKSTARTS_STALE
        .iter()
        .chain(QUICKSTARTS_OLDER_COMPILER)
        .chain(QUICKSTARTS_INCOMPLETE)
    {
        if !dirs.iter().any(|d| d.ends_with(n)) {
            failures.push(format!("{n}: listed as stale, not a sample"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Baselines whose folder lacks a file the official test data has beside main.bicep (the copy
/// took main.bicep and main.json only): the missing file is written here as the oracle shows
/// it, and the whole template must equal main.json. Lambdas_LF (lambdas, a user-defined
/// function, languageVersion 2.0 resources: an existing resource and a module) reads the module
/// test.bicep, whose nested template in main.json passes its one array parameter through to
/// an output; Functions_LF (user-defined functions and types, compile-time loads in function
/// bodies) loads repro-data.json, `{}` in main.json.
#[test]
fn baselines_with_a_missing_file_compile_to_the_official_output() {
    struct WithFile<'a> {
        files: &'a dyn bicep::FileLoader,
        path: &'a str,
        text: &'a str,
    }
    impl bicep::FileLoader for WithFile<'_> {
        fn load(&self, path: &str) -> Result<Vec<u8>, bicep::LoadError> {
            if path == self.path {
                return Ok(self.text.as_bytes().to_vec());
            }
            self.files.load(path)
        }
    }
    for (name, path, text) in [
        (
            "Lambdas_LF",
            "test.bicep",
            "param outputThis array\n\noutput outputThis array = outputThis\n",
        ),
        ("Functions_LF", "repro-data.json", "{}"),
    ] {
        let dir = Path::new(ROOT).join("baselines").join(name);
        assert!(!dir.join(path).exists(), "{name}: {path} is there now");
        let src = std::fs::read_to_string(dir.join("main.bicep")).expect("main.bicep");
        let folder = bicep::Folder::new(&dir);
        let files = WithFile {
            files: &folder,
            path,
            text,
        };
        let mut got = bicep::compile_with(src.trim_start_matches('\u{feff}'), "main.bicep", &files)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut want: Value = serde_json::from_str(
            std::fs::read_to_string(dir.join("main.json"))
                .expect("main.json")
                .trim_start_matches('\u{feff}'),
        )
        .expect("oracle");
        strip_generator(&mut want);
        strip_generator(&mut got);
        if let Some(d) = diff("$", &want, &got) {
            panic!("{name}: {d}");
        }
        println!("{name}: equal (with {path} as main.json shows it)");
    }
}

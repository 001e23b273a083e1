//! A test server that follows the documented Azure Resource Manager REST contract closely
//! enough to drive the daemon's ARM engine: OAuth2 client-credentials tokens that expire (and
//! can be revoked), resource groups (PUT, GET, list, DELETE as a long-running operation),
//! deployments (PUT answering 201 with `Azure-AsyncOperation`, state Accepted → Running →
//! Succeeded | Failed on successive reads, outputs, outputResources, cancel), provider metadata,
//! resource deletes, 429 with `Retry-After`, and ARM-shaped error bodies.
//!
//! Template behaviour is driven by parameters: `shouldFail: true` ends Failed with a nested
//! error, `slow: true` stays Running until cancelled.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

pub const TENANT: &str = "tenant-test";
pub const CLIENT_ID: &str = "client-test";
pub const CLIENT_SECRET: &str = "arm-client-secret-value";

#[derive(Debug, Clone)]
pub struct Deployment {
    pub state: String,
    pub reads: u32,
    pub fail: bool,
    pub slow: bool,
    pub outputs: Value,
    pub output_resources: Vec<String>,
    pub parameters: Value,
    /// Resource groups a subscription-scope template creates: (name, the group as ARM shows it).
    pub groups: Vec<(String, Value)>,
}

#[derive(Debug, Default)]
pub struct ArmState {
    pub base: String,
    pub token_lifetime_secs: u64,
    tokens: HashMap<String, Instant>,
    pub token_requests: u32,
    pub unauthorized: u32,
    pub resource_groups: BTreeMap<String, Value>,
    pub deleting_groups: HashMap<String, u32>,
    pub deployments: HashMap<String, Deployment>,
    pub resources: Vec<String>,
    pub deleted: Vec<String>,
    pub throttle_next_puts: u32,
    pub throttled: u32,
    pub deployment_puts: u32,
    pub cancels: u32,
}

impl ArmState {
    /// Every token issued so far stops working (as if revoked or expired early).
    pub fn revoke_tokens(&mut self) {
        self.tokens.clear();
    }
}

pub struct ArmServer {
    pub url: String,
    pub state: Arc<Mutex<ArmState>>,
    handle: actix_web::dev::ServerHandle,
}

impl ArmServer {
    pub fn start() -> ArmServer {
        let state = Arc::new(Mutex::new(ArmState {
            token_lifetime_secs: 3600,
            ..Default::default()
        }));
        let shared = state.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let data = web::Data::new(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .default_service(web::to(handle))
                })
                .workers(1)
                .disable_signals()
                .bind(("127.0.0.1", 0))
                .expect("bind");
                let port = server.addrs()[0].port();
                let server = server.run();
                tx.send((port, server.handle())).expect("send");
                let _ = server.await;
            });
        });
        let (port, handle) = rx.recv().expect("ARM test server started");
        let url = format!("http://127.0.0.1:{port}");
        state.lock().expect("lock").base = url.clone();
        ArmServer { url, state, handle }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut ArmState) -> T) -> T {
        f(&mut self.state.lock().expect("lock"))
    }
}

impl Drop for ArmServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        std::thread::spawn(move || actix_rt::System::new().block_on(handle.stop(false)));
    }
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
        .json(json!({"error": {"code": code, "message": message}}))
}

/// `[parameters('x')]` → the parameter's value; other strings as they are.
fn eval(v: &Value, params: &serde_json::Map<String, Value>) -> Value {
    eval_in(v, params, "", &serde_json::Map::new())
}

/// The few template expressions the test server evaluates: `[parameters('p')]`,
/// `[resourceId('NS/type', parameters('p'))]` (in the resource group of `scope`), and a nested
/// deployment's output, `[reference(resourceId('Microsoft.Resources/deployments', 'd'),
/// 'ver').outputs.o.value]` (from `nested`: deployment name → its outputs). Anything else is
/// kept as written.
fn eval_in(
    v: &Value,
    params: &serde_json::Map<String, Value>,
    scope: &str,
    nested: &serde_json::Map<String, Value>,
) -> Value {
    static PARAM: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^\[parameters\('([^']+)'\)\]$").expect("regex")
    });
    static RESOURCE_ID: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^\[resourceId\('([^']+)', parameters\('([^']+)'\)\)\]$").expect("regex")
    });
    static NESTED_OUTPUT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^\[reference\(resourceId\('Microsoft\.Resources/deployments', '([^']+)'\), '[^']+'\)\.outputs\.([A-Za-z0-9_]+)\.value\]$",
        )
        .expect("regex")
    });
    let Some(s) = v.as_str() else {
        return v.clone();
    };
    if let Some(c) = PARAM.captures(s) {
        return params.get(&c[1]).cloned().unwrap_or(Value::Null);
    }
    if let Some(c) = RESOURCE_ID.captures(s) {
        let name = params
            .get(&c[2])
            .and_then(Value::as_str)
            .unwrap_or_default();
        return json!(format!("{scope}/providers/{}/{name}", &c[1]));
    }
    if let Some(c) = NESTED_OUTPUT.captures(s) {
        return nested
            .get(&c[1])
            .and_then(|o| o.get(&c[2]))
            .and_then(|o| o.get("value"))
            .cloned()
            .unwrap_or(Value::Null);
    }
    v.clone()
}

/// A nested deployment (a Bicep module) with the inner expression scope: its template and
/// the parameter values it is given.
fn nested_deployments(template: &Value) -> Vec<(String, Value, Value)> {
    template["resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| {
                    r["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.Resources/deployments"))
                        && r["properties"]["template"].is_object()
                })
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or_default().to_string(),
                        r["properties"]["template"].clone(),
                        r["properties"]["parameters"].clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What ARM checks of a template before it deploys anything: every resource has a type, an
/// API version and a name; every expression is well formed and names only declared parameters
/// and variables; every `dependsOn` entry is a resource of the template.
fn validate_template(t: &Value) -> Result<(), String> {
    static REF: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\b(parameters|variables)\('([^']*)'\)").expect("regex")
    });
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(m) => m.iter().for_each(|(k, x)| {
                out.push(k);
                strings(x, out)
            }),
            _ => {}
        }
    }
    // A nested deployment's template has its own parameters (inner scope): checked alone.
    let mut outer = t.clone();
    if let Some(rs) = outer["resources"].as_array_mut() {
        for r in rs {
            if r["properties"]["template"].is_object() {
                validate_template(&r["properties"]["template"])?;
                r["properties"]["template"] = Value::Null;
            }
        }
    }
    let t = &outer;
    let mut all = Vec::new();
    strings(t, &mut all);
    for s in all {
        if !s.starts_with('[') || s.starts_with("[[") {
            continue;
        }
        if !s.ends_with(']') {
            return Err(format!(
                "The template language expression '{s}' is not valid: it must end with ']'"
            ));
        }
        let (mut depth, mut quoted) = (0i32, false);
        for c in s[1..s.len() - 1].chars() {
            match c {
                '\'' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => depth -= 1,
                _ => {}
            }
            if depth < 0 {
                break;
            }
        }
        if depth != 0 || quoted {
            return Err(format!(
                "The template language expression '{s}' is not valid: unbalanced parentheses or quotes"
            ));
        }
        for c in REF.captures_iter(s) {
            let section = if &c[1] == "parameters" {
                "parameters"
            } else {
                "variables"
            };
            if t[section].get(&c[2]).is_none() {
                let what = if section == "parameters" {
                    "parameter"
                } else {
                    "variable"
                };
                return Err(format!("The template {what} '{}' is not found", &c[2]));
            }
        }
    }
    let resources = t["resources"].as_array().cloned().unwrap_or_default();
    let types: Vec<String> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap_or_default().to_lowercase())
        .collect();
    for r in &resources {
        for key in ["type", "apiVersion", "name"] {
            if !r[key].is_string() {
                return Err(format!("The template resource {r} is missing '{key}'"));
            }
        }
        for dep in r["dependsOn"].as_array().cloned().unwrap_or_default() {
            let d = dep.as_str().unwrap_or_default();
            let ty = d
                .split_once("resourceId(")
                .and_then(|(_, rest)| rest.split('\'').nth(1))
                .map(str::to_lowercase);
            if !ty.is_some_and(|ty| types.contains(&ty)) {
                return Err(format!("The resource '{d}' is not defined in the template"));
            }
        }
    }
    Ok(())
}

/// A given parameter value against its declaration: type, allowed values, lengths, bounds.
fn check_parameter(name: &str, decl: &Value, v: &Value) -> Result<(), String> {
    let ty = decl["type"].as_str().unwrap_or_default().to_lowercase();
    let ok = match ty.as_str() {
        "string" | "securestring" => v.is_string(),
        "int" => v.is_i64(),
        "bool" => v.is_boolean(),
        "object" | "secureobject" => v.is_object(),
        "array" => v.is_array(),
        _ => false,
    };
    if !ok {
        return Err(format!(
            "The provided value for the template parameter '{name}' is not valid. Expected a value of type '{ty}'"
        ));
    }
    if let Some(allowed) = decl["allowedValues"].as_array()
        && !allowed.contains(v)
    {
        return Err(format!(
            "The provided value '{v}' for the template parameter '{name}' is not valid. The parameter value is not part of the allowed value(s)"
        ));
    }
    let len = v
        .as_str()
        .map(|s| s.chars().count())
        .or(v.as_array().map(Vec::len));
    if let (Some(len), Some(min)) = (len, decl["minLength"].as_u64())
        && (len as u64) < min
    {
        return Err(format!(
            "The provided value for the template parameter '{name}' is shorter than {min}"
        ));
    }
    if let (Some(len), Some(max)) = (len, decl["maxLength"].as_u64())
        && (len as u64) > max
    {
        return Err(format!(
            "The provided value for the template parameter '{name}' is longer than {max}"
        ));
    }
    if let (Some(n), Some(min)) = (v.as_i64(), decl["minValue"].as_i64())
        && n < min
    {
        return Err(format!(
            "The provided value for the template parameter '{name}' is less than {min}"
        ));
    }
    if let (Some(n), Some(max)) = (v.as_i64(), decl["maxValue"].as_i64())
        && n > max
    {
        return Err(format!(
            "The provided value for the template parameter '{name}' is greater than {max}"
        ));
    }
    Ok(())
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    data: web::Data<Arc<Mutex<ArmState>>>,
) -> HttpResponse {
    let mut st = data.lock().expect("lock");
    let path = req.path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let low: Vec<&str> = lower.iter().map(String::as_str).collect();
    let method = req.method().as_str().to_string();

    // Token endpoint: POST /{tenant}/oauth2/v2.0/token (form encoded).
    if low.len() == 4 && low[1] == "oauth2" && low[3] == "token" {
        let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        st.token_requests += 1;
        let ok = segs[0] == TENANT
            && form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
            && form.get("scope").is_some_and(|s| s.ends_with("/.default"));
        if !ok {
            return HttpResponse::Unauthorized().json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}));
        }
        let token = format!("tok-{}", st.token_requests);
        let lifetime = st.token_lifetime_secs;
        st.tokens.insert(
            token.clone(),
            Instant::now() + Duration::from_secs(lifetime),
        );
        return HttpResponse::Ok()
            .json(json!({"token_type": "Bearer", "expires_in": lifetime, "access_token": token}));
    }

    // Everything else needs a valid bearer token.
    let token = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if st
        .tokens
        .get(token)
        .is_none_or(|exp| Instant::now() >= *exp)
    {
        st.unauthorized += 1;
        return error(
            401,
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
        );
    }
    if req.query_string().find("api-version=").is_none() {
        return error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let base = st.base.clone();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };

    match (method.as_str(), low.as_slice()) {
        // Provider metadata: every type known, one stable and one preview version.
        ("GET", ["subscriptions", _, "providers", _]) => HttpResponse::Ok().json(json!({
            "namespace": segs[3],
            "resourceTypes": [
                {"resourceType": "storageAccounts", "apiVersions": ["2024-01-01-preview", "2023-05-01"]},
                {"resourceType": "publicIPAddresses", "apiVersions": ["2024-01-01"]},
            ],
        })),
        ("GET", ["subscriptions", _, "resourcegroups"]) => {
            let groups: Vec<Value> = st.resource_groups.values().cloned().collect();
            HttpResponse::Ok().json(json!({"value": groups}))
        }
        ("PUT", ["subscriptions", sub, "resourcegroups", rg]) => {
            let Some(location) = body["location"].as_str() else {
                return error(400, "LocationRequired", "The location property is required for this definition.");
            };
            let existed = st.resource_groups.contains_key(*rg);
            let group = json!({
                "id": format!("/subscriptions/{sub}/resourceGroups/{}", segs[3]),
                "name": segs[3], "location": location, "tags": body.get("tags").cloned().unwrap_or(json!({})),
                "properties": {"provisioningState": "Succeeded"},
            });
            st.resource_groups.insert(rg.to_string(), group.clone());
            if existed { HttpResponse::Ok().json(group) } else { HttpResponse::Created().json(group) }
        }
        ("GET", ["subscriptions", _, "resourcegroups", rg]) => match st.resource_groups.get(*rg) {
            Some(g) => HttpResponse::Ok().json(g),
            None => error(404, "ResourceGroupNotFound", &format!("Resource group '{}' could not be found.", segs[3])),
        },
        ("DELETE", ["subscriptions", sub, "resourcegroups", rg]) => {
            if !st.resource_groups.contains_key(*rg) {
                return error(404, "ResourceGroupNotFound", &format!("Resource group '{}' could not be found.", segs[3]));
            }
            st.deleting_groups.insert(rg.to_string(), 0);
            HttpResponse::Accepted()
                .insert_header(("Location", format!("{base}/subscriptions/{sub}/operationresults/rgdelete-{rg}?api-version=2021-04-01")))
                .insert_header(("Retry-After", "1"))
                .finish()
        }
        ("GET", ["subscriptions", _, "operationresults", op]) => {
            if let Some(rg) = op.strip_prefix("rgdelete-") {
                let polls = st.deleting_groups.entry(rg.to_string()).or_insert(0);
                *polls += 1;
                if *polls < 2 {
                    return HttpResponse::Accepted().insert_header(("Retry-After", "1")).finish();
                }
                st.resource_groups.remove(rg);
                let prefix = format!("/resourcegroups/{rg}/");
                st.resources.retain(|r| !r.to_ascii_lowercase().contains(&prefix));
                return HttpResponse::Ok().finish();
            }
            if let Some(id) = op.strip_prefix("resdelete-") {
                let _ = id;
                return HttpResponse::Ok().finish();
            }
            error(404, "NotFound", "unknown operation")
        }
        ("GET", ["subscriptions", _, "resourcegroups", rg, "resources"]) => {
            if !st.resource_groups.contains_key(*rg) {
                return error(404, "ResourceGroupNotFound", &format!("Resource group '{}' could not be found.", segs[3]));
            }
            let prefix = format!("/resourcegroups/{rg}/");
            let items: Vec<Value> = st
                .resources
                .iter()
                .filter(|r| r.to_ascii_lowercase().contains(&prefix))
                .map(|r| {
                    let parts: Vec<&str> = r.split('/').collect();
                    json!({"id": r, "name": parts.last(), "type": format!("{}/{}", parts[6], parts[7]), "location": "westeurope"})
                })
                .collect();
            HttpResponse::Ok().json(json!({"value": items}))
        }
        ("PUT", ["subscriptions", sub, "resourcegroups", _, "providers", "microsoft.resources", "deployments", name]) => {
            let (sub, rg, name) = (sub.to_string(), segs[3].to_string(), name.to_string());
            put_deployment(&mut st, &base, &sub, Some(&rg), &name, &body)
        }
        ("PUT", ["subscriptions", sub, "providers", "microsoft.resources", "deployments", name]) => {
            let (sub, name) = (sub.to_string(), name.to_string());
            put_deployment(&mut st, &base, &sub, None, &name, &body)
        }
        ("GET", ["subscriptions", sub, "providers", "microsoft.resources", "deployments", name]) => {
            let key = format!("{sub}/-/{name}");
            let Some(view) = advance(&mut st, &key) else {
                return error(404, "DeploymentNotFound", &format!("Deployment '{}' could not be found.", segs[5]));
            };
            HttpResponse::Ok().insert_header(("Retry-After", "1")).json(view)
        }
        ("GET", ["subscriptions", sub, "providers", "microsoft.resources", "deployments", name, "operationstatuses", _]) => {
            let key = format!("{sub}/-/{name}");
            operation_status(&mut st, &key)
        }
        ("POST", ["subscriptions", sub, "providers", "microsoft.resources", "deployments", name, "cancel"]) => {
            let key = format!("{sub}/-/{name}");
            cancel_deployment(&mut st, &key)
        }
        ("GET", ["subscriptions", sub, "resourcegroups", rg, "providers", "microsoft.resources", "deployments", name]) => {
            let key = format!("{sub}/{rg}/{name}");
            let Some(view) = advance(&mut st, &key) else {
                return error(404, "DeploymentNotFound", &format!("Deployment '{}' could not be found.", segs[7]));
            };
            HttpResponse::Ok().insert_header(("Retry-After", "1")).json(view)
        }
        ("GET", ["subscriptions", sub, "resourcegroups", rg, "providers", "microsoft.resources", "deployments", name, "operationstatuses", _]) => {
            let key = format!("{sub}/{rg}/{name}");
            let Some(view) = advance(&mut st, &key) else {
                return error(404, "DeploymentNotFound", "not found");
            };
            let state = view["properties"]["provisioningState"].as_str().unwrap_or("Running");
            let status = if state == "Accepted" { "Running" } else { state };
            HttpResponse::Ok().insert_header(("Retry-After", "1")).json(json!({"status": status, "error": view["properties"]["error"]}))
        }
        ("POST", ["subscriptions", sub, "resourcegroups", rg, "providers", "microsoft.resources", "deployments", name, "cancel"]) => {
            let key = format!("{sub}/{rg}/{name}");
            st.cancels += 1;
            match st.deployments.get_mut(&key) {
                None => error(404, "DeploymentNotFound", "not found"),
                Some(d) if ["Accepted", "Running"].contains(&d.state.as_str()) => {
                    d.state = "Canceled".into();
                    HttpResponse::NoContent().finish()
                }
                Some(d) => error(409, "DeploymentCannotBeCancelled", &format!("The deployment is in state '{}' and cannot be cancelled.", d.state)),
            }
        }
        ("DELETE", ["subscriptions", _, "resourcegroups", _, "providers", _, _, _]) => {
            let versions = ["api-version=2023-05-01", "api-version=2024-01-01"];
            if !versions.iter().any(|v| req.query_string().contains(v)) {
                return error(400, "NoRegisteredProviderFound", "No registered resource provider found for this API version.");
            }
            let id = path.clone();
            let Some(pos) = st.resources.iter().position(|r| r.eq_ignore_ascii_case(&id)) else {
                return error(404, "ResourceNotFound", &format!("The Resource '{id}' was not found."));
            };
            st.resources.remove(pos);
            st.deleted.push(id);
            HttpResponse::Accepted()
                .insert_header(("Location", format!("{base}/subscriptions/x/operationresults/resdelete-{}?api-version=2021-04-01", st.deleted.len())))
                .insert_header(("Retry-After", "1"))
                .finish()
        }
        _ => error(404, "InvalidResourceType", &format!("no route for {method} {path}")),
    }
}

/// PUT of a deployment at resource group scope (`rg`) or subscription scope (None).
fn put_deployment(
    st: &mut ArmState,
    base: &str,
    sub: &str,
    rg: Option<&str>,
    name: &str,
    body: &Value,
) -> HttpResponse {
    if st.throttle_next_puts > 0 {
        st.throttle_next_puts -= 1;
        st.throttled += 1;
        return HttpResponse::TooManyRequests()
                    .insert_header(("Retry-After", "1"))
                    .json(json!({"error": {"code": "TooManyRequests", "message": "Number of 'write' requests for subscription exceeded the limit. Retry after 1 second."}}));
    }
    if let Some(rg) = rg
        && !st.resource_groups.contains_key(&rg.to_ascii_lowercase())
    {
        return error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{rg}' could not be found."),
        );
    }
    let key = format!(
        "{sub}/{}/{name}",
        rg.map(str::to_ascii_lowercase)
            .unwrap_or_else(|| "-".into())
    );
    // ARM's rules for the scope: the schema must be the scope's, and a deployment above
    // a resource group needs a location for its record.
    let schema = body["properties"]["template"]["$schema"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let want = if rg.is_some() {
        "/deploymenttemplate.json"
    } else {
        "/subscriptiondeploymenttemplate.json"
    };
    if !schema.is_empty() && !schema.trim_end_matches('#').ends_with(want) {
        return error(
            400,
            "InvalidSchema",
            &format!(
                "The template schema '{schema}' is not supported for a deployment at this scope."
            ),
        );
    }
    if rg.is_none() && !body["location"].is_string() {
        return error(
            400,
            "InvalidDeployment",
            "The 'location' property must be specified for the template deployment.",
        );
    }
    if st
        .deployments
        .get(&key)
        .is_some_and(|d| !["Succeeded", "Failed", "Canceled"].contains(&d.state.as_str()))
    {
        return error(
            409,
            "DeploymentActive",
            &format!(
                "Unable to edit or replace deployment '{name}': previous deployment from '{name}' is still active."
            ),
        );
    }
    let props = &body["properties"];
    if props["mode"] != "Incremental" {
        return error(400, "InvalidDeploymentMode", "mode must be Incremental");
    }
    let template = &props["template"];
    if !template["$schema"].is_string() || !template["resources"].is_array() {
        return error(
            400,
            "InvalidTemplate",
            "Deployment template validation failed: the template must have $schema and resources.",
        );
    }
    if let Err(message) = validate_template(template) {
        return HttpResponse::BadRequest().json(json!({"error": {"code": "InvalidTemplate", "message": format!("Deployment template validation failed: '{message}'.")}}));
    }
    // Parameters: {name: {value}}; every declared one without a default must be given.
    let mut values = serde_json::Map::new();
    let given = props["parameters"].as_object().cloned().unwrap_or_default();
    for (pname, decl) in template["parameters"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        match given.get(&pname).and_then(|g| g.get("value")) {
            Some(v) => {
                if let Err(message) = check_parameter(&pname, &decl, v) {
                    return HttpResponse::BadRequest().json(json!({"error": {"code": "InvalidTemplate", "message": format!("Deployment template validation failed: '{message}'.")}}));
                }
                values.insert(pname, v.clone());
            }
            None => match decl.get("defaultValue") {
                Some(d) => {
                    values.insert(pname, d.clone());
                }
                None => {
                    return HttpResponse::BadRequest().json(json!({"error": {"code": "InvalidTemplate", "message": "Deployment template validation failed.",
                                "details": [{"code": "MissingParameter", "message": format!("The value for the template parameter '{pname}' is not provided.")}]}}));
                }
            },
        }
    }
    for pname in given.keys() {
        if !template["parameters"]
            .as_object()
            .is_some_and(|p| p.contains_key(pname))
        {
            return error(
                400,
                "InvalidTemplate",
                &format!(
                    "The template parameters '{pname}' in the parameters file are not valid; they are not present in the original template."
                ),
            );
        }
    }
    // Modules: their resources are the deployment's, their outputs readable by the outer ones.
    let rg_scope = format!(
        "/subscriptions/{sub}/resourceGroups/{}",
        rg.unwrap_or_default()
    );
    let mut nested_outputs = serde_json::Map::new();
    let mut nested_resources = Vec::new();
    for (dname, inner, given) in nested_deployments(template) {
        let mut inner_values = serde_json::Map::new();
        for (pname, decl) in inner["parameters"].as_object().cloned().unwrap_or_default() {
            let v = given
                .get(&pname)
                .and_then(|g| g.get("value"))
                .map(|v| eval_in(v, &values, &rg_scope, &nested_outputs))
                .or_else(|| decl.get("defaultValue").cloned())
                .unwrap_or(Value::Null);
            inner_values.insert(pname, v);
        }
        for r in inner["resources"].as_array().cloned().unwrap_or_default() {
            let ty = r["type"].as_str().unwrap_or_default();
            let rname = eval(&r["name"], &inner_values);
            nested_resources.push(format!(
                "{rg_scope}/providers/{ty}/{}",
                rname.as_str().unwrap_or_default()
            ));
        }
        let mut outs = serde_json::Map::new();
        for (oname, o) in inner["outputs"].as_object().cloned().unwrap_or_default() {
            outs.insert(
                oname,
                json!({"type": o["type"], "value": eval_in(&o["value"], &inner_values, &rg_scope, &serde_json::Map::new())}),
            );
        }
        nested_outputs.insert(dname, Value::Object(outs));
    }
    let output_resources: Vec<String> = template["resources"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| !r["properties"]["template"].is_object())
                .map(|r| {
                    let ty = r["type"].as_str().unwrap_or_default();
                    let name = eval(&r["name"], &values);
                    let rname = name.as_str().unwrap_or_default();
                    match rg {
                        Some(rg) => format!(
                            "/subscriptions/{sub}/resourceGroups/{rg}/providers/{ty}/{rname}"
                        ),
                        None if ty.eq_ignore_ascii_case("Microsoft.Resources/resourceGroups") => {
                            format!("/subscriptions/{sub}/resourceGroups/{rname}")
                        }
                        None => format!("/subscriptions/{sub}/providers/{ty}/{rname}"),
                    }
                })
                .collect::<Vec<String>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(nested_resources)
        .collect();
    let mut outputs = serde_json::Map::new();
    for (oname, o) in template["outputs"].as_object().cloned().unwrap_or_default() {
        outputs.insert(
            oname,
            json!({"type": o["type"], "value": eval_in(&o["value"], &values, &rg_scope, &nested_outputs)}),
        );
    }
    let groups: Vec<(String, Value)> = if rg.is_some() {
        Vec::new()
    } else {
        template["resources"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|r| {
                r["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.Resources/resourceGroups"))
            })
            .map(|r| {
                let gname = eval(&r["name"], &values)
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let group = json!({
                    "id": format!("/subscriptions/{sub}/resourceGroups/{gname}"),
                    "name": gname, "location": eval(&r["location"], &values),
                    "tags": r.get("tags").map(|t| eval(t, &values)).unwrap_or(json!({})),
                    "properties": {"provisioningState": "Succeeded"},
                });
                (gname.to_ascii_lowercase(), group)
            })
            .collect()
    };
    st.deployment_puts += 1;
    let dep = Deployment {
        state: "Accepted".into(),
        reads: 0,
        fail: values.get("shouldFail") == Some(&json!(true)),
        slow: values.get("slow") == Some(&json!(true)),
        outputs: Value::Object(outputs),
        output_resources,
        parameters: Value::Object(values),
        groups,
    };
    st.deployments.insert(key, dep);
    let scope = match rg {
        Some(rg) => format!("/subscriptions/{sub}/resourcegroups/{rg}"),
        None => format!("/subscriptions/{sub}"),
    };
    HttpResponse::Created()
                .insert_header(("Azure-AsyncOperation", format!("{base}{scope}/providers/Microsoft.Resources/deployments/{name}/operationStatuses/op1?api-version=2024-03-01")))
                .insert_header(("Retry-After", "1"))
                .json(json!({"name": name, "properties": {"provisioningState": "Accepted", "mode": "Incremental"}}))
}

fn operation_status(st: &mut ArmState, key: &str) -> HttpResponse {
    let Some(view) = advance(st, key) else {
        return error(404, "DeploymentNotFound", "not found");
    };
    let state = view["properties"]["provisioningState"]
        .as_str()
        .unwrap_or("Running");
    let status = if state == "Accepted" {
        "Running"
    } else {
        state
    };
    HttpResponse::Ok()
        .insert_header(("Retry-After", "1"))
        .json(json!({"status": status, "error": view["properties"]["error"]}))
}

fn cancel_deployment(st: &mut ArmState, key: &str) -> HttpResponse {
    st.cancels += 1;
    match st.deployments.get_mut(key) {
        None => error(404, "DeploymentNotFound", "not found"),
        Some(d) if ["Accepted", "Running"].contains(&d.state.as_str()) => {
            d.state = "Canceled".into();
            HttpResponse::NoContent().finish()
        }
        Some(d) => error(
            409,
            "DeploymentCannotBeCancelled",
            &format!(
                "The deployment is in state '{}' and cannot be cancelled.",
                d.state
            ),
        ),
    }
}

/// Reading a deployment moves it on: Accepted → Running → Succeeded | Failed (or stays Running
/// while slow). Succeeded registers its resources.
fn advance(st: &mut ArmState, key: &str) -> Option<Value> {
    let d = st.deployments.get_mut(key)?;
    d.reads += 1;
    let mut created = Vec::new();
    match d.state.as_str() {
        "Accepted" => d.state = "Running".into(),
        "Running" if !d.slow && d.reads >= 3 => {
            if d.fail {
                d.state = "Failed".into();
            } else {
                d.state = "Succeeded".into();
                created = d.output_resources.clone();
            }
        }
        _ => {}
    }
    let d = d.clone();
    for r in created {
        if let Some((gname, group)) = d
            .groups
            .iter()
            .find(|(_, g)| g["id"].as_str() == Some(r.as_str()))
        {
            st.resource_groups.insert(gname.clone(), group.clone());
        } else if !st.resources.contains(&r) {
            st.resources.push(r);
        }
    }
    let error = if d.state == "Failed" {
        json!({"code": "DeploymentFailed", "message": "At least one resource deployment operation failed. Please list deployment operations for details.",
            "details": [{"code": "Conflict", "message": "The storage account name is already taken.",
                "details": [{"code": "StorageAccountAlreadyTaken", "message": format!("The storage account named {} is already taken.", d.parameters["storageAccountName"].as_str().unwrap_or("?"))}]}]})
    } else {
        Value::Null
    };
    let succeeded = d.state == "Succeeded";
    Some(json!({
        "name": key.rsplit('/').next(),
        "properties": {
            "provisioningState": d.state,
            "mode": "Incremental",
            "outputs": if succeeded { d.outputs.clone() } else { Value::Null },
            "outputResources": if succeeded { json!(d.output_resources.iter().map(|id| json!({"id": id})).collect::<Vec<_>>()) } else { json!([]) },
            "error": error,
        }
    }))
}

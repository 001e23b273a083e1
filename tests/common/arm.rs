//! A test server that follows the documented Azure Resource Manager REST contract closely
//! enough to drive the daemon's ARM engine: OAuth2 client-credentials tokens that expire (and
//! can be revoked), resource groups (PUT, GET, list, DELETE as a long-running operation),
//! deployments (PUT answering 201 with `Azure-AsyncOperation`, state Accepted → Running →
//! Succeeded | Failed on successive reads, outputs, outputResources, cancel, exportTemplate),
//! what-if (POST `.../whatIf` answering 202 with `Location`, polled to its `changes`), provider
//! metadata, resource deletes, 429 with `Retry-After`, and ARM-shaped error bodies.
//!
//! Templates are evaluated (a subset of ARM's expression language, see [`eval`]) into the
//! resources they declare, each with its state (location, sku, kind, properties, tags). A
//! succeeded deployment stores that state; what-if compares a template's resources with the
//! stored ones; [`ArmState::edit_resource`] changes a resource behind the daemon's back, as
//! someone would in the portal.
//!
//! Template behaviour is driven by parameters: `shouldFail: true` ends Failed with a nested
//! error, `slow: true` stays Running until cancelled.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Map, Value, json};

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
    /// The template as it was sent (what `exportTemplate` gives back).
    pub template: Value,
    /// Every resource it makes (its modules' too): id and state as declared.
    pub resources: Vec<(String, Value)>,
}

/// A what-if operation: polled through its `Location` until it answers its result.
#[derive(Debug, Clone)]
pub struct WhatIf {
    pub polls: u32,
    pub result: Value,
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
    /// The state of each resource (by lowercase id): location, sku, kind, properties, tags.
    pub resource_state: HashMap<String, Value>,
    pub deleted: Vec<String>,
    pub throttle_next_puts: u32,
    pub throttled: u32,
    pub deployment_puts: u32,
    pub cancels: u32,
    /// Every what-if request: `{deployment, resourceGroup, scope, body}`.
    pub what_if_requests: Vec<Value>,
    pub what_ifs: HashMap<String, WhatIf>,
    /// The management groups that exist (lowercase ids): a test adds them, a tenant-scope
    /// deployment creates them, a delete removes them.
    pub management_groups: BTreeSet<String>,
}

/// Where a deployment is made: ARM's four deployment scopes.
#[derive(Debug, Clone, PartialEq)]
pub enum At {
    ResourceGroup { sub: String, rg: String },
    Subscription { sub: String },
    ManagementGroup { group: String },
    Tenant,
}

impl At {
    /// The scope's id (the tenant's is empty).
    pub fn id(&self) -> String {
        match self {
            At::ResourceGroup { sub, rg } => format!("/subscriptions/{sub}/resourceGroups/{rg}"),
            At::Subscription { sub } => format!("/subscriptions/{sub}"),
            At::ManagementGroup { group } => {
                format!("/providers/Microsoft.Management/managementGroups/{group}")
            }
            At::Tenant => String::new(),
        }
    }

    /// The key of this scope's deployment `name` in [`ArmState::deployments`]:
    /// `sub/rg/name`, `sub/-/name`, `mg/group/name`, `tenant/-/name` (lowercase).
    pub fn key(&self, name: &str) -> String {
        match self {
            At::ResourceGroup { sub, rg } => format!("{sub}/{rg}/{name}"),
            At::Subscription { sub } => format!("{sub}/-/{name}"),
            At::ManagementGroup { group } => format!("mg/{group}/{name}"),
            At::Tenant => format!("tenant/-/{name}"),
        }
        .to_ascii_lowercase()
    }

    fn sub(&self) -> Option<&str> {
        match self {
            At::ResourceGroup { sub, .. } | At::Subscription { sub } => Some(sub),
            _ => None,
        }
    }

    fn rg(&self) -> Option<&str> {
        match self {
            At::ResourceGroup { rg, .. } => Some(rg),
            _ => None,
        }
    }

    /// How ARM names the scope in its messages.
    fn name(&self) -> &'static str {
        match self {
            At::ResourceGroup { .. } => "resourceGroup",
            At::Subscription { .. } => "subscription",
            At::ManagementGroup { .. } => "managementGroup",
            At::Tenant => "tenant",
        }
    }

    /// The file name of the `$schema` a template deployed here declares.
    fn schema_file(&self) -> &'static str {
        match self {
            At::ResourceGroup { .. } => "/deploymenttemplate.json",
            At::Subscription { .. } => "/subscriptiondeploymenttemplate.json",
            At::ManagementGroup { .. } => "/managementgroupdeploymenttemplate.json",
            At::Tenant => "/tenantdeploymenttemplate.json",
        }
    }

    /// Whether a resource of this type can be deployed at this scope. Above subscriptions only
    /// the types that live there: policy and role resources (management group and tenant),
    /// management groups and subscription aliases (tenant), and nested deployments.
    fn allows(&self, ty: &str) -> bool {
        let ty = ty.to_ascii_lowercase();
        let authorization = [
            "microsoft.authorization/policydefinitions",
            "microsoft.authorization/policysetdefinitions",
            "microsoft.authorization/policyassignments",
            "microsoft.authorization/policyexemptions",
            "microsoft.authorization/roledefinitions",
            "microsoft.authorization/roleassignments",
            "microsoft.resources/deployments",
        ];
        match self {
            At::ResourceGroup { .. } | At::Subscription { .. } => true,
            At::ManagementGroup { .. } => authorization.contains(&ty.as_str()),
            At::Tenant => {
                authorization.contains(&ty.as_str())
                    || ty == "microsoft.management/managementgroups"
                    || ty == "microsoft.subscription/aliases"
            }
        }
    }
}

/// Resource types above subscriptions and their API versions, as the tenant's provider
/// metadata (`GET /providers/{namespace}`) lists them: (namespace, type, versions).
const TENANT_PROVIDERS: &[(&str, &str, &[&str])] = &[
    (
        "Microsoft.Authorization",
        "policyDefinitions",
        &["2023-04-01", "2021-06-01"],
    ),
    (
        "Microsoft.Authorization",
        "policySetDefinitions",
        &["2023-04-01"],
    ),
    (
        "Microsoft.Authorization",
        "policyAssignments",
        &["2024-04-01", "2023-04-01"],
    ),
    (
        "Microsoft.Authorization",
        "roleDefinitions",
        &["2022-04-01"],
    ),
    (
        "Microsoft.Management",
        "managementGroups",
        &["2023-04-01", "2021-04-01"],
    ),
    (
        "Microsoft.Subscription",
        "aliases",
        &["2024-08-01-preview", "2021-10-01"],
    ),
];

/// `/providers/Microsoft.Management/managementGroups/m` → `m`.
fn management_group_of(id: &str) -> Option<&str> {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    (parts.len() == 4
        && parts[0].eq_ignore_ascii_case("providers")
        && parts[1].eq_ignore_ascii_case("Microsoft.Management")
        && parts[2].eq_ignore_ascii_case("managementGroups"))
    .then(|| parts[3])
}

impl ArmState {
    /// Every token issued so far stops working (as if revoked or expired early).
    pub fn revoke_tokens(&mut self) {
        self.tokens.clear();
    }

    /// A resource as the server holds it: its state (location, sku, kind, properties, tags as
    /// last deployed or edited; a resource group's location and tags), or None when it does not
    /// exist.
    pub fn resource(&self, id: &str) -> Option<Value> {
        current_state(self, id)
    }

    /// Changes a resource behind the daemon's back, as someone would in the portal: `edit` gets
    /// its state (see [`ArmState::resource`]). False when there is no such resource.
    pub fn edit_resource(&mut self, id: &str, edit: impl FnOnce(&mut Value)) -> bool {
        if let Some(name) = group_name(id) {
            let Some(group) = self.resource_groups.get_mut(&name.to_ascii_lowercase()) else {
                return false;
            };
            let mut state = json!({"location": group["location"], "tags": group["tags"]});
            edit(&mut state);
            group["location"] = state["location"].clone();
            group["tags"] = state["tags"].clone();
            return true;
        }
        if !self.resources.iter().any(|r| r.eq_ignore_ascii_case(id)) {
            return false;
        }
        edit(
            self.resource_state
                .entry(id.to_ascii_lowercase())
                .or_insert_with(|| json!({})),
        );
        true
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

/// Where template expressions are evaluated: the parameter values, the template's variables,
/// the deployment's scope, and the outputs of the nested deployments evaluated so far.
#[derive(Clone, Copy)]
struct Scope<'a> {
    params: &'a Map<String, Value>,
    variables: &'a Map<String, Value>,
    at: &'a At,
    rg_location: Option<&'a str>,
    nested: &'a Map<String, Value>,
}

/// A template value with the expressions in its strings evaluated, at any depth. The server
/// knows a subset of ARM's language: string and integer literals, property and index access,
/// `parameters`, `variables`, `resourceGroup()`, `subscription()`, `format`, `concat`,
/// `union`, `createObject`, `equals`, `greater`/`less` (`OrEquals`), `not`, `and`, `or`, `if`,
/// `null`/`true`/`false`, `string`, `toLower`/`toUpper`, `resourceId`,
/// `subscriptionResourceId`, and `reference(...)` of a nested deployment (its `outputs`). An
/// expression beyond that is kept as written.
fn eval(v: &Value, s: &Scope) -> Value {
    eval_at(v, s, 0)
}

fn eval_at(v: &Value, s: &Scope, depth: usize) -> Value {
    match v {
        Value::String(x) => eval_string(x, s, depth),
        Value::Array(a) => Value::Array(a.iter().map(|x| eval_at(x, s, depth)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), eval_at(x, s, depth)))
                .collect(),
        ),
        _ => v.clone(),
    }
}

fn eval_string(x: &str, s: &Scope, depth: usize) -> Value {
    if let Some(rest) = x.strip_prefix("[[") {
        return Value::String(format!("[{rest}"));
    }
    let kept = || Value::String(x.to_string());
    let Some(inner) = x.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return kept();
    };
    let Some(tokens) = lex(inner) else {
        return kept();
    };
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
        scope: s,
        depth,
    };
    match p.expr() {
        Some(v) if p.pos == tokens.len() => v,
        _ => kept(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Int(i64),
    Ident(String),
    Sym(char),
}

fn lex(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return None,
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        text.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        text.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(text));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while chars.get(i).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
            }
            out.push(Tok::Int(
                chars[start..i].iter().collect::<String>().parse().ok()?,
            ));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|d| d.is_alphanumeric() || *d == '_')
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if "(),.[]".contains(c) {
            out.push(Tok::Sym(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// Evaluates while it parses: `call(args...)`, literals, then `.name` and `[index]`.
struct Parser<'t, 's> {
    tokens: &'t [Tok],
    pos: usize,
    scope: &'s Scope<'s>,
    depth: usize,
}

impl Parser<'_, '_> {
    fn next(&mut self) -> Option<Tok> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.tokens.get(self.pos) == Some(&Tok::Sym(c));
        if found {
            self.pos += 1;
        }
        found
    }

    fn expr(&mut self) -> Option<Value> {
        let mut v = match self.next()? {
            Tok::Str(s) => Value::String(s),
            Tok::Int(n) => json!(n),
            Tok::Ident(name) => {
                if !self.eat('(') {
                    return None;
                }
                let mut args = Vec::new();
                if !self.eat(')') {
                    loop {
                        args.push(self.expr()?);
                        if self.eat(',') {
                            continue;
                        }
                        if self.eat(')') {
                            break;
                        }
                        return None;
                    }
                }
                call(&name, &args, self.scope, self.depth)?
            }
            Tok::Sym(_) => return None,
        };
        loop {
            if self.eat('.') {
                let Some(Tok::Ident(prop)) = self.next() else {
                    return None;
                };
                v = v.get(&prop)?.clone();
            } else if self.eat('[') {
                let index = self.expr()?;
                if !self.eat(']') {
                    return None;
                }
                v = match index {
                    Value::String(k) => v.get(&k)?.clone(),
                    Value::Number(n) => v.get(usize::try_from(n.as_u64()?).ok()?)?.clone(),
                    _ => return None,
                };
            } else {
                return Some(v);
            }
        }
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn call(name: &str, args: &[Value], s: &Scope, depth: usize) -> Option<Value> {
    let str_arg = |i: usize| args.get(i).and_then(Value::as_str);
    let int_args = || Some((args.first()?.as_i64()?, args.get(1)?.as_i64()?));
    let bools = || {
        args.iter()
            .map(Value::as_bool)
            .collect::<Option<Vec<bool>>>()
    };
    let v = match name.to_ascii_lowercase().as_str() {
        "parameters" => s.params.get(str_arg(0)?)?.clone(),
        "variables" if depth < 16 => eval_at(s.variables.get(str_arg(0)?)?, s, depth + 1),
        "resourcegroup" => {
            let (sub, rg) = (s.at.sub()?, s.at.rg()?);
            let mut g = json!({
                "id": format!("/subscriptions/{sub}/resourceGroups/{rg}"),
                "name": rg,
            });
            if let Some(l) = s.rg_location {
                g["location"] = json!(l);
            }
            g
        }
        "subscription" => {
            let sub = s.at.sub()?;
            json!({"id": format!("/subscriptions/{sub}"), "subscriptionId": sub})
        }
        "managementgroup" => match s.at {
            At::ManagementGroup { group } => json!({
                "id": s.at.id(), "name": group, "type": "Microsoft.Management/managementGroups",
            }),
            _ => return None,
        },
        "tenant" => json!({"tenantId": TENANT}),
        "null" => Value::Null,
        "true" => json!(true),
        "false" => json!(false),
        "string" => json!(text_of(args.first()?)),
        "tolower" => json!(str_arg(0)?.to_lowercase()),
        "toupper" => json!(str_arg(0)?.to_uppercase()),
        "format" => {
            let mut out = str_arg(0)?.to_string();
            for (i, a) in args.iter().enumerate().skip(1) {
                out = out.replace(&format!("{{{}}}", i - 1), &text_of(a));
            }
            json!(out)
        }
        "concat" if args.iter().all(Value::is_array) => Value::Array(
            args.iter()
                .flat_map(|a| a.as_array().cloned().unwrap_or_default())
                .collect(),
        ),
        "concat" => json!(args.iter().map(text_of).collect::<String>()),
        "union" if args.iter().all(Value::is_object) => {
            let mut out = Map::new();
            for a in args {
                out.extend(a.as_object().cloned().unwrap_or_default());
            }
            Value::Object(out)
        }
        "union" if args.iter().all(Value::is_array) => {
            let mut out: Vec<Value> = Vec::new();
            for x in args
                .iter()
                .flat_map(|a| a.as_array().cloned().unwrap_or_default())
            {
                if !out.contains(&x) {
                    out.push(x);
                }
            }
            Value::Array(out)
        }
        "createobject" if args.len() % 2 == 0 => {
            let mut out = Map::new();
            for pair in args.chunks(2) {
                out.insert(pair[0].as_str()?.to_string(), pair[1].clone());
            }
            Value::Object(out)
        }
        "equals" => json!(args.first()? == args.get(1)?),
        "greater" => json!(int_args().map(|(a, b)| a > b)?),
        "greaterorequals" => json!(int_args().map(|(a, b)| a >= b)?),
        "less" => json!(int_args().map(|(a, b)| a < b)?),
        "lessorequals" => json!(int_args().map(|(a, b)| a <= b)?),
        "not" => json!(!args.first()?.as_bool()?),
        "and" => json!(bools()?.iter().all(|b| *b)),
        "or" => json!(bools()?.iter().any(|b| *b)),
        "if" => args
            .get(if args.first()?.as_bool()? { 1 } else { 2 })?
            .clone(),
        "resourceid" => json!(resource_id_of(s, args, false)?),
        "subscriptionresourceid" => json!(resource_id_of(s, args, true)?),
        // tenantResourceId(type, name...), extensionResourceId(scopeId, type, name...),
        // managementGroupResourceId([groupId], type, name...).
        "tenantresourceid" => json!(arm_id("", str_arg(0)?, &names_of(&args[1..])?)),
        "extensionresourceid" => {
            json!(arm_id(str_arg(0)?, str_arg(1)?, &names_of(args.get(2..)?)?))
        }
        "managementgroupresourceid" => {
            let explicit = !str_arg(0)?.contains('/');
            let root = match (explicit, s.at) {
                (true, _) => format!(
                    "/providers/Microsoft.Management/managementGroups/{}",
                    str_arg(0)?
                ),
                (false, At::ManagementGroup { .. }) => s.at.id(),
                (false, _) => return None,
            };
            let t = usize::from(explicit);
            json!(arm_id(&root, str_arg(t)?, &names_of(args.get(t + 1..)?)?))
        }
        "reference" => {
            // A nested deployment's outputs (a Bicep module's): reference(resourceId(
            // 'Microsoft.Resources/deployments', 'name'), 'version').outputs.o.value.
            let id = str_arg(0)?;
            let marker = "/providers/microsoft.resources/deployments/";
            let at = id.to_ascii_lowercase().rfind(marker)? + marker.len();
            json!({"outputs": s.nested.get(&id[at..])?.clone()})
        }
        _ => return None,
    };
    Some(v)
}

/// `resourceId([subscriptionId], [resourceGroupName], type, name...)` (or, at subscription
/// level, `subscriptionResourceId([subscriptionId], type, name...)`).
fn resource_id_of(s: &Scope, args: &[Value], subscription_level: bool) -> Option<String> {
    let args: Vec<&str> = args.iter().map(Value::as_str).collect::<Option<_>>()?;
    let t = args.iter().position(|a| a.contains('/'))?;
    let root = match (t, subscription_level) {
        (0, false) => s.at.id(),
        (0, true) => format!("/subscriptions/{}", s.at.sub()?),
        (1, false) => format!("/subscriptions/{}/resourceGroups/{}", s.at.sub()?, args[0]),
        (1, true) => format!("/subscriptions/{}", args[0]),
        (2, false) => format!("/subscriptions/{}/resourceGroups/{}", args[0], args[1]),
        _ => return None,
    };
    Some(arm_id(&root, args[t], &args[t + 1..].join("/")))
}

/// The names of a resource id function's arguments after the type, joined by `/`.
fn names_of(args: &[Value]) -> Option<String> {
    let names: Vec<&str> = args.iter().map(Value::as_str).collect::<Option<_>>()?;
    Some(names.join("/"))
}

/// A resource's id from the id of the scope it lives at (a resource group, a subscription, a
/// management group, or the tenant's empty one), its type and name, as ARM builds it:
/// `.../providers/NS/type/name`, a child's types and names interleaved
/// (`storageAccounts/blobServices` named `acct/default` →
/// `storageAccounts/acct/blobServices/default`); a resource group in a subscription is
/// `/subscriptions/s/resourceGroups/name`.
fn arm_id(scope: &str, ty: &str, name: &str) -> String {
    let in_subscription = {
        let parts: Vec<&str> = scope.trim_matches('/').split('/').collect();
        parts.len() == 2 && parts[0].eq_ignore_ascii_case("subscriptions")
    };
    if in_subscription && ty.eq_ignore_ascii_case("Microsoft.Resources/resourceGroups") {
        return format!("{scope}/resourceGroups/{name}");
    }
    let (namespace, types) = ty.split_once('/').unwrap_or((ty, ""));
    let types: Vec<&str> = types.split('/').collect();
    let names: Vec<&str> = name.split('/').collect();
    if types.len() != names.len() {
        return format!("{scope}/providers/{ty}/{name}");
    }
    let path: Vec<String> = types
        .iter()
        .zip(names)
        .map(|(t, n)| format!("{t}/{n}"))
        .collect();
    format!("{scope}/providers/{namespace}/{}", path.join("/"))
}

/// `/subscriptions/s/resourceGroups/g` → `g`.
fn group_name(id: &str) -> Option<&str> {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    (parts.len() == 4
        && parts[0].eq_ignore_ascii_case("subscriptions")
        && parts[2].eq_ignore_ascii_case("resourcegroups"))
    .then(|| parts[3])
}

/// The state a template declares for a resource: the parts of it a PUT sets.
fn declared_state(r: &Value, s: &Scope) -> Value {
    let mut state = Map::new();
    for key in [
        "location",
        "sku",
        "kind",
        "properties",
        "tags",
        "identity",
        "zones",
        "plan",
    ] {
        if let Some(v) = r.get(key) {
            state.insert(key.to_string(), eval(v, s));
        }
    }
    Value::Object(state)
}

fn is_module(r: &Value) -> bool {
    r["type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.Resources/deployments"))
        && r["properties"]["template"].is_object()
}

fn is_group(r: &Value) -> bool {
    r["type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.Resources/resourceGroups"))
}

/// What a deployment's template makes, evaluated.
struct Evaluated {
    /// Every resource (its modules' too): id and state as declared.
    resources: Vec<(String, Value)>,
    outputs: Value,
    /// Resource groups a subscription-scope template creates: (lowercase name, the group).
    groups: Vec<(String, Value)>,
}

/// Evaluates a template with its parameter values (defaults that are expressions evaluated
/// too): modules first (a nested deployment with its inner scope: its resources are the
/// deployment's, its outputs readable by the outer expressions), then the resources and the
/// outputs.
fn evaluate(st: &ArmState, at: &At, template: &Value, given: &Map<String, Value>) -> Evaluated {
    let rg_location = at
        .rg()
        .and_then(|rg| st.resource_groups.get(&rg.to_ascii_lowercase()))
        .and_then(|g| g["location"].as_str())
        .map(str::to_string);
    let none = Map::new();
    let variables = template["variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let base = Scope {
        params: given,
        variables: &variables,
        at,
        rg_location: rg_location.as_deref(),
        nested: &none,
    };
    let mut values = given.clone();
    for (pname, decl) in template["parameters"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        if let Some(d) = decl.get("defaultValue")
            && values.get(&pname) == Some(d)
        {
            values.insert(pname, eval(d, &base));
        }
    }
    let outer = Scope {
        params: &values,
        ..base
    };
    let resources = template["resources"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut nested_outputs = Map::new();
    let mut made = Vec::new();
    for r in resources.iter().filter(|r| is_module(r)) {
        let scope = Scope {
            nested: &nested_outputs,
            ..outer
        };
        let inner = &r["properties"]["template"];
        let mut inner_values = Map::new();
        for (pname, decl) in inner["parameters"].as_object().cloned().unwrap_or_default() {
            let v = r["properties"]["parameters"]
                .get(&pname)
                .and_then(|g| g.get("value"))
                .map(|v| eval(v, &scope))
                .or_else(|| decl.get("defaultValue").cloned())
                .unwrap_or(Value::Null);
            inner_values.insert(pname, v);
        }
        let inner_variables = inner["variables"].as_object().cloned().unwrap_or_default();
        let inner_scope = Scope {
            params: &inner_values,
            variables: &inner_variables,
            nested: &none,
            ..outer
        };
        for ir in inner["resources"].as_array().cloned().unwrap_or_default() {
            let ty = ir["type"].as_str().unwrap_or_default();
            let name = text_of(&eval(&ir["name"], &inner_scope));
            made.push((
                arm_id(&at.id(), ty, &name),
                declared_state(&ir, &inner_scope),
            ));
        }
        let mut outs = Map::new();
        for (oname, o) in inner["outputs"].as_object().cloned().unwrap_or_default() {
            outs.insert(
                oname,
                json!({"type": o["type"], "value": eval(&o["value"], &inner_scope)}),
            );
        }
        let dname = text_of(&eval(&r["name"], &scope));
        nested_outputs.insert(dname, Value::Object(outs));
    }
    let scope = Scope {
        nested: &nested_outputs,
        ..outer
    };
    let mut own = Vec::new();
    let mut groups = Vec::new();
    for r in resources.iter().filter(|r| !is_module(r)) {
        let ty = r["type"].as_str().unwrap_or_default();
        let name = text_of(&eval(&r["name"], &scope));
        let id = arm_id(&at.id(), ty, &name);
        let mut state = declared_state(r, &scope);
        if matches!(at, At::Subscription { .. }) && is_group(r) {
            if state.get("tags").is_none() {
                state["tags"] = json!({});
            }
            let group = json!({
                "id": id, "name": name, "location": state["location"], "tags": state["tags"],
                "properties": {"provisioningState": "Succeeded"},
            });
            groups.push((name.to_ascii_lowercase(), group));
        }
        own.push((id, state));
    }
    let mut outputs = Map::new();
    for (oname, o) in template["outputs"].as_object().cloned().unwrap_or_default() {
        outputs.insert(
            oname,
            json!({"type": o["type"], "value": eval(&o["value"], &scope)}),
        );
    }
    own.extend(made);
    Evaluated {
        resources: own,
        outputs: Value::Object(outputs),
        groups,
    }
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
                {"resourceType": "storageAccounts/blobServices", "apiVersions": ["2023-05-01"]},
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
        ("GET", ["subscriptions", _, "operationresults", op])
        | ("GET", ["providers", "microsoft.resources", "operationresults", op]) => {
            operation_result(&mut st, op)
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
            let at = At::ResourceGroup { sub: sub.to_string(), rg: segs[3].to_string() };
            let name = name.to_string();
            put_deployment(&mut st, &base, &at, &name, &body)
        }
        ("POST", ["subscriptions", sub, "resourcegroups", _, "providers", "microsoft.resources", "deployments", name, "whatif"]) => {
            let at = At::ResourceGroup { sub: sub.to_string(), rg: segs[3].to_string() };
            let name = name.to_string();
            what_if(&mut st, &base, &at, &name, &body)
        }
        ("POST", ["subscriptions", sub, "providers", "microsoft.resources", "deployments", name, "whatif"]) => {
            let at = At::Subscription { sub: sub.to_string() };
            let name = name.to_string();
            what_if(&mut st, &base, &at, &name, &body)
        }
        ("POST", ["subscriptions", sub, "resourcegroups", rg, "providers", "microsoft.resources", "deployments", name, "exporttemplate"]) => {
            export_template(&st, &format!("{sub}/{rg}/{name}"))
        }
        ("POST", ["subscriptions", sub, "providers", "microsoft.resources", "deployments", name, "exporttemplate"]) => {
            export_template(&st, &format!("{sub}/-/{name}"))
        }
        ("PUT", ["subscriptions", sub, "providers", "microsoft.resources", "deployments", name]) => {
            let at = At::Subscription { sub: sub.to_string() };
            let name = name.to_string();
            put_deployment(&mut st, &base, &at, &name, &body)
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
        // A resource, or a child resource (`.../type/name/childType/childName`).
        ("DELETE", ["subscriptions", _, "resourcegroups", _, "providers", _, rest @ ..]) if rest.len() >= 2 && rest.len() % 2 == 0 => {
            let versions = ["api-version=2023-05-01", "api-version=2024-01-01"];
            if !versions.iter().any(|v| req.query_string().contains(v)) {
                return error(400, "NoRegisteredProviderFound", "No registered resource provider found for this API version.");
            }
            let id = path.clone();
            let Some(pos) = st.resources.iter().position(|r| r.eq_ignore_ascii_case(&id)) else {
                return error(404, "ResourceNotFound", &format!("The Resource '{id}' was not found."));
            };
            st.resources.remove(pos);
            st.resource_state.remove(&id.to_ascii_lowercase());
            st.deleted.push(id);
            HttpResponse::Accepted()
                .insert_header(("Location", format!("{base}/subscriptions/x/operationresults/resdelete-{}?api-version=2021-04-01", st.deleted.len())))
                .insert_header(("Retry-After", "1"))
                .finish()
        }
        // Deployments at management group and tenant scope: PUT, GET, DELETE (the record),
        // operation status, cancel, what-if, exportTemplate.
        (m, ["providers", "microsoft.management", "managementgroups", _, "providers", "microsoft.resources", "deployments", name, rest @ ..]) => {
            let at = At::ManagementGroup { group: segs[3].to_string() };
            let (m, name, rest) = (m.to_string(), name.to_string(), rest.iter().map(|x| x.to_string()).collect::<Vec<_>>());
            scoped_deployment(&mut st, &base, &m, &at, &name, &rest, &body)
        }
        (m, ["providers", "microsoft.resources", "deployments", name, rest @ ..]) => {
            let (m, name, rest) = (m.to_string(), name.to_string(), rest.iter().map(|x| x.to_string()).collect::<Vec<_>>());
            scoped_deployment(&mut st, &base, &m, &At::Tenant, &name, &rest, &body)
        }
        // The tenant's provider metadata (the types that live above subscriptions).
        ("GET", ["providers", ns]) => {
            let types: Vec<Value> = TENANT_PROVIDERS
                .iter()
                .filter(|(n, _, _)| n.eq_ignore_ascii_case(ns))
                .map(|(_, t, v)| json!({"resourceType": t, "apiVersions": v}))
                .collect();
            if types.is_empty() {
                return error(404, "InvalidResourceNamespace", &format!("The resource namespace '{}' is invalid.", segs[1]));
            }
            HttpResponse::Ok().json(json!({"namespace": segs[1], "resourceTypes": types}))
        }
        // A resource above subscriptions: a management group's (policy definition, ...) or the
        // tenant's (a management group, ...).
        ("DELETE", ["providers", ..]) => delete_above_subscriptions(&mut st, &base, &path, req.query_string()),
        _ => error(404, "InvalidResourceType", &format!("no route for {method} {path}")),
    }
}

/// The deployment routes at management group and tenant scope (`rest`: what follows
/// `.../deployments/{name}`).
fn scoped_deployment(
    st: &mut ArmState,
    base: &str,
    method: &str,
    at: &At,
    name: &str,
    rest: &[String],
    body: &Value,
) -> HttpResponse {
    let key = at.key(name);
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (method, rest.as_slice()) {
        ("PUT", []) => put_deployment(st, base, at, name, body),
        ("GET", []) => match advance(st, &key) {
            Some(view) => HttpResponse::Ok()
                .insert_header(("Retry-After", "1"))
                .json(view),
            None => error(
                404,
                "DeploymentNotFound",
                &format!("Deployment '{name}' could not be found."),
            ),
        },
        // Deleting the record leaves the resources it made.
        ("DELETE", []) => match st.deployments.get(&key).map(|d| d.state.clone()) {
            None => HttpResponse::NoContent().finish(),
            Some(state) if ["Accepted", "Running"].contains(&state.as_str()) => error(
                409,
                "DeploymentActive",
                &format!("The deployment '{name}' is still active and cannot be deleted."),
            ),
            Some(_) => {
                st.deployments.remove(&key);
                HttpResponse::Accepted()
                    .insert_header(("Location", format!("{base}/providers/Microsoft.Resources/operationresults/resdelete-record?api-version=2024-03-01")))
                    .insert_header(("Retry-After", "1"))
                    .finish()
            }
        },
        ("GET", ["operationstatuses", _]) => operation_status(st, &key),
        ("POST", ["cancel"]) => cancel_deployment(st, &key),
        ("POST", ["whatif"]) => what_if(st, base, at, name, body),
        ("POST", ["exporttemplate"]) => export_template(st, &key),
        _ => error(
            404,
            "InvalidResourceType",
            &format!("no route for {method} {} deployment {name}", at.name()),
        ),
    }
}

/// DELETE of a resource above subscriptions, with an API version its provider lists (the
/// tenant's provider metadata); a management group deleted no longer takes deployments.
fn delete_above_subscriptions(
    st: &mut ArmState,
    base: &str,
    id: &str,
    query: &str,
) -> HttpResponse {
    let lower = id.to_ascii_lowercase();
    let Some(at) = lower.rfind("/providers/") else {
        return error(404, "InvalidResourceType", "no resource type");
    };
    let rest: Vec<&str> = id[at + "/providers/".len()..].split('/').collect();
    let ty: Vec<&str> = rest.iter().skip(1).step_by(2).copied().collect();
    let known = TENANT_PROVIDERS.iter().find(|(ns, t, _)| {
        rest.first().is_some_and(|n| n.eq_ignore_ascii_case(ns))
            && t.eq_ignore_ascii_case(&ty.join("/"))
    });
    let Some((_, _, versions)) = known else {
        return error(
            400,
            "NoRegisteredProviderFound",
            "No registered resource provider found for this resource type.",
        );
    };
    if !versions
        .iter()
        .any(|v| query.contains(&format!("api-version={v}")))
    {
        return error(
            400,
            "NoRegisteredProviderFound",
            "No registered resource provider found for this API version.",
        );
    }
    let Some(pos) = st.resources.iter().position(|r| r.eq_ignore_ascii_case(id)) else {
        return error(
            404,
            "ResourceNotFound",
            &format!("The Resource '{id}' was not found."),
        );
    };
    st.resources.remove(pos);
    st.resource_state.remove(&lower);
    if let Some(group) = management_group_of(id) {
        st.management_groups.remove(&group.to_ascii_lowercase());
    }
    st.deleted.push(id.to_string());
    HttpResponse::Accepted()
        .insert_header(("Location", format!("{base}/providers/Microsoft.Resources/operationresults/resdelete-{}?api-version=2021-04-01", st.deleted.len())))
        .insert_header(("Retry-After", "1"))
        .finish()
}

/// A long-running operation's `Location`: a resource group's or a resource's delete, a
/// what-if (its result once done).
fn operation_result(st: &mut ArmState, op: &str) -> HttpResponse {
    if let Some(rg) = op.strip_prefix("rgdelete-") {
        let polls = st.deleting_groups.entry(rg.to_string()).or_insert(0);
        *polls += 1;
        if *polls < 2 {
            return HttpResponse::Accepted()
                .insert_header(("Retry-After", "1"))
                .finish();
        }
        st.resource_groups.remove(rg);
        let prefix = format!("/resourcegroups/{rg}/");
        st.resources
            .retain(|r| !r.to_ascii_lowercase().contains(&prefix));
        return HttpResponse::Ok().finish();
    }
    if let Some(w) = st.what_ifs.get_mut(op) {
        w.polls += 1;
        if w.polls < 2 {
            return HttpResponse::Accepted()
                .insert_header(("Retry-After", "1"))
                .finish();
        }
        return HttpResponse::Ok().json(w.result.clone());
    }
    if let Some(id) = op.strip_prefix("resdelete-") {
        let _ = id;
        return HttpResponse::Ok().finish();
    }
    error(404, "NotFound", "unknown operation")
}

/// PUT of a deployment at any scope.
fn put_deployment(
    st: &mut ArmState,
    base: &str,
    at: &At,
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
    let key = at.key(name);
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
    let values = match check_request(st, at, body, &["Incremental"]) {
        Ok(values) => values,
        Err(answer) => return *answer,
    };
    let template = &body["properties"]["template"];
    let made = evaluate(st, at, template, &values);
    st.deployment_puts += 1;
    let dep = Deployment {
        state: "Accepted".into(),
        reads: 0,
        fail: values.get("shouldFail") == Some(&json!(true)),
        slow: values.get("slow") == Some(&json!(true)),
        outputs: made.outputs,
        output_resources: made.resources.iter().map(|(id, _)| id.clone()).collect(),
        parameters: Value::Object(values),
        groups: made.groups,
        template: template.clone(),
        resources: made.resources,
    };
    st.deployments.insert(key, dep);
    let scope = at.id();
    HttpResponse::Created()
                .insert_header(("Azure-AsyncOperation", format!("{base}{scope}/providers/Microsoft.Resources/deployments/{name}/operationStatuses/op1?api-version=2024-03-01")))
                .insert_header(("Retry-After", "1"))
                .json(json!({"name": name, "properties": {"provisioningState": "Accepted", "mode": "Incremental"}}))
}

/// What ARM checks of a deployment request before it deploys or previews anything (a PUT and
/// a what-if alike): the resource group exists, the template's schema is the scope's, a
/// deployment above a resource group has a location for its record, the mode, the template,
/// and the parameters (`{name: {value}}`) against their declarations; every declared one
/// without a default must be given. Gives the parameter values (given or default) or ARM's
/// answer.
fn check_request(
    st: &ArmState,
    at: &At,
    body: &Value,
    modes: &[&str],
) -> Result<Map<String, Value>, Box<HttpResponse>> {
    if let At::ManagementGroup { group } = at
        && !st.management_groups.contains(&group.to_ascii_lowercase())
    {
        return Err(error(
            404,
            "ManagementGroupNotFound",
            &format!("The management group '{group}' could not be found."),
        )
        .into());
    }
    if let Some(rg) = at.rg()
        && !st.resource_groups.contains_key(&rg.to_ascii_lowercase())
    {
        return Err(error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{rg}' could not be found."),
        )
        .into());
    }
    let schema = body["properties"]["template"]["$schema"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let want = at.schema_file();
    if !schema.is_empty() && !schema.trim_end_matches('#').ends_with(want) {
        return Err(error(
            400,
            "InvalidSchema",
            &format!(
                "The template schema '{schema}' is not supported for a deployment at this scope."
            ),
        )
        .into());
    }
    if at.rg().is_none() && !body["location"].is_string() {
        return Err(error(
            400,
            "InvalidDeployment",
            "The 'location' property must be specified for the template deployment.",
        )
        .into());
    }
    let props = &body["properties"];
    if !props["mode"].as_str().is_some_and(|m| modes.contains(&m)) {
        return Err(error(
            400,
            "InvalidDeploymentMode",
            &format!("mode must be {}", modes.join(" or ")),
        )
        .into());
    }
    let template = &props["template"];
    if !template["$schema"].is_string() || !template["resources"].is_array() {
        return Err(error(
            400,
            "InvalidTemplate",
            "Deployment template validation failed: the template must have $schema and resources.",
        )
        .into());
    }
    let invalid = |message: String| {
        Box::new(HttpResponse::BadRequest().json(json!({"error": {"code": "InvalidTemplate", "message": format!("Deployment template validation failed: '{message}'.")}})))
    };
    validate_template(template).map_err(invalid)?;
    // Above subscriptions only the resource types that live there can be deployed.
    for r in template["resources"].as_array().into_iter().flatten() {
        let ty = r["type"].as_str().unwrap_or_default();
        if !at.allows(ty) {
            return Err(error(
                400,
                "InvalidTemplate",
                &format!(
                    "Deployment template validation failed: 'The resource type '{ty}' cannot be deployed at the '{}' scope.'",
                    at.name()
                ),
            )
            .into());
        }
    }
    let mut values = Map::new();
    let given = props["parameters"].as_object().cloned().unwrap_or_default();
    let declared = template["parameters"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (pname, decl) in &declared {
        match given.get(pname).and_then(|g| g.get("value")) {
            Some(v) => {
                check_parameter(pname, decl, v).map_err(invalid)?;
                values.insert(pname.clone(), v.clone());
            }
            None => match decl.get("defaultValue") {
                Some(d) => {
                    values.insert(pname.clone(), d.clone());
                }
                None => {
                    return Err(Box::new(HttpResponse::BadRequest().json(json!({"error": {"code": "InvalidTemplate", "message": "Deployment template validation failed.",
                                "details": [{"code": "MissingParameter", "message": format!("The value for the template parameter '{pname}' is not provided.")}]}}))));
                }
            },
        }
    }
    if let Some(pname) = given.keys().find(|p| !declared.contains_key(*p)) {
        return Err(error(
            400,
            "InvalidTemplate",
            &format!(
                "The template parameters '{pname}' in the parameters file are not valid; they are not present in the original template."
            ),
        )
        .into());
    }
    Ok(values)
}

/// `POST .../deployments/{name}/whatIf` at resource group scope (`rg`) or subscription scope
/// (None): the request is checked as a PUT is (mode Incremental or Complete), the template
/// evaluated, and its resources compared with the ones held; the answer is 202 with a
/// `Location` to poll for the result.
fn what_if(st: &mut ArmState, base: &str, at: &At, name: &str, body: &Value) -> HttpResponse {
    st.what_if_requests.push(
        json!({"deployment": name, "resourceGroup": at.rg(), "scope": at.id(), "body": body}),
    );
    let values = match check_request(st, at, body, &["Incremental", "Complete"]) {
        Ok(values) => values,
        Err(answer) => return *answer,
    };
    let made = evaluate(st, at, &body["properties"]["template"], &values);
    let complete = body["properties"]["mode"] == "Complete";
    let changes = predict_changes(st, at, &made, complete);
    let op = format!("whatif-{}", st.what_if_requests.len());
    st.what_ifs.insert(
        op.clone(),
        WhatIf {
            polls: 0,
            result: json!({"status": "Succeeded", "properties": {"changes": changes}}),
        },
    );
    let results = match at.sub() {
        Some(sub) => format!("{base}/subscriptions/{sub}/operationresults"),
        None => format!("{base}/providers/Microsoft.Resources/operationresults"),
    };
    HttpResponse::Accepted()
        .insert_header(("Location", format!("{results}/{op}?api-version=2024-03-01")))
        .insert_header(("Retry-After", "1"))
        .finish()
}

/// A resource's state as held: a resource group's location and tags, another resource's
/// stored state; None when it does not exist.
fn current_state(st: &ArmState, id: &str) -> Option<Value> {
    if let Some(name) = group_name(id) {
        let g = st.resource_groups.get(&name.to_ascii_lowercase())?;
        return Some(json!({"location": g["location"], "tags": g["tags"]}));
    }
    st.resources
        .iter()
        .any(|r| r.eq_ignore_ascii_case(id))
        .then(|| {
            st.resource_state
                .get(&id.to_ascii_lowercase())
                .cloned()
                .unwrap_or_else(|| json!({}))
        })
}

/// `{id, ...state}`, as what-if shows a resource before or after.
fn with_id(id: &str, state: &Value) -> Value {
    let mut view = Map::new();
    view.insert("id".into(), json!(id));
    view.extend(state.as_object().cloned().unwrap_or_default());
    Value::Object(view)
}

/// What-if's changes: each resource of the template is Create (not held), Modify (held with
/// another state; `delta` says where) or NoChange; what the scope holds beyond the template is
/// Ignore (mode Incremental) or Delete (mode Complete).
fn predict_changes(st: &ArmState, at: &At, made: &Evaluated, complete: bool) -> Vec<Value> {
    let mut changes = Vec::new();
    let mut declared = HashSet::new();
    for (id, after) in &made.resources {
        if !declared.insert(id.to_ascii_lowercase()) {
            continue;
        }
        let change = match current_state(st, id) {
            None => {
                json!({"resourceId": id, "changeType": "Create", "before": null, "after": with_id(id, after)})
            }
            Some(before) => {
                let mut delta = Vec::new();
                diff("", &before, after, &mut delta);
                let kind = if delta.is_empty() {
                    "NoChange"
                } else {
                    "Modify"
                };
                json!({"resourceId": id, "changeType": kind, "before": with_id(id, &before),
                       "after": with_id(id, after), "delta": delta})
            }
        };
        changes.push(change);
    }
    let held: Vec<String> = match at {
        At::ResourceGroup { sub, rg } => {
            let prefix = format!(
                "/subscriptions/{}/resourcegroups/{}/",
                sub.to_ascii_lowercase(),
                rg.to_ascii_lowercase()
            );
            st.resources
                .iter()
                .filter(|r| r.to_ascii_lowercase().starts_with(&prefix))
                .cloned()
                .collect()
        }
        At::Subscription { sub } => {
            let prefix = format!("/subscriptions/{}/", sub.to_ascii_lowercase());
            st.resource_groups
                .values()
                .filter_map(|g| g["id"].as_str())
                .filter(|id| id.to_ascii_lowercase().starts_with(&prefix))
                .map(str::to_string)
                .collect()
        }
        At::ManagementGroup { .. } => {
            let prefix = format!("{}/", at.id().to_ascii_lowercase());
            st.resources
                .iter()
                .filter(|r| r.to_ascii_lowercase().starts_with(&prefix))
                .cloned()
                .collect()
        }
        // The tenant's own resources: `/providers/NS/type/name`, under no other scope.
        At::Tenant => st
            .resources
            .iter()
            .filter(|r| {
                let lower = r.to_ascii_lowercase();
                lower.starts_with("/providers/") && lower.matches("/providers/").count() == 1
            })
            .cloned()
            .collect(),
    };
    for id in held {
        if declared.contains(&id.to_ascii_lowercase()) {
            continue;
        }
        let before = current_state(st, &id).unwrap_or_default();
        let kind = if complete { "Delete" } else { "Ignore" };
        changes.push(json!({"resourceId": id, "changeType": kind, "before": with_id(&id, &before), "after": null}));
    }
    changes
}

/// The property changes from `before` to `after`, leaf by leaf: `{path, propertyChangeType:
/// Create | Delete | Modify, before, after}` (arrays compared whole).
fn diff(path: &str, before: &Value, after: &Value, out: &mut Vec<Value>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for k in keys {
                match (b.get(k), a.get(k)) {
                    (Some(x), Some(y)) => diff(&at(k), x, y, out),
                    (None, Some(y)) => {
                        out.push(json!({"path": at(k), "propertyChangeType": "Create", "after": y}))
                    }
                    (Some(x), None) => out
                        .push(json!({"path": at(k), "propertyChangeType": "Delete", "before": x})),
                    (None, None) => {}
                }
            }
        }
        (b, a) if b != a => {
            out.push(json!({"path": path, "propertyChangeType": "Modify", "before": b, "after": a}))
        }
        _ => {}
    }
}

/// `POST .../deployments/{name}/exportTemplate`: the template the deployment was made with.
fn export_template(st: &ArmState, key: &str) -> HttpResponse {
    match st.deployments.get(key) {
        Some(d) => HttpResponse::Ok().json(json!({"template": d.template})),
        None => error(404, "DeploymentNotFound", "not found"),
    }
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
/// while slow). Succeeded registers its resources with their declared state.
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
                created = d.resources.clone();
            }
        }
        _ => {}
    }
    let d = d.clone();
    // A PUT sets each resource's state to the one declared.
    for (r, state) in created {
        if let Some((gname, group)) = d
            .groups
            .iter()
            .find(|(_, g)| g["id"].as_str() == Some(r.as_str()))
        {
            st.resource_groups.insert(gname.clone(), group.clone());
            continue;
        }
        st.resource_state.insert(r.to_ascii_lowercase(), state);
        if let Some(group) = management_group_of(&r) {
            st.management_groups.insert(group.to_ascii_lowercase());
        }
        if !st.resources.contains(&r) {
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

//! `POST /deploy` and the `/deployments` endpoints.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::stream;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::access::{self, AuditContext};
use super::envelope::{self, AppError};
use super::templates::{parse_provider, template_not_found};
use crate::actors::persistence::{
    CancelDeployment, CreateDeployment, GetDeployment, GetLogs, ListDeployments, LogScope,
    PersistError, QueueRun,
};
use crate::actors::supervisor::{CancelRun, Wake};
use crate::catalog::{TargetScope, ValidationErrors};
use crate::domain::{
    CancelResult, Deployment, DeploymentId, DeploymentStatus, DriftStatus, ListFilter,
    NewDeployment, NewRun, ProviderType, RunKind,
};

const MAX_FIELD_LEN: usize = 256;
const MAX_LIST_LIMIT: i64 = 500;
const MAX_LOG_LIMIT: i64 = 5000;
/// A log stream with nothing to say sends a comment this often.
const SSE_KEEPALIVE: Duration = Duration::from_secs(15);

/// The body of `POST /deploy` once checked.
struct DeployRequest {
    provider_type: ProviderType,
    template_name: String,
    resource_group: Option<String>,
    subscription_id: Option<String>,
    location: Option<String>,
    /// The management group a management-group-scope Azure template deploys at.
    management_group: Option<String>,
    parameters: Map<String, Value>,
    /// false: the deploy run stops at `planned` until it is applied or discarded.
    auto_apply: bool,
}

/// Whether a string or key anywhere in `v` holds U+0000.
fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// A free-text filter: at most `MAX_FIELD_LEN` characters, no control characters.
fn text_filter(field: &str, value: Option<String>) -> Result<Option<String>, AppError> {
    match value {
        Some(s) if s.chars().any(char::is_control) => Err(AppError::invalid(
            field,
            "may not contain control characters",
        )),
        Some(s) if s.chars().count() > MAX_FIELD_LEN => Err(AppError::invalid(
            field,
            format!("must be at most {MAX_FIELD_LEN} characters"),
        )),
        other => Ok(other),
    }
}

/// Checks every field and reports all problems at once.
/// `scope_of` tells where an Azure template deploys (a resource group unless it says
/// otherwise), which decides whether `resource_group` is required or unused.
fn parse_deploy(
    body: Value,
    scope_of: impl Fn(ProviderType, &str) -> TargetScope,
) -> Result<DeployRequest, AppError> {
    let Value::Object(mut body) = body else {
        return Err(AppError::invalid("body", "must be a JSON object"));
    };
    let mut errors = ValidationErrors::default();
    let mut text = |body: &mut Map<String, Value>, field: &str, required: bool| -> Option<String> {
        match body.remove(field) {
            None | Some(Value::Null) => {
                if required {
                    errors.add(field, "is required");
                }
                None
            }
            Some(Value::String(s)) => {
                let s = s.trim().to_string();
                if s.is_empty() && required {
                    errors.add(field, "may not be empty");
                } else if s.chars().count() > MAX_FIELD_LEN {
                    errors.add(field, format!("must be at most {MAX_FIELD_LEN} characters"));
                } else if field != "template_name" && s.chars().any(char::is_control) {
                    // (a template name that can't exist is simply not found: 404)
                    errors.add(field, "may not contain control characters");
                } else if !s.is_empty() {
                    return Some(s);
                }
                None
            }
            Some(_) => {
                errors.add(field, "must be a string");
                None
            }
        }
    };
    let template_name = text(&mut body, "template_name", true);
    let provider = text(&mut body, "provider_type", true);
    let resource_group = text(&mut body, "resource_group", false);
    let subscription_id = text(&mut body, "subscription_id", false);
    let location = text(&mut body, "location", false);
    let management_group = text(&mut body, "management_group", false);
    let parameters = parameters_field(&mut body, &mut errors);
    let auto_apply = auto_apply_field(&mut body, &mut errors);
    for unknown in body.keys() {
        errors.add(
            unknown.clone(),
            "unknown field (expected template_name, provider_type, subscription_id, resource_group, management_group, location, parameters, auto_apply)",
        );
    }
    if let Some(loc) = &location
        && !loc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ' ')
    {
        errors.add(
            "location",
            "must be a region name such as us-east-1 or westeurope",
        );
    }
    let provider_type = match provider.as_deref().map(parse_provider) {
        Some(Ok(p)) => Some(p),
        Some(Err(AppError::Validation(e))) => {
            errors.merge(e);
            None
        }
        _ => None,
    };
    if provider_type == Some(ProviderType::Azure) {
        let scope = template_name
            .as_deref()
            .map(|n| scope_of(ProviderType::Azure, n))
            .unwrap_or_default();
        check_scope_fields(
            scope,
            &ScopeFields {
                resource_group: resource_group.is_some(),
                subscription_id: subscription_id.is_some(),
                management_group: management_group.is_some(),
                location: location.is_some(),
            },
            &mut errors,
        );
        match &subscription_id {
            None if matches!(
                scope,
                TargetScope::ResourceGroup | TargetScope::Subscription
            ) =>
            {
                errors.add("subscription_id", "is required for Azure deployments")
            }
            None => {}
            Some(s) if !super::resource_groups::valid_subscription(s) => errors.add(
                "subscription_id",
                "must be a subscription id (letters, digits and hyphens)",
            ),
            Some(_) => {}
        }
        if let Some(rg) = &resource_group
            && !super::resource_groups::valid_resource_group(rg)
        {
            errors.add(
                "resource_group",
                "must be 1-90 letters, digits or -_.() and not end with a period",
            );
        }
        if let Some(group) = &management_group
            && !valid_management_group(group)
        {
            errors.add(
                "management_group",
                "must be a management group id: 1-90 ASCII letters, digits or -_.() and not end with a period",
            );
        }
    } else if management_group.is_some() {
        errors.add(
            "management_group",
            "is only for Azure templates that deploy at managementGroup scope",
        );
    }
    match (errors.is_empty(), provider_type, template_name) {
        (true, Some(provider_type), Some(template_name)) => Ok(DeployRequest {
            provider_type,
            template_name,
            resource_group,
            subscription_id,
            location,
            management_group,
            parameters,
            auto_apply,
        }),
        _ => Err(AppError::Validation(errors)),
    }
}

/// Which of the scope-dependent fields a deploy request gives.
struct ScopeFields {
    resource_group: bool,
    subscription_id: bool,
    management_group: bool,
    location: bool,
}

/// What an Azure template's target scope asks of a request: a resource group (resource group
/// scope); a location and no resource group (subscription scope: the template creates its
/// groups); a management group and a location and neither subscription nor resource group
/// (management group scope); a location only (tenant scope). A field the scope does not use is
/// refused rather than ignored. (`subscription_id` itself is checked by the caller.)
fn check_scope_fields(scope: TargetScope, given: &ScopeFields, errors: &mut ValidationErrors) {
    let unused = |errors: &mut ValidationErrors, field: &str, why: &str| {
        errors.add(
            field,
            format!(
                "is not used: the template deploys at {} scope{why}",
                scope.name()
            ),
        );
    };
    let location_required = |errors: &mut ValidationErrors, what: &str| {
        errors.add(
            "location",
            format!("is required for a {what}-scope deployment (where ARM keeps its record)"),
        );
    };
    match scope {
        TargetScope::ResourceGroup => {
            if !given.resource_group {
                errors.add("resource_group", "is required for Azure deployments");
            }
        }
        TargetScope::Subscription => {
            if given.resource_group {
                unused(
                    errors,
                    "resource_group",
                    " and creates its resource groups itself",
                );
            }
            if !given.location {
                location_required(errors, "subscription");
            }
        }
        TargetScope::ManagementGroup => {
            if given.resource_group {
                unused(errors, "resource_group", "");
            }
            if given.subscription_id {
                unused(errors, "subscription_id", " (give management_group)");
            }
            if !given.management_group {
                errors.add(
                    "management_group",
                    "is required: the template deploys at managementGroup scope (the management group id)",
                );
            }
            if !given.location {
                location_required(errors, "management-group");
            }
        }
        TargetScope::Tenant => {
            if given.resource_group {
                unused(errors, "resource_group", "");
            }
            if given.subscription_id {
                unused(errors, "subscription_id", "");
            }
            if !given.location {
                location_required(errors, "tenant");
            }
        }
    }
    if given.management_group && scope != TargetScope::ManagementGroup {
        unused(errors, "management_group", "");
    }
}

/// A management group id as Azure allows it: 1-90 ASCII letters, digits, `-_().`, not ending
/// with a period.
fn valid_management_group(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 90
        && !id.ends_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
}

/// The `parameters` object of a request body (absent: none); a NUL anywhere is refused.
pub(super) fn parameters_field(
    body: &mut Map<String, Value>,
    errors: &mut ValidationErrors,
) -> Map<String, Value> {
    let parameters = match body.remove("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            errors.add("parameters", "must be an object");
            Map::new()
        }
    };
    // PostgreSQL's JSON cannot hold U+0000, and no tool takes it as a parameter value.
    for (name, value) in &parameters {
        if name.contains('\0') || contains_nul(value) {
            errors.add(
                format!("parameters.{name}"),
                "may not contain the NUL character (U+0000)",
            );
        }
    }
    parameters
}

/// The `auto_apply` flag of a request body (absent: true, today's behaviour).
pub(super) fn auto_apply_field(
    body: &mut Map<String, Value>,
    errors: &mut ValidationErrors,
) -> bool {
    match body.remove("auto_apply") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            errors.add("auto_apply", "must be true or false");
            true
        }
    }
}

/// Checks and prepares a run's parameters against its template: validated like `POST /deploy`
/// (422 naming each field), defaults filled in, sensitive values sealed. A run that waits for a
/// decision keeps a plan file holding every variable's value: without a secrets key it is
/// refused for a template with sensitive parameters.
pub(super) fn prepare_parameters(
    state: &AppState,
    template: &crate::catalog::Template,
    given: &Map<String, Value>,
    saves_plan: bool,
) -> Result<Map<String, Value>, AppError> {
    template.validate(given).map_err(AppError::Validation)?;
    let mut parameters = template.effective_parameters(given);
    let sensitive: Vec<&str> = template.sensitive_parameters().collect();
    let key = state.secret_key.as_ref().as_ref();
    if saves_plan && key.is_none() && !sensitive.is_empty() {
        return Err(AppError::invalid(
            "auto_apply",
            format!(
                "a planned run keeps its plan, which holds the values of the template's sensitive parameters ({}); this daemon has no secrets key to store it encrypted (set secrets.key_file)",
                sensitive.join(", ")
            ),
        ));
    }
    if let Err(names) = crate::secrets::seal(&mut parameters, &sensitive, key) {
        let mut errors = ValidationErrors::default();
        for n in names {
            errors.add(
                format!("parameters.{n}"),
                "is sensitive and this daemon has no secrets key to store it encrypted (set secrets.key_file)",
            );
        }
        return Err(AppError::Validation(errors));
    }
    Ok(parameters)
}

pub async fn deploy(
    state: web::Data<AppState>,
    req: HttpRequest,
    audit: AuditContext,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    accept(&state, &req, &audit, body.into_inner())
        .await
        .map(|(_, res)| res)
}

/// Checks a deploy request and commits it (with its audit row): the deployment, and the 202
/// that answers it.
pub(super) async fn accept(
    state: &AppState,
    req: &HttpRequest,
    audit: &AuditContext,
    body: Value,
) -> Result<(Deployment, HttpResponse), AppError> {
    let request = {
        let catalog = state.catalog.get();
        parse_deploy(body, |p, name| {
            catalog
                .find(p, name)
                .map(|t| t.target_scope)
                .unwrap_or_default()
        })?
    };
    let idempotency_key = match req.headers().get("Idempotency-Key") {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .map_err(|_| AppError::invalid("Idempotency-Key", "must be printable ASCII"))?;
            if key.is_empty() || key.len() > 255 {
                return Err(AppError::invalid(
                    "Idempotency-Key",
                    "must be 1 to 255 characters",
                ));
            }
            Some(key.to_string())
        }
    };
    let catalog = state.catalog.get();
    let template = catalog
        .find(request.provider_type, &request.template_name)
        .ok_or_else(|| template_not_found(request.provider_type, &request.template_name))?;
    if let Some(err) = &template.error {
        return Err(AppError::invalid(
            "template_name",
            format!("template {} cannot be used: {err}", template.name),
        ));
    }
    if let Some(reason) = super::meta::not_configured(state, request.provider_type) {
        return Err(AppError::ProviderNotConfigured(reason));
    }
    let parameters = prepare_parameters(state, template, &request.parameters, !request.auto_apply)?;
    let mut run = NewRun::new(RunKind::Deploy, parameters.clone());
    run.auto_apply = request.auto_apply;
    run.requested_by = Some(audit.caller.name.clone());

    let new = NewDeployment {
        id: DeploymentId::generate(),
        provider_type: request.provider_type,
        template_name: template.name.clone(),
        resource_group: request.resource_group,
        subscription_id: request.subscription_id,
        location: request.location,
        management_group: request.management_group,
        parameters,
        idempotency_key,
        requested_by: Some(audit.caller.name.clone()),
    };
    // Committed before we answer (with its audit row): the row is the queue entry.
    let created = state
        .persistence
        .accept(CreateDeployment(new, run, Some(audit.entry(202, None))))
        .await?;
    let d = created.deployment;
    if created.created {
        tracing::info!(deployment.id = %d.id, template = %d.template_name, provider_type = %d.provider_type, "deployment accepted");
        state.supervisor.do_send(Wake);
    }
    let message = format!("deployment {} accepted", d.id);
    let res = access::audited(
        HttpResponse::build(StatusCode::ACCEPTED)
            .insert_header(("Location", format!("/deployments/{}", d.id)))
            .json(json!({
                "success": true,
                "message": message,
                "data": {
                    "deployment_id": d.id,
                    "task_id": d.id,
                    "status": d.status,
                    "resource_group": d.resource_group,
                    "provider": d.provider_type,
                    "template": d.template_name,
                    "message": message,
                },
                "error": null,
                "timestamp": envelope::timestamp(),
            })),
    );
    Ok((d, res))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    provider_type: Option<String>,
    template_name: Option<String>,
    resource_group: Option<String>,
    drift: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let (rows, next_cursor) = list_page(&state, q.into_inner()).await?;
    let catalog = state.catalog.get();
    let views: Vec<Value> = rows.iter().map(|d| view(d, &catalog)).collect();
    Ok(envelope::ok(
        format!("{} deployments", views.len()),
        json!({ "deployments": views, "count": views.len(), "next_cursor": next_cursor }),
    ))
}

/// One page of deployments by the list's filters, and the cursor of the next page.
pub(super) async fn list_page(
    state: &AppState,
    q: ListQuery,
) -> Result<(Vec<Deployment>, Option<String>), AppError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(AppError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIST_LIMIT}"),
        ));
    }
    let status = match q.status {
        Some(s) => Some(
            s.parse::<DeploymentStatus>()
                .map_err(|_| {
                    AppError::invalid(
                        "status",
                        "must be one of pending, running, planned, completed, failed, cancelled, destroyed",
                    )
                })?
                .as_str()
                .to_string(),
        ),
        None => None,
    };
    let provider_type = q
        .provider_type
        .as_deref()
        .map(parse_provider)
        .transpose()?
        .map(|p| p.as_str().to_string());
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let template_name = text_filter("template_name", q.template_name)?;
    let resource_group = text_filter("resource_group", q.resource_group)?;
    let drift = match q.drift.as_deref() {
        None => None,
        Some(d) => Some(DriftStatus::parse(d).ok_or_else(|| {
            AppError::invalid("drift", "must be one of in_sync, drifted, unknown")
        })?),
    };
    let filter = ListFilter {
        status,
        drift,
        provider_type,
        template_name: template_name
            .as_deref()
            .map(|t| crate::catalog::normalize_name(t).unwrap_or_else(|| t.to_string())),
        resource_group,
        before,
        // One more than asked tells whether there is a next page.
        limit: limit + 1,
    };
    let mut rows = state.persistence.call(ListDeployments(filter)).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(encode_cursor)
    } else {
        None
    };
    Ok((rows, next_cursor))
}

fn encode_cursor(d: &Deployment) -> String {
    format!("{}.{}", d.created_at.timestamp_micros(), d.id)
}

fn decode_cursor(c: &str) -> Result<(DateTime<Utc>, String), AppError> {
    let bad = || AppError::invalid("cursor", "is not a cursor returned by this API");
    let (micros, id) = c.split_once('.').ok_or_else(bad)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = DeploymentId::parse(id).ok_or_else(bad)?;
    Ok((at, id.to_string()))
}

/// Parses the `{id}` segment; a malformed id is simply not found.
pub(super) fn deployment_id(raw: &str) -> Result<String, AppError> {
    DeploymentId::parse(raw)
        .map(|id| id.to_string())
        .ok_or_else(|| not_found(raw))
}

pub(super) fn not_found(id: &str) -> AppError {
    AppError::not_found(
        "deployment_not_found",
        format!("deployment {id:?} not found"),
    )
}

pub(super) async fn load(state: &AppState, raw: &str) -> Result<Deployment, AppError> {
    let id = deployment_id(raw)?;
    state
        .persistence
        .call(GetDeployment(id))
        .await
        .map_err(|e| match e {
            PersistError::NotFound => not_found(raw),
            other => other.into(),
        })
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let d = load(&state, &path).await?;
    Ok(envelope::ok(
        format!("deployment {}", d.id),
        view(&d, &state.catalog.get()),
    ))
}

pub async fn status(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let d = load(&state, &path).await?;
    Ok(envelope::ok(
        format!("deployment {} is {}", d.id, d.status),
        json!({
            "deployment_id": d.id,
            "status": d.status,
            "operation": d.operation,
            "progress": d.progress,
            "created_at": d.created_at,
            "started_at": d.started_at,
            "completed_at": d.completed_at,
            "duration_seconds": d.duration_seconds(),
            "provider_type": d.provider_type,
            "template_name": d.template_name,
            "outputs": d.outputs,
            "error_message": d.error_message,
        }),
    ))
}

/// Parameters as shown: sensitive values masked.
pub(super) fn masked_parameters(
    parameters: &Map<String, Value>,
    provider_type: ProviderType,
    template_name: &str,
    catalog: &crate::catalog::Catalog,
) -> Map<String, Value> {
    let sensitive: Vec<String> = catalog
        .find(provider_type, template_name)
        .map(|t| t.sensitive_parameters().map(String::from).collect())
        .unwrap_or_default();
    parameters
        .iter()
        .map(|(k, v)| {
            let v = if sensitive.contains(k) || crate::secrets::is_encrypted(v) {
                json!("(sensitive)")
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// The whole record, with sensitive parameter values masked.
pub(super) fn view(d: &Deployment, catalog: &crate::catalog::Catalog) -> Value {
    let parameters = masked_parameters(&d.parameters, d.provider_type, &d.template_name, catalog);
    let mut view = json!({
        "deployment_id": d.id,
        "task_id": d.id,
        "provider_type": d.provider_type,
        "cloud_provider": d.provider_type.cloud(),
        "template_name": d.template_name,
        "resource_group": d.resource_group,
        "subscription_id": d.subscription_id,
        "location": d.location,
        "status": d.status,
        "operation": d.operation,
        "parameters": parameters,
        "outputs": d.outputs,
        "error_message": d.error_message,
        "progress": d.progress,
        "attempts": d.attempts,
        "cancel_requested_at": d.cancel_requested_at,
        "created_at": d.created_at,
        "started_at": d.started_at,
        "completed_at": d.completed_at,
        "updated_at": d.updated_at,
        "duration_seconds": d.duration_seconds(),
        "applied_run_id": d.applied_run_id,
        "drift": d.drift,
    });
    // Only a management-group-scope deployment has one: every other record reads as before.
    if let Some(group) = &d.management_group {
        view["management_group"] = json!(group);
    }
    view
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    after: Option<i64>,
    limit: Option<i64>,
    follow: Option<bool>,
    /// `all` for every run's lines, or a run id; default: the newest run's.
    run: Option<String>,
}

impl LogsQuery {
    /// The newest run's lines from the start, followed to its end.
    pub(super) fn follow() -> LogsQuery {
        LogsQuery {
            after: None,
            limit: None,
            follow: Some(true),
            run: None,
        }
    }
}

/// `GET /deployments/{id}/logs`: the newest run's lines (`?run=all`: every run's, `?run=<id>`:
/// one run's).
pub async fn logs(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<LogsQuery>,
) -> Result<HttpResponse, AppError> {
    let mut q = q.into_inner();
    let scope = match q.run.take().as_deref() {
        None | Some("latest") => LogScope::Latest,
        Some("all") => LogScope::All,
        Some(r) => LogScope::Run(
            crate::domain::RunId::parse(r)
                .ok_or_else(|| AppError::invalid("run", "must be all, latest or a run id"))?
                .to_string(),
        ),
    };
    check_log_page(&q)?;
    let d = load(&state, &path).await?;
    log_lines(state, d, scope, q).await
}

/// The paging parameters of a log request, checked before anything is looked up.
pub(super) fn check_log_page(q: &LogsQuery) -> Result<(i64, i64), AppError> {
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(AppError::invalid("after", "must be 0 or more"));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=MAX_LOG_LIMIT).contains(&limit) {
        return Err(AppError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LOG_LIMIT}"),
        ));
    }
    Ok((after, limit))
}

/// A page of log lines (or, with `follow`, their SSE stream) of a deployment's run(s).
pub(super) async fn log_lines(
    state: web::Data<AppState>,
    d: Deployment,
    scope: LogScope,
    q: LogsQuery,
) -> Result<HttpResponse, AppError> {
    let (after, limit) = check_log_page(&q)?;
    if q.follow.unwrap_or(false) {
        return Ok(follow(state, d.id.to_string(), scope, after));
    }
    let page = state
        .persistence
        .call(GetLogs {
            deployment_id: d.id.to_string(),
            scope,
            after,
            limit,
        })
        .await
        .map_err(|e| match e {
            PersistError::NotFound => {
                AppError::not_found("run_not_found", "run not found".to_string())
            }
            other => other.into(),
        })?;
    let lines = page.lines;
    let next_after = lines.last().map(|l| l.seq).unwrap_or(after);
    Ok(envelope::ok(
        format!("{} log lines", lines.len()),
        json!({
            "deployment_id": d.id,
            "status": d.status,
            "run_id": page.run.as_ref().map(|r| r.id.clone()),
            "run_status": page.run.as_ref().map(|r| r.status),
            "lines": lines,
            "count": lines.len(),
            "next_after": next_after,
        }),
    ))
}

/// Server-Sent Events: every new line as a `log` event, then one `end` event with the final
/// status once the run has ended (or stopped to wait for a decision) and every line was sent.
/// For every run's lines, the end is the deployment's.
fn follow(state: web::Data<AppState>, id: String, scope: LogScope, after: i64) -> HttpResponse {
    struct Follow {
        state: web::Data<AppState>,
        id: String,
        scope: LogScope,
        after: i64,
        done: bool,
        /// When the client was last sent something: a quiet stream gets a comment line now and
        /// then, so a client that went away is noticed (the write fails) and the stream ends.
        last_sent: tokio::time::Instant,
    }
    let init = Follow {
        state,
        id,
        scope,
        after,
        done: false,
        last_sent: tokio::time::Instant::now(),
    };
    let events = stream::unfold(init, |mut f| async move {
        if f.done {
            return None;
        }
        loop {
            let batch = f
                .state
                .persistence
                .call(GetLogs {
                    deployment_id: f.id.clone(),
                    scope: f.scope.clone(),
                    after: f.after,
                    limit: 1000,
                })
                .await;
            let page = match batch {
                Ok(page) => page,
                Err(e) => {
                    f.done = true;
                    let chunk = sse("error", &json!({ "error": e.to_string() }));
                    return Some((Ok::<_, actix_web::Error>(chunk), f));
                }
            };
            if !page.lines.is_empty() {
                f.last_sent = tokio::time::Instant::now();
                f.after = page.lines.last().map(|l| l.seq).unwrap_or(f.after);
                let chunk: Vec<u8> = page
                    .lines
                    .iter()
                    .flat_map(|l| sse("log", &json!(l)).to_vec())
                    .collect();
                return Some((Ok(web::Bytes::from(chunk)), f));
            }
            // No new line: end once the run has ended (its last lines are written before the
            // result), else wait a little.
            let run_ended = page
                .run
                .as_ref()
                .map(|r| r.status.is_final() || r.status == crate::domain::RunStatus::Planned);
            let ended = match (&f.scope, page.run) {
                // One run's lines end with the run's status.
                (LogScope::Run(_), Some(run)) if run_ended == Some(true) => Ok(Some(json!({
                    "status": run.status, "run_id": run.id, "error_message": run.error_message,
                }))),
                (LogScope::Run(_), _) => Ok(None),
                (LogScope::Latest, Some(_)) if run_ended != Some(true) => Ok(None),
                // A deployment's lines end with the deployment's status, as they always did.
                _ => match f.state.persistence.call(GetDeployment(f.id.clone())).await {
                    Ok(d) if d.status.is_terminal() || run_ended == Some(true) => Ok(Some(
                        json!({ "status": d.status, "error_message": d.error_message }),
                    )),
                    Ok(_) => Ok(None),
                    Err(e) => Err(e),
                },
            };
            match ended {
                Ok(Some(end)) => {
                    f.done = true;
                    return Some((Ok(sse("end", &end)), f));
                }
                Ok(None) if f.last_sent.elapsed() >= SSE_KEEPALIVE => {
                    f.last_sent = tokio::time::Instant::now();
                    return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), f));
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(300)).await,
                Err(e) => {
                    f.done = true;
                    return Some((Ok(sse("error", &json!({ "error": e.to_string() }))), f));
                }
            }
        }
    });
    HttpResponse::Ok()
        .insert_header(("Content-Type", "text/event-stream"))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(events)
}

fn sse(event: &str, data: &Value) -> web::Bytes {
    web::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

pub async fn cancel(
    state: web::Data<AppState>,
    path: web::Path<String>,
    audit: AuditContext,
) -> Result<HttpResponse, AppError> {
    let id = deployment_id(&path)?;
    let cancelled = state
        .persistence
        .call(CancelDeployment(id.clone(), Some(audit.entry(202, None))))
        .await?;
    match cancelled.result {
        CancelResult::NotFound => Err(not_found(&path)),
        CancelResult::AlreadyFinished => {
            let d = load(&state, &id).await?;
            Err(AppError::Conflict(format!(
                "deployment {id} already ended ({})",
                d.status
            )))
        }
        result => {
            if result == CancelResult::Requested
                && let Some(run_id) = cancelled.run_id.clone()
            {
                state.supervisor.do_send(CancelRun { run_id });
            }
            let d = load(&state, &id).await?;
            Ok(access::audited(envelope::success(
                StatusCode::ACCEPTED,
                format!("cancel of {id} accepted"),
                json!({ "deployment_id": id, "status": d.status, "cancel_requested": true, "run_id": cancelled.run_id }),
            )))
        }
    }
}

/// Queues a run on an existing deployment, requested by the caller, with its audit row (the
/// answer is a 202); 404 and 409 as the persistence actor decides.
pub(super) async fn queue_run(
    state: &AppState,
    raw_id: &str,
    mut run: NewRun,
    audit: &AuditContext,
) -> Result<(Deployment, crate::domain::Run), AppError> {
    let id = deployment_id(raw_id)?;
    run.requested_by = Some(audit.caller.name.clone());
    let queued = state
        .persistence
        .call(QueueRun {
            deployment_id: id,
            run,
            audit: Some(audit.entry(202, None)),
        })
        .await
        .map_err(|e| match e {
            PersistError::NotFound => not_found(raw_id),
            other => other.into(),
        })?;
    state.supervisor.do_send(Wake);
    Ok(queued)
}

pub async fn destroy(
    state: web::Data<AppState>,
    path: web::Path<String>,
    audit: AuditContext,
) -> Result<HttpResponse, AppError> {
    // The run's parameters are the deployment's, read where the run is queued.
    let run = NewRun::new(RunKind::Destroy, Map::new());
    let (d, run) = queue_run(&state, &path, run, &audit).await?;
    Ok(access::audited(envelope::success(
        StatusCode::ACCEPTED,
        format!("destroy of {} queued", d.id),
        json!({ "deployment_id": d.id, "task_id": d.id, "status": d.status, "operation": d.operation, "run_id": run.id }),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_body_errors_name_every_field() {
        let rg = |_: ProviderType, _: &str| TargetScope::ResourceGroup;
        let Err(AppError::Validation(e)) = parse_deploy(
            json!({
                "provider_type": "nope", "parameters": [], "extra": 1, "location": "us east;"
            }),
            rg,
        ) else {
            panic!("expected a validation error");
        };
        for f in [
            "template_name",
            "provider_type",
            "parameters",
            "extra",
            "location",
        ] {
            assert!(e.0.contains_key(f), "{f} missing in {e:?}");
        }
        assert!(parse_deploy(json!({"template_name": "x", "provider_type": "aws"}), rg).is_ok());
        assert!(
            parse_deploy(json!({"template_name": "x", "provider_type": "bicep"}), rg).is_err(),
            "azure needs a resource group"
        );
    }

    #[test]
    fn a_subscription_scope_template_takes_a_location_and_no_resource_group() {
        let sub = |_: ProviderType, _: &str| TargetScope::Subscription;
        let ok = json!({"template_name": "x", "provider_type": "azure", "subscription_id": "s-1", "location": "westeurope"});
        assert!(parse_deploy(ok, sub).is_ok());
        let Err(AppError::Validation(e)) = parse_deploy(
            json!({"template_name": "x", "provider_type": "azure", "subscription_id": "s-1", "resource_group": "rg"}),
            sub,
        ) else {
            panic!("expected a validation error");
        };
        assert!(
            e.0["resource_group"].contains("subscription scope"),
            "{e:?}"
        );
        assert!(e.0["location"].contains("required"), "{e:?}");
    }

    #[test]
    fn management_group_and_tenant_templates_take_their_own_fields() {
        let refused = |body: Value, scope: TargetScope| match parse_deploy(body, move |_, _| scope)
        {
            Err(AppError::Validation(e)) => e.0,
            _ => panic!("expected a validation error"),
        };
        let mg = TargetScope::ManagementGroup;
        let ok = json!({"template_name": "x", "provider_type": "azure", "management_group": "mg-platform", "location": "westeurope"});
        let Ok(request) = parse_deploy(ok, |_, _| mg) else {
            panic!("expected a valid request");
        };
        assert_eq!(request.management_group.as_deref(), Some("mg-platform"));
        assert_eq!(request.subscription_id, None);
        let e = refused(
            json!({"template_name": "x", "provider_type": "azure", "resource_group": "rg", "subscription_id": "s-1"}),
            mg,
        );
        assert!(e["management_group"].contains("required"), "{e:?}");
        assert!(e["location"].contains("required"), "{e:?}");
        assert!(
            e["resource_group"].contains("managementGroup scope"),
            "{e:?}"
        );
        assert!(e["subscription_id"].contains("not used"), "{e:?}");
        for bad in ["mg.", "", "a b", "ü", "m".repeat(91).as_str()] {
            let e = refused(
                json!({"template_name": "x", "provider_type": "azure", "management_group": bad, "location": "w"}),
                mg,
            );
            assert!(e.contains_key("management_group"), "{bad:?}: {e:?}");
        }
        assert!(valid_management_group(&"m".repeat(90)));
        assert!(valid_management_group("Contoso_(IT)-1.a"));

        let tenant = TargetScope::Tenant;
        let ok = json!({"template_name": "x", "provider_type": "azure", "location": "westeurope"});
        assert!(parse_deploy(ok, |_, _| tenant).is_ok());
        let e = refused(
            json!({"template_name": "x", "provider_type": "azure", "management_group": "mg"}),
            tenant,
        );
        assert!(e["management_group"].contains("tenant scope"), "{e:?}");
        assert!(e["location"].contains("tenant-scope"), "{e:?}");
        // The other scopes and the other providers take no management group.
        let e = refused(
            json!({"template_name": "x", "provider_type": "azure", "subscription_id": "s-1", "resource_group": "rg", "management_group": "mg"}),
            TargetScope::ResourceGroup,
        );
        assert_eq!(e.len(), 1, "{e:?}");
        let e = refused(
            json!({"template_name": "x", "provider_type": "aws", "management_group": "mg"}),
            TargetScope::ResourceGroup,
        );
        assert!(e["management_group"].contains("only for Azure"), "{e:?}");
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        assert!(decode_cursor("nonsense").is_err());
        assert!(decode_cursor("1.deploy-zz").is_err());
        let (at, id) = decode_cursor("1732581234123456.deploy-0123456789abcdef").expect("valid");
        assert_eq!(at.timestamp_micros(), 1732581234123456);
        assert_eq!(id, "deploy-0123456789abcdef");
    }
}

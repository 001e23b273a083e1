//! The lifecycle of a deployment: its runs (`GET /deployments/{id}/runs`, `/runs/{id}`, their
//! logs), and the verbs that queue or decide runs: `PATCH /deployments/{id}` (update),
//! `POST /deployments/{id}/plan` (speculative plan), `/drift-check`, `/apply` and `/discard`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AppState;
use super::access::{self, AuditContext};
use super::deployments::{
    LogsQuery, auto_apply_field, load, log_lines, masked_parameters, parameters_field,
    prepare_parameters, queue_run,
};
use super::envelope::{self, AppError};
use crate::actors::persistence::{DecidePlan, GetRun, ListRuns, LogScope, PersistError};
use crate::actors::supervisor::Wake;
use crate::catalog::ValidationErrors;
use crate::domain::{Deployment, NewRun, Run, RunId, RunKind, TemplateVersion};

const MAX_RUNS_LIMIT: i64 = 200;

/// A run as the API shows it: parameters masked, the plan's summary with its headline.
pub(super) fn run_view(r: &Run, d: &Deployment, catalog: &crate::catalog::Catalog) -> Value {
    json!({
        "run_id": r.id,
        "deployment_id": r.deployment_id,
        "kind": r.kind,
        "status": r.status,
        "auto_apply": r.auto_apply,
        "parameters": masked_parameters(&r.parameters, d.provider_type, &d.template_name, catalog),
        "template_hash": r.template_hash,
        "base_template_hash": r.base_template_hash,
        "template_version": r.template_version,
        "plan": r.plan_summary.as_ref().map(|p| json!({
            "add": p.add,
            "change": p.change,
            "destroy": p.destroy,
            "resources": p.resources,
            "headline": p.headline(),
        })),
        "has_saved_plan": r.has_saved_plan,
        "outputs": r.outputs,
        "error_message": r.error_message,
        "progress": r.progress,
        "attempts": r.attempts,
        "requested_by": r.requested_by,
        "approved_by": r.approved_by,
        "approved_at": r.approved_at,
        "cancel_requested_at": r.cancel_requested_at,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "completed_at": r.completed_at,
        "updated_at": r.updated_at,
        "duration_seconds": r.duration_seconds(),
    })
}

fn run_not_found(raw: &str) -> AppError {
    AppError::not_found("run_not_found", format!("run {raw:?} not found"))
}

async fn load_run(state: &AppState, raw: &str) -> Result<(Run, Deployment), AppError> {
    let id = RunId::parse(raw).ok_or_else(|| run_not_found(raw))?;
    let run = state
        .persistence
        .call(GetRun(id.to_string()))
        .await
        .map_err(|e| match e {
            PersistError::NotFound => run_not_found(raw),
            other => other.into(),
        })?;
    let d = load(state, run.deployment_id.as_str()).await?;
    Ok((run, d))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// `GET /deployments/{id}/runs`: newest first, keyset-paginated.
pub async fn list(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<RunsQuery>,
) -> Result<HttpResponse, AppError> {
    let (limit, before) = super::keyset_page(q.limit, q.cursor.as_deref(), 50, MAX_RUNS_LIMIT)?;
    let d = load(&state, &path).await?;
    let mut runs = state
        .persistence
        .call(ListRuns {
            deployment_id: d.id.to_string(),
            before,
            limit: limit + 1,
        })
        .await?;
    let more = runs.len() as i64 > limit;
    runs.truncate(limit as usize);
    let next_cursor = if more {
        runs.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    let catalog = state.catalog.get();
    let views: Vec<Value> = runs.iter().map(|r| run_view(r, &d, &catalog)).collect();
    Ok(envelope::ok(
        format!("{} runs", views.len()),
        json!({ "deployment_id": d.id, "runs": views, "count": views.len(), "next_cursor": next_cursor }),
    ))
}

/// `GET /runs/{id}`.
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (run, d) = load_run(&state, &path).await?;
    Ok(envelope::ok(
        format!("run {} is {}", run.id, run.status),
        run_view(&run, &d, &state.catalog.get()),
    ))
}

/// `GET /runs/{id}/logs`: the run's lines (paging and SSE as for a deployment).
pub async fn logs(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<LogsQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    super::deployments::check_log_page(&q)?;
    let (run, d) = load_run(&state, &path).await?;
    log_lines(state, d, LogScope::Run(run.id.to_string()), q).await
}

/// A request body that may be left out: none when empty, else JSON (415 for another media
/// type, 400 when malformed).
fn optional_json(req: &HttpRequest, body: &[u8]) -> Result<Option<Value>, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    use actix_web::HttpMessage;
    let json = req.mime_type().ok().flatten().is_some_and(|m| {
        m.subtype().as_str() == "json" || m.suffix().is_some_and(|s| s.as_str() == "json")
    });
    if !json {
        return Err(AppError::UnsupportedMediaType);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| AppError::BadRequest(format!("invalid JSON body: {e}")))
}

/// The body of `PATCH /deployments/{id}` and `POST /deployments/{id}/plan`.
struct ChangeRequest {
    parameters: Map<String, Value>,
    auto_apply: bool,
    template_version: TemplateVersion,
}

fn parse_change(body: Option<Value>, allow_auto_apply: bool) -> Result<ChangeRequest, AppError> {
    let mut body = match body {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(AppError::invalid("body", "must be a JSON object")),
    };
    let mut errors = ValidationErrors::default();
    let parameters = parameters_field(&mut body, &mut errors);
    let auto_apply = if allow_auto_apply {
        auto_apply_field(&mut body, &mut errors)
    } else {
        false
    };
    let template_version = match body.remove("template_version") {
        None | Some(Value::Null) => Some(TemplateVersion::Applied),
        Some(Value::String(v)) => TemplateVersion::parse(&v),
        Some(_) => None,
    }
    .unwrap_or_else(|| {
        errors.add("template_version", "must be \"applied\" or \"latest\"");
        TemplateVersion::Applied
    });
    let expected = if allow_auto_apply {
        "parameters, auto_apply, template_version"
    } else {
        "parameters, template_version"
    };
    for unknown in body.keys() {
        errors.add(
            unknown.clone(),
            format!("unknown field (expected {expected})"),
        );
    }
    if errors.is_empty() {
        Ok(ChangeRequest {
            parameters,
            auto_apply,
            template_version,
        })
    } else {
        Err(AppError::Validation(errors))
    }
}

/// The parameters of a run that changes (or previews a change to) a deployment: the
/// deployment's current values with the given ones on top, checked against its template.
fn changed_parameters(
    state: &AppState,
    d: &Deployment,
    given: &Map<String, Value>,
    saves_plan: bool,
) -> Result<Map<String, Value>, AppError> {
    let catalog = state.catalog.get();
    let template = catalog
        .find(d.provider_type, &d.template_name)
        .ok_or_else(|| {
            AppError::Conflict(format!(
                "template {} ({}) is no longer in the catalog",
                d.template_name, d.provider_type
            ))
        })?;
    if let Some(reason) = super::meta::not_configured(state, d.provider_type) {
        return Err(AppError::ProviderNotConfigured(reason));
    }
    // The stored values (sensitive ones opened to be checked and sealed again) with the given
    // ones on top.
    let mut merged = d.parameters.clone();
    crate::secrets::open(&mut merged, state.secret_key.as_ref().as_ref())
        .map_err(|e| AppError::Conflict(e.to_string()))?;
    for (k, v) in given {
        merged.insert(k.clone(), v.clone());
    }
    prepare_parameters(state, template, &merged, saves_plan)
}

/// `PATCH /deployments/{id}`: an update run with new parameters (omitted ones keep their
/// values), planned against the existing state and applied when `auto_apply` (default true).
pub async fn update(
    state: web::Data<AppState>,
    path: web::Path<String>,
    audit: AuditContext,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let change = parse_change(Some(body.into_inner()), true)?;
    let d = load(&state, &path).await?;
    let parameters = changed_parameters(&state, &d, &change.parameters, !change.auto_apply)?;
    let mut run = NewRun::new(RunKind::Update, parameters);
    run.auto_apply = change.auto_apply;
    run.template_version = Some(change.template_version);
    let (d, run) = queue_run(&state, &path, run, &audit).await?;
    accepted(&state, &d, &run, format!("update of {} queued", d.id))
}

/// `POST /deployments/{id}/plan`: a speculative plan with the current or proposed parameters;
/// it never applies and never waits behind other runs.
pub async fn plan(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    audit: AuditContext,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let change = parse_change(optional_json(&req, &body)?, false)?;
    let d = load(&state, &path).await?;
    let parameters = changed_parameters(&state, &d, &change.parameters, false)?;
    let mut run = NewRun::new(RunKind::Plan, parameters);
    run.auto_apply = false;
    run.template_version = Some(change.template_version);
    let (d, run) = queue_run(&state, &path, run, &audit).await?;
    accepted(&state, &d, &run, format!("plan of {} queued", d.id))
}

/// `POST /deployments/{id}/drift-check`: compares the cloud with the applied state.
pub async fn drift_check(
    state: web::Data<AppState>,
    path: web::Path<String>,
    audit: AuditContext,
) -> Result<HttpResponse, AppError> {
    let d = load(&state, &path).await?;
    if let Some(reason) = super::meta::not_configured(&state, d.provider_type) {
        return Err(AppError::ProviderNotConfigured(reason));
    }
    // The run's parameters are the deployment's, read where the run is queued.
    let mut run = NewRun::new(RunKind::DriftCheck, Map::new());
    run.auto_apply = false;
    let (d, run) = queue_run(&state, &path, run, &audit).await?;
    accepted(&state, &d, &run, format!("drift check of {} queued", d.id))
}

/// `POST /deployments/{id}/apply`: confirms the planned run; it applies exactly its saved plan.
pub async fn apply(
    state: web::Data<AppState>,
    path: web::Path<String>,
    audit: AuditContext,
) -> Result<HttpResponse, AppError> {
    decide(state, path, audit, true).await
}

/// `POST /deployments/{id}/discard`: drops the planned run's plan.
pub async fn discard(
    state: web::Data<AppState>,
    path: web::Path<String>,
    audit: AuditContext,
) -> Result<HttpResponse, AppError> {
    decide(state, path, audit, false).await
}

/// Approve or discard, by the caller (four-eyes checked where the run is decided).
async fn decide(
    state: web::Data<AppState>,
    path: web::Path<String>,
    audit: AuditContext,
    approve: bool,
) -> Result<HttpResponse, AppError> {
    let id = super::deployments::deployment_id(&path)?;
    let (d, run) = state
        .persistence
        .call(DecidePlan {
            deployment_id: id,
            approve,
            by: Some(audit.caller.name.clone()),
            four_eyes: state.settings.auth.four_eyes,
            audit: Some(audit.entry(if approve { 202 } else { 200 }, None)),
        })
        .await
        .map_err(|e| match e {
            PersistError::NotFound => super::deployments::not_found(&path),
            other => other.into(),
        })?;
    if approve {
        state.supervisor.do_send(Wake);
        accepted(&state, &d, &run, format!("apply of run {} queued", run.id))
    } else {
        Ok(access::audited(envelope::ok(
            format!("plan of run {} discarded", run.id),
            run_view(&run, &d, &state.catalog.get()),
        )))
    }
}

/// 202 with the run, its address in `Location`.
fn accepted(
    state: &AppState,
    d: &Deployment,
    run: &Run,
    message: String,
) -> Result<HttpResponse, AppError> {
    let mut view = run_view(run, d, &state.catalog.get());
    view["deployment_status"] = json!(d.status);
    // Every 202 of this module follows a queued or approved run, audited with it.
    let mut resp = access::audited(envelope::success(StatusCode::ACCEPTED, message, view));
    resp.headers_mut().insert(
        actix_web::http::header::LOCATION,
        actix_web::http::header::HeaderValue::from_str(&format!("/runs/{}", run.id))
            .map_err(|e| AppError::Internal(e.to_string()))?,
    );
    Ok(resp)
}

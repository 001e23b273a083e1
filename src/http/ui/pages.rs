//! The dashboard's pages and actions. Pages read the same data as the JSON API (its views of
//! deployments, runs and templates); actions call the API's own handlers, so every check, role
//! rule, audit row and four-eyes refusal is the API's, and the page shows their answer.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::session::{self, CSRF_COOKIE, SESSION_COOKIE};
use super::view::{self, Frame, Nav, age, alert, badge, csrf_field, may, plan_diff, text};
use crate::catalog::{ParamSpec, ParamType, Template};
use crate::domain::{Caller, ProviderType, Role};
use crate::http::AppState;
use crate::http::access::{AuditContext, Audited, audited};
use crate::http::envelope::AppError;
use crate::http::security::Security;
use crate::http::{deployments, meta, runs};

/// The dashboard's Content-Security-Policy: its own script and style only, nothing inline.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML answer with the dashboard's headers, setting the CSRF cookie when it is new.
fn html_page(status: StatusCode, markup: Markup, csrf: &Csrf) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if csrf.new {
        res.cookie(cookie(CSRF_COOKIE, csrf.value.clone()));
    }
    res.body(markup.into_string())
}

fn cookie(name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build(name, value)
        .path("/ui")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish()
}

/// The request's CSRF value (made when the browser has none yet).
pub struct Csrf {
    pub value: String,
    new: bool,
}

fn csrf(req: &HttpRequest) -> Csrf {
    match req.cookie(CSRF_COOKIE) {
        Some(c) if c.value().len() == 32 => Csrf {
            value: c.value().to_string(),
            new: false,
        },
        _ => Csrf {
            value: session::new_csrf(),
            new: true,
        },
    }
}

fn frame<'a>(
    title: &'a str,
    nav: Nav,
    ctx: &'a AuditContext,
    state: &AppState,
    csrf: &'a Csrf,
) -> Frame<'a> {
    Frame {
        title,
        nav,
        caller: Some(&ctx.caller),
        sessions: !state.settings.auth.tokens.is_empty(),
        csrf: &csrf.value,
    }
}

/// A submitted form whose CSRF value matched the cookie's; anything else is refused (403)
/// before a handler runs.
pub struct UiForm(pub HashMap<String, String>);

impl FromRequest for UiForm {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let form = web::Form::<HashMap<String, String>>::from_request(req, payload);
        let cookie = req.cookie(CSRF_COOKIE).map(|c| c.value().to_string());
        Box::pin(async move {
            let form = form
                .await
                .map_err(|e| UiError(StatusCode::BAD_REQUEST, format!("unreadable form: {e}")))?
                .into_inner();
            if !session::csrf_matches(cookie.as_deref(), form.get("csrf").map(String::as_str)) {
                return Err(UiError(
                    StatusCode::FORBIDDEN,
                    "this form is out of date or was not sent from the dashboard (CSRF check): reload the page and try again".into(),
                )
                .into());
            }
            Ok(UiForm(form))
        })
    }
}

/// A refusal shown as a dashboard page.
#[derive(Debug)]
pub struct UiError(pub StatusCode, pub String);

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        self.0
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.0)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .body(view::refusal(self.0.as_u16(), &self.1))
    }
}

impl From<AppError> for UiError {
    fn from(e: AppError) -> Self {
        UiError(e.status_code(), e.to_string())
    }
}

/// 303 to `location`, keeping the `Audited` mark of the API answer it follows.
fn see_other(location: &str, after: Option<&HttpResponse>) -> HttpResponse {
    let res = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish();
    if after.is_some_and(|r| r.extensions().get::<Audited>().is_some()) {
        audited(res)
    } else {
        res
    }
}

// ---- deployments ----------------------------------------------------------------------------

const STATUSES: [&str; 7] = [
    "pending",
    "running",
    "planned",
    "completed",
    "failed",
    "cancelled",
    "destroyed",
];

/// `GET /ui`: the deployments, filtered and paged as the API does, refreshed while shown.
pub async fn deployments(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, UiError> {
    let csrf = csrf(&req);
    let filters = q.into_inner();
    let query = filter_query(&filters);
    let (rows, problem) = match rows(&state, &filters).await {
        Ok(r) => (r, None),
        Err(e) => (html! {}, Some(e.1)),
    };
    let select = |name: &str, options: &[&str]| {
        let current = filters.get(name).map(String::as_str).unwrap_or_default();
        html! {
            select id={ "f-" (name) } name=(name) {
                option value="" { "any" }
                @for o in options {
                    option value=(o) selected[current == *o] { (o.replace('_', " ")) }
                }
            }
        }
    };
    let content = html! {
        h1 { "Deployments" }
        form.filters method="get" action="/ui" aria-label="Filters" {
            label for="f-status" { "Status" } (select("status", &STATUSES))
            label for="f-provider_type" { "Provider" }
            (select("provider_type", &["terraform-aws", "terraform-gcp", "terraform-azure", "azure"]))
            label for="f-template_name" { "Template" }
            input id="f-template_name" name="template_name" value=[filters.get("template_name")];
            label for="f-drift" { "Drift" } (select("drift", &["in_sync", "drifted", "unknown"]))
            button type="submit" { "Filter" }
        }
        @if let Some(p) = &problem { (alert(p)) }
        div.scroll { table.list {
            caption.sr-only { "Deployments, newest first" }
            thead { tr {
                th scope="col" { "Deployment" } th scope="col" { "Template" } th scope="col" { "Provider" }
                th scope="col" { "Resource group" } th scope="col" { "Status" } th scope="col" { "Drift" } th scope="col" { "Age" }
            } }
            tbody #rows data-refresh={ "/ui/deployments/rows" (query) } data-interval="3000" { (rows) }
        } }
    };
    let page = view::layout(
        &frame("Deployments", Nav::Deployments, &ctx, &state, &csrf),
        content,
    );
    Ok(html_page(StatusCode::OK, page, &csrf))
}

/// `GET /ui/deployments/rows`: the table's rows (what the page refreshes).
pub async fn deployment_rows(
    state: web::Data<AppState>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, UiError> {
    let rows = rows(&state, &q.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(rows.into_string()))
}

fn filter_query(filters: &HashMap<String, String>) -> String {
    let mut pairs: Vec<(&str, &str)> = [
        "status",
        "provider_type",
        "template_name",
        "drift",
        "limit",
        "cursor",
    ]
    .into_iter()
    .filter_map(|k| {
        filters
            .get(k)
            .filter(|v| !v.is_empty())
            .map(|v| (k, v.as_str()))
    })
    .collect();
    pairs.sort_unstable();
    if pairs.is_empty() {
        return String::new();
    }
    format!(
        "?{}",
        serde_urlencoded::to_string(&pairs).unwrap_or_default()
    )
}

async fn rows(state: &AppState, filters: &HashMap<String, String>) -> Result<Markup, UiError> {
    let mut q = Map::new();
    for (k, v) in filters {
        if !v.is_empty()
            && [
                "status",
                "provider_type",
                "template_name",
                "drift",
                "limit",
                "cursor",
            ]
            .contains(&k.as_str())
        {
            let v = match k.as_str() {
                "limit" => json!(v.parse::<i64>().map_err(|_| UiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "limit must be a number".into()
                ))?),
                _ => json!(v),
            };
            q.insert(k.clone(), v);
        }
    }
    let q: deployments::ListQuery = serde_json::from_value(Value::Object(q))
        .map_err(|e| UiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    let (list, next) = deployments::list_page(state, q).await?;
    let mut more = filters.clone();
    Ok(html! {
        @if list.is_empty() {
            tr { td colspan="7" { "No deployments." } }
        }
        @for d in &list {
            tr {
                td { a href={ "/ui/deployments/" (d.id) } { code { (d.id) } } }
                td { (d.template_name) }
                td { (d.provider_type) }
                td { (d.resource_group.as_deref().unwrap_or("—")) }
                td { (badge(d.status.as_str())) }
                td {
                    @match d.drift.as_ref().and_then(|x| x["status"].as_str()) {
                        Some("drifted") => span.badge.bad title="the cloud changed outside the daemon" { "drifted" },
                        Some(s) => span.muted { (s.replace('_', " ")) },
                        None => span.muted { "—" },
                    }
                }
                td { (age(&json!(d.created_at))) }
            }
        }
        @if let Some(cursor) = next {
            tr.more { td colspan="7" {
                a href={ "/ui" (filter_query(&{ more.insert("cursor".into(), cursor); more })) } { "Older deployments →" }
            } }
        }
    })
}

/// `GET /ui/deployments/{id}`.
pub async fn deployment(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    path: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let csrf = csrf(&req);
    let markup = deployment_page(&state, &ctx, &path, &csrf, None).await?;
    Ok(html_page(StatusCode::OK, markup, &csrf))
}

async fn deployment_page(
    state: &AppState,
    ctx: &AuditContext,
    id: &str,
    csrf: &Csrf,
    problem: Option<&str>,
) -> Result<Markup, UiError> {
    let d = deployments::load(state, id).await?;
    let catalog = state.catalog.get();
    let v = deployments::view(&d, &catalog);
    let live = live_section(state, ctx, &d, csrf).await?;
    let template = catalog.find(d.provider_type, &d.template_name).cloned();
    let caller = &ctx.caller;
    let params = v["parameters"].as_object().cloned().unwrap_or_default();
    let title = format!("Deployment {}", d.id);
    let content = html! {
        p.crumbs { a href="/ui" { "Deployments" } " / " code { (d.id) } }
        h1 { (d.template_name) " " span.muted { "(" (d.provider_type) ")" } }
        @if let Some(p) = problem { (alert(p)) }
        dl.facts {
            dt { "Deployment" } dd { code { (d.id) } }
            dt { "Template" } dd { a href={ "/ui/templates/" (d.provider_type) "/" (d.template_name) } { (d.template_name) } }
            dt { "Resource group" } dd { (d.resource_group.as_deref().unwrap_or("—")) }
            dt { "Location" } dd { (d.location.as_deref().unwrap_or("—")) }
            dt { "Created" } dd { (age(&v["created_at"])) }
        }
        (live)
        h2 { "Parameters" }
        @if params.is_empty() { p.muted { "None." } } @else {
            table.kv { tbody { @for (k, val) in &params {
                tr { th scope="row" { (k) } td { code { (text(val)) } } }
            } } }
        }
        @if may(caller, Role::Operator) && d.status.as_str() != "destroyed" {
            h2 { "Actions" }
            div.actions {
                form method="post" action={ "/ui/deployments/" (d.id) "/drift-check" } {
                    (csrf_field(&csrf.value))
                    button type="submit" { "Check drift" }
                }
                @if matches!(d.status.as_str(), "pending" | "running" | "planned") {
                    form method="post" action={ "/ui/deployments/" (d.id) "/cancel" } {
                        (csrf_field(&csrf.value))
                        button type="submit" { "Cancel" }
                    }
                }
            }
            @if let Some(t) = &template {
                details.update {
                    summary { "Update parameters" }
                    form method="post" action={ "/ui/deployments/" (d.id) "/update" } {
                        (csrf_field(&csrf.value))
                        p.muted { "Fields left as they are keep their values; sensitive values are kept when left empty." }
                        @for spec in &t.parameters {
                            (field(spec, params.get(&spec.name), None))
                        }
                        (plan_first_box(true))
                        button type="submit" { "Update" }
                    }
                }
            }
            form.destroy method="post" action={ "/ui/deployments/" (d.id) "/destroy" } {
                (csrf_field(&csrf.value))
                label for="confirm" { "To destroy everything this deployment created, type its id " code { (d.id) } }
                input #confirm name="confirm" autocomplete="off" required data-must-equal=(d.id);
                button.danger type="submit" { "Destroy" }
            }
        }
        h2 { "Log" }
        pre #log tabindex="0" aria-label="Log of the newest run" aria-live="off"
            data-stream={ "/ui/deployments/" (d.id) "/log" } {}
        p #log-status.muted role="status" {}
    };
    Ok(view::layout(
        &frame(&title, Nav::Deployments, ctx, state, csrf),
        content,
    ))
}

/// Status, progress, the planned run's decision and the runs timeline: what changes while a
/// run moves (refreshed by the page while a run is active).
async fn live_section(
    state: &AppState,
    ctx: &AuditContext,
    d: &crate::domain::Deployment,
    csrf: &Csrf,
) -> Result<Markup, UiError> {
    let list = state
        .persistence
        .call(crate::actors::persistence::ListRuns {
            deployment_id: d.id.to_string(),
            before: None,
            limit: 20,
        })
        .await
        .map_err(AppError::from)?;
    let catalog = state.catalog.get();
    let views: Vec<Value> = list
        .iter()
        .map(|r| runs::run_view(r, d, &catalog))
        .collect();
    let active = views
        .iter()
        .any(|r| matches!(r["status"].as_str(), Some("pending" | "running")))
        || matches!(d.status.as_str(), "pending" | "running");
    let planned = views.iter().find(|r| r["status"] == "planned");
    let outputs = d
        .outputs
        .as_ref()
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let caller = &ctx.caller;
    Ok(html! {
        section #live data-refresh={ "/ui/deployments/" (d.id) "/live" } data-active=(active) aria-live="polite" {
            p.status {
                "Status " (badge(d.status.as_str()))
                @if let Some(drift) = d.drift.as_ref().and_then(|x| x["status"].as_str()) {
                    " · drift " (badge(drift))
                }
            }
            @if matches!(d.status.as_str(), "pending" | "running") {
                label for="progress" { "Progress" }
                progress #progress max="100" value=(d.progress) { (d.progress) "%" }
            }
            @if let Some(e) = &d.error_message { (alert(e)) }
            @if let Some(p) = planned {
                div.planned {
                    h2 { "Plan waiting for a decision" }
                    p.muted {
                        "Run " code { (text(&p["run_id"])) }
                        @if let Some(by) = p["requested_by"].as_str() { ", requested by " (by) }
                    }
                    (plan_diff(&p["plan"]))
                    @if may(caller, Role::Approver) {
                        div.actions {
                            form method="post" action={ "/ui/deployments/" (d.id) "/apply" } {
                                (csrf_field(&csrf.value))
                                button.primary type="submit" { "Approve and apply" }
                            }
                            form method="post" action={ "/ui/deployments/" (d.id) "/discard" } {
                                (csrf_field(&csrf.value))
                                button type="submit" { "Discard" }
                            }
                        }
                    }
                }
            }
            h2 { "Outputs" }
            @if outputs.is_empty() { p.muted { "None yet." } } @else {
                table.kv { tbody { @for (k, val) in &outputs {
                    tr {
                        th scope="row" { (k) }
                        td { code id={ "out-" (k) } { (text(val)) } }
                        td {
                            // A masked value has nothing worth copying.
                            @if val.as_str() != Some("(sensitive)") {
                                button.copy type="button" data-copy={ "out-" (k) } aria-label={ "Copy " (k) } { "Copy" }
                            }
                        }
                    }
                } } }
            }
            h2 { "Runs" }
            ol.timeline {
                @for r in &views {
                    li {
                        (badge(r["status"].as_str().unwrap_or_default()))
                        " " strong { (text(&r["kind"])) }
                        " " code.muted { (text(&r["run_id"])) }
                        " · " (age(&r["created_at"]))
                        @if let Some(by) = r["requested_by"].as_str() { " · by " (by) }
                        @if let Some(by) = r["approved_by"].as_str() { " · approved by " (by) }
                        @if let Some(h) = r["plan"]["headline"].as_str() { div.muted { (h) } }
                        @if let Some(e) = r["error_message"].as_str() { div.error { (e) } }
                    }
                }
                @if views.is_empty() { li.muted { "No run yet: it starts when a runner takes the deployment." } }
            }
        }
    })
}

/// `GET /ui/deployments/{id}/live`.
pub async fn deployment_live(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    path: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let csrf = csrf(&req);
    let d = deployments::load(&state, &path).await?;
    let markup = live_section(&state, &ctx, &d, &csrf).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string()))
}

/// `GET /ui/deployments/{id}/log`: the newest run's lines as Server-Sent Events (the API's
/// stream, with the session's authentication).
pub async fn deployment_log(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    Ok(deployments::logs(state, path, web::Query(deployments::LogsQuery::follow())).await?)
}

/// The API answer of an action, as the page shows it: back to the deployment (303), or the
/// deployment page again with the refusal.
async fn after_action(
    state: &AppState,
    ctx: &AuditContext,
    req: &HttpRequest,
    id: &str,
    answer: Result<HttpResponse, AppError>,
) -> Result<HttpResponse, UiError> {
    match answer {
        Ok(res) => Ok(see_other(&format!("/ui/deployments/{id}"), Some(&res))),
        Err(e) => {
            let csrf = csrf(req);
            let status = e.status_code();
            let message = e.to_string();
            // The refusal keeps its audit row: the guard writes it from this status.
            let page = deployment_page(state, ctx, id, &csrf, Some(&message)).await?;
            Ok(html_page(status, page, &csrf))
        }
    }
}

/// `POST /ui/deployments/{id}/{apply|discard|cancel|drift-check}`: the API's verb of the same
/// name (its role is checked by the guard, from the route).
pub async fn action(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    path: web::Path<String>,
    _form: UiForm,
) -> Result<HttpResponse, UiError> {
    let id = path.into_inner();
    let verb = req
        .match_info()
        .as_str()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let (s, p, c) = (state.clone(), web::Path::from(id.clone()), ctx.clone());
    let answer = match verb.as_str() {
        "apply" => runs::apply(s, p, c).await,
        "discard" => runs::discard(s, p, c).await,
        "cancel" => deployments::cancel(s, p, c).await,
        "drift-check" => runs::drift_check(s, p, c).await,
        _ => Err(AppError::not_found(
            "route_not_found",
            format!("no action {verb}"),
        )),
    };
    after_action(&state, &ctx, &req, &id, answer).await
}

/// Destroy, once the deployment's id was typed to confirm it.
pub async fn destroy(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    path: web::Path<String>,
    form: UiForm,
) -> Result<HttpResponse, UiError> {
    let id = path.into_inner();
    let answer = if form.0.get("confirm").map(|c| c.trim()) == Some(id.as_str()) {
        deployments::destroy(state.clone(), web::Path::from(id.clone()), ctx.clone()).await
    } else {
        Err(AppError::invalid(
            "confirm",
            format!("type the deployment's id ({id}) to confirm the destroy"),
        ))
    };
    after_action(&state, &ctx, &req, &id, answer).await
}

/// An update from the page's form (parameters as typed; empty sensitive fields keep theirs).
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    path: web::Path<String>,
    form: UiForm,
) -> Result<HttpResponse, UiError> {
    let id = path.into_inner();
    let d = deployments::load(&state, &id).await?;
    let template = state
        .catalog
        .get()
        .find(d.provider_type, &d.template_name)
        .cloned()
        .ok_or_else(|| {
            UiError(
                StatusCode::CONFLICT,
                format!("template {} is no longer in the catalog", d.template_name),
            )
        })?;
    let (parameters, errors) = form_parameters(&template, &form.0, true);
    let answer = if errors.is_empty() {
        let body =
            json!({"parameters": parameters, "auto_apply": !form.0.contains_key("plan_first")});
        runs::update(
            state.clone(),
            web::Path::from(id.clone()),
            ctx.clone(),
            web::Json(body),
        )
        .await
    } else {
        Err(AppError::Validation(errors))
    };
    after_action(&state, &ctx, &req, &id, answer).await
}

// ---- templates ------------------------------------------------------------------------------

/// `GET /ui/templates`: the catalog grouped by provider.
pub async fn templates(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
) -> Result<HttpResponse, UiError> {
    let csrf = csrf(&req);
    let catalog = state.catalog.get();
    let content = html! {
        h1 { "Templates" }
        @for p in ProviderType::ALL {
            @let list: Vec<&Template> = catalog.list(Some(p), None).collect();
            @if !list.is_empty() {
                section {
                    h2 { (p) " " span.muted { "(" (p.cloud()) ", " (p.format()) ")" } }
                    ul.cards {
                        @for t in list {
                            li {
                                a href={ "/ui/templates/" (p) "/" (t.name) } { strong { (t.name) } }
                                @if !t.title.is_empty() { " — " (t.title) }
                                @if let Some(e) = &t.error { div.error { "cannot be used: " (e) } }
                                @else { div.muted { (t.parameters.len()) " parameters" } }
                            }
                        }
                    }
                }
            }
        }
    };
    let page = view::layout(
        &frame("Templates", Nav::Templates, &ctx, &state, &csrf),
        content,
    );
    Ok(html_page(StatusCode::OK, page, &csrf))
}

/// `GET /ui/templates/{provider_type}/{name}`: the template and its deploy form.
pub async fn template(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UiError> {
    let csrf = csrf(&req);
    let t = find_template(&state, &path.0, &path.1)?;
    let page = template_page(&state, &ctx, &t, &csrf, &HashMap::new(), None, None);
    Ok(html_page(StatusCode::OK, page, &csrf))
}

fn find_template(state: &AppState, provider: &str, name: &str) -> Result<Template, UiError> {
    let p = crate::http::templates::parse_provider(provider)?;
    state
        .catalog
        .get()
        .find(p, name)
        .cloned()
        .ok_or_else(|| crate::http::templates::template_not_found(p, name).into())
}

fn template_page(
    state: &AppState,
    ctx: &AuditContext,
    t: &Template,
    csrf: &Csrf,
    values: &HashMap<String, String>,
    errors: Option<&HashMap<String, String>>,
    problem: Option<&str>,
) -> Markup {
    let title = format!("Template {}", t.name);
    let error = |field: &str| errors.and_then(|e| e.get(field)).cloned();
    let azure = t.provider_type == ProviderType::Azure;
    let text_field = |name: &str, label: &str, hint: &str| {
        let err = error(name);
        html! {
            div.field {
                label for={ "f-" (name) } { (label) }
                input id={ "f-" (name) } name=(name) value=[values.get(name)]
                    aria-invalid=[err.as_ref().map(|_| "true")]
                    aria-describedby={ "h-" (name) @if err.is_some() { " e-" (name) } };
                small.hint id={ "h-" (name) } { (hint) }
                @if let Some(e) = err { small.error id={ "e-" (name) } { (e) } }
            }
        }
    };
    let content = html! {
        p.crumbs { a href="/ui/templates" { "Templates" } " / " (t.provider_type) " / " (t.name) }
        h1 { (t.name) " " span.muted { "(" (t.provider_type) ")" } }
        @if !t.title.is_empty() { p.lead { (t.title) } }
        @if !t.description.is_empty() { p { (t.description) } }
        @if let Some(e) = &t.error { (alert(&format!("This template cannot be used: {e}"))) }
        @if let Some(p) = problem { (alert(p)) }
        @if may(&ctx.caller, Role::Operator) && t.error.is_none() {
            h2 { "Deploy" }
            form.deploy method="post" action={ "/ui/templates/" (t.provider_type) "/" (t.name) } novalidate {
                (csrf_field(&csrf.value))
                @if azure {
                    (text_field("subscription_id", "Subscription", "the Azure subscription id"))
                    (text_field("resource_group", "Resource group", "created when missing"))
                    @if t.target_scope == crate::catalog::TargetScope::ManagementGroup {
                        (text_field("management_group", "Management group", "the management group id this template deploys at"))
                    }
                }
                (text_field("location", "Location", "a region such as us-east-1 or westeurope (optional)"))
                @for spec in &t.parameters {
                    (field(spec, values.get(&spec.name).map(|v| Value::String(v.clone())).as_ref(), error(&format!("parameters.{}", spec.name))))
                }
                (plan_first_box(values.contains_key("plan_first")))
                button.primary type="submit" { "Deploy" }
            }
        } @else {
            h2 { "Parameters" }
            ul { @for spec in &t.parameters { li { code { (spec.name) } " " (spec.type_expression) @if spec.required { " (required)" } } } }
        }
    };
    view::layout(&frame(&title, Nav::Templates, ctx, state, csrf), content)
}

fn plan_first_box(checked: bool) -> Markup {
    html! {
        div.field.check {
            input #plan_first type="checkbox" name="plan_first" value="1" checked[checked];
            label for="plan_first" { "Plan first: show the plan and wait for an approval" }
        }
    }
}

/// One form field generated from a parameter's declaration: its type, whether it is
/// required, its default, allowed values (a select), bounds, and a password field when it is
/// sensitive. `value` prefills it (never a sensitive value); `error` is the server's 422 for it.
fn field(spec: &ParamSpec, value: Option<&Value>, error: Option<String>) -> Markup {
    let id = format!("p-{}", spec.name);
    let name = format!("p.{}", spec.name);
    let current: Option<String> = match value {
        _ if spec.sensitive => None,
        Some(v) if v.as_str() == Some("(sensitive)") => None,
        Some(v) => Some(text(v)),
        // Not typed: the field stays empty and the template's default applies.
        None => None,
    };
    let placeholder = spec
        .default
        .as_ref()
        .map(|d| format!("default: {}", text(d)));
    let hint = {
        let mut parts = vec![spec.type_expression.clone()];
        if spec.required {
            parts.push("required".into());
        }
        if let Some(d) = &spec.default {
            parts.push(format!("default {}", text(d)));
        }
        if let (Some(a), Some(b)) = (spec.min_length, spec.max_length) {
            parts.push(format!("{a}-{b} characters"));
        }
        if spec.min_value.is_some() || spec.max_value.is_some() {
            parts.push(format!(
                "between {} and {}",
                spec.min_value.map_or("-∞".into(), |v| v.to_string()),
                spec.max_value.map_or("∞".into(), |v| v.to_string())
            ));
        }
        if matches!(
            spec.param_type,
            ParamType::List | ParamType::Map | ParamType::Object | ParamType::Any
        ) {
            parts.push("JSON".into());
        }
        parts.join(" · ")
    };
    let described = format!(
        "h-{}{}",
        spec.name,
        if error.is_some() {
            format!(" e-{}", spec.name)
        } else {
            String::new()
        }
    );
    let invalid = error.as_ref().map(|_| "true");
    html! {
        div.field {
            label for=(id) { (spec.name) @if spec.required { span.req aria-hidden="true" { " *" } } }
            @if let Some(allowed) = &spec.allowed_values {
                select id=(id) name=(name) required[spec.required] aria-invalid=[invalid] aria-describedby=(described) {
                    @if !spec.required { option value="" { "(default)" } }
                    @for a in allowed {
                        @let v = text(a);
                        option value=(v) selected[current.as_deref() == Some(v.as_str())] { (v) }
                    }
                }
            } @else if spec.param_type == ParamType::Bool {
                select id=(id) name=(name) required[spec.required] aria-invalid=[invalid] aria-describedby=(described) {
                    @if !spec.required { option value="" { "(default)" } }
                    option value="true" selected[current.as_deref() == Some("true")] { "true" }
                    option value="false" selected[current.as_deref() == Some("false")] { "false" }
                }
            } @else if matches!(spec.param_type, ParamType::List | ParamType::Map | ParamType::Object | ParamType::Any) {
                textarea id=(id) name=(name) rows="3" required[spec.required] placeholder=[placeholder.clone()] aria-invalid=[invalid] aria-describedby=(described) {
                    (current.unwrap_or_default())
                }
            } @else {
                input id=(id) name=(name)
                    type=(if spec.sensitive { "password" } else if spec.param_type == ParamType::Number { "number" } else { "text" })
                    autocomplete=(if spec.sensitive { "new-password" } else { "off" })
                    value=[current]
                    placeholder=[placeholder.clone()]
                    required[spec.required]
                    minlength=[spec.min_length] maxlength=[spec.max_length]
                    min=[spec.min_value] max=[spec.max_value]
                    step=[(spec.param_type == ParamType::Number).then_some("any")]
                    aria-invalid=[invalid] aria-describedby=(described);
            }
            @if !spec.description.is_empty() { small.hint id={ "h-" (spec.name) } { (spec.description) " (" (hint) ")" } }
            @else { small.hint id={ "h-" (spec.name) } { (hint) } }
            @if let Some(e) = error { small.error id={ "e-" (spec.name) } { (e) } }
        }
    }
}

/// The form's `p.<name>` fields as JSON parameters by the template's types: empty fields are
/// left out (the template's default applies; on an update, the current value stays). A value
/// that does not convert is named in the errors and stands in as its text, so the template's
/// own checks of the other fields can be reported with it.
fn form_parameters(
    t: &Template,
    form: &HashMap<String, String>,
    skip_empty: bool,
) -> (Map<String, Value>, crate::catalog::ValidationErrors) {
    let mut out = Map::new();
    let mut errors = crate::catalog::ValidationErrors::default();
    for spec in &t.parameters {
        let Some(raw) = form.get(&format!("p.{}", spec.name)) else {
            continue;
        };
        if raw.is_empty() && (skip_empty || !spec.required) {
            continue;
        }
        let value = match spec.param_type {
            ParamType::Number => match raw.trim().parse::<f64>() {
                Ok(n) if n.fract() == 0.0 && n.abs() < 9e15 => json!(n as i64),
                Ok(n) => json!(n),
                Err(_) => {
                    errors.add(format!("parameters.{}", spec.name), "must be a number");
                    json!(raw)
                }
            },
            ParamType::Bool => match raw.as_str() {
                "true" => json!(true),
                "false" => json!(false),
                _ => {
                    errors.add(format!("parameters.{}", spec.name), "must be true or false");
                    json!(raw)
                }
            },
            ParamType::List | ParamType::Map | ParamType::Object | ParamType::Any => {
                match serde_json::from_str::<Value>(raw) {
                    Ok(v) => v,
                    Err(_) if spec.param_type == ParamType::Any => json!(raw),
                    Err(e) => {
                        errors.add(
                            format!("parameters.{}", spec.name),
                            format!("must be JSON: {e}"),
                        );
                        json!(raw)
                    }
                }
            }
            ParamType::String => json!(raw),
        };
        out.insert(spec.name.clone(), value);
    }
    (out, errors)
}

/// `POST /ui/templates/{provider_type}/{name}`: deploys from the form; a 422 comes back as
/// the form with each problem next to its field.
pub async fn deploy(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    path: web::Path<(String, String)>,
    form: UiForm,
) -> Result<HttpResponse, UiError> {
    let t = find_template(&state, &path.0, &path.1)?;
    let form = form.0;
    let (parameters, mut errors) = form_parameters(&t, &form, false);
    let answer = if !errors.is_empty() {
        // Report the template's own checks of the other fields at once, too.
        if let Err(more) = t.validate(&parameters) {
            errors.merge(more);
        }
        Err(AppError::Validation(errors))
    } else {
        let mut body = json!({
            "template_name": t.name,
            "provider_type": t.provider_type,
            "parameters": parameters,
            "auto_apply": !form.contains_key("plan_first"),
        });
        for k in [
            "subscription_id",
            "resource_group",
            "management_group",
            "location",
        ] {
            if let Some(v) = form.get(k).filter(|v| !v.trim().is_empty()) {
                body[k] = json!(v);
            }
        }
        deployments::accept(&state, &req, &ctx, body).await
    };
    match answer {
        Ok((d, res)) => Ok(see_other(&format!("/ui/deployments/{}", d.id), Some(&res))),
        Err(e) => {
            let csrf = csrf(&req);
            let status = e.status_code();
            let (errors, problem) = match &e {
                AppError::Validation(v) => (
                    serde_json::to_value(v)
                        .ok()
                        .and_then(|v| v.as_array().cloned())
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|p| {
                            Some((
                                p["field"].as_str()?.to_string(),
                                p["problem"].as_str()?.to_string(),
                            ))
                        })
                        .collect::<HashMap<_, _>>(),
                    "Some fields need attention.".to_string(),
                ),
                other => (HashMap::new(), other.to_string()),
            };
            let values: HashMap<String, String> = form
                .iter()
                .filter(|(k, _)| k.as_str() != "csrf")
                .map(|(k, v)| (k.strip_prefix("p.").unwrap_or(k).to_string(), v.clone()))
                .collect();
            // Sensitive values are not sent back to the browser.
            let values = values
                .into_iter()
                .filter(|(k, _)| !t.parameters.iter().any(|p| p.sensitive && &p.name == k))
                .collect();
            let page = template_page(
                &state,
                &ctx,
                &t,
                &csrf,
                &values,
                Some(&errors),
                Some(&problem),
            );
            Ok(html_page(status, page, &csrf))
        }
    }
}

// ---- health, login --------------------------------------------------------------------------

/// `GET /ui/health`: the database, runner capacity and queue, version, and each provider.
pub async fn health(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
) -> Result<HttpResponse, UiError> {
    let csrf = csrf(&req);
    let (healthy, report) = meta::health_report(&state).await;
    let stats = state
        .persistence
        .call(crate::actors::persistence::GetDatabaseStats)
        .await
        .ok();
    let queue = stats
        .as_ref()
        .and_then(|s| {
            s.runs_by_status
                .iter()
                .find(|(k, _)| k == "pending")
                .map(|(_, n)| *n)
        })
        .unwrap_or(0);
    let content = html! {
        h1 { "Health" }
        dl.facts {
            dt { "Status" } dd { (badge(if healthy { "healthy" } else { "unhealthy" })) }
            dt { "Version" } dd { (env!("CARGO_PKG_VERSION")) }
            dt { "Database" } dd {
                @if report["database"]["reachable"] == true { "reachable" }
                @else { "unreachable: " (text(&report["database"]["error"])) }
            }
            dt { "Runner" } dd {
                (text(&report["runner"]["running"])) " running of " (text(&report["runner"]["capacity"])) " on this node"
            }
            dt { "Queue" } dd { (queue) " pending runs" }
            dt { "Terraform" } dd {
                @if report["terraform"]["found"] == true { code { (text(&report["terraform"]["path"])) } }
                @else { "not found" }
            }
        }
        h2 { "Providers" }
        div.scroll { table.list {
            thead { tr { th scope="col" { "Provider" } th scope="col" { "Templates" } th scope="col" { "Available" } th scope="col" { "Why not" } } }
            tbody {
                @for p in ProviderType::ALL {
                    @let (ok, why) = meta::availability(&state, p);
                    tr {
                        td { (p) }
                        td { (state.catalog.get().count(p)) }
                        td { (badge(if ok { "available" } else { "unavailable" })) }
                        td { (why.unwrap_or_default()) }
                    }
                }
            }
        } }
    };
    let page = view::layout(&frame("Health", Nav::Health, &ctx, &state, &csrf), content);
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok(html_page(status, page, &csrf))
}

#[derive(serde::Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a dashboard address may be the page after login.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/")) && !n.contains("//") && !n.contains('\\') =>
        {
            n.to_string()
        }
        _ => "/ui".into(),
    }
}

fn login_page(csrf: &Csrf, next: &str, problem: Option<&str>) -> Markup {
    let frame = Frame {
        title: "Log in",
        nav: Nav::None,
        caller: None,
        sessions: false,
        csrf: &csrf.value,
    };
    view::layout(
        &frame,
        html! {
            h1 { "Log in" }
            @if let Some(p) = problem { (alert(p)) }
            form.login method="post" action="/ui/login" {
                (csrf_field(&csrf.value))
                input type="hidden" name="next" value=(next);
                div.field {
                    label for="token" { "API token" }
                    input #token name="token" type="password" autocomplete="current-password" required autofocus;
                    small.hint { "Kept for this browser session only." }
                }
                button.primary type="submit" { "Log in" }
            }
        },
    )
}

/// `GET /ui/login`.
pub async fn login_form(req: HttpRequest, q: web::Query<NextQuery>) -> HttpResponse {
    let csrf = csrf(&req);
    let next = safe_next(q.next.as_deref());
    html_page(StatusCode::OK, login_page(&csrf, &next, None), &csrf)
}

/// `POST /ui/login`: a valid token becomes a session cookie (and an audit row naming it).
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    ctx: AuditContext,
    security: web::Data<std::sync::Arc<Security>>,
    form: UiForm,
) -> HttpResponse {
    let next = safe_next(form.0.get("next").map(String::as_str));
    let presented = form.0.get("token").map(|t| t.trim()).unwrap_or_default();
    match security.check(presented.as_bytes()) {
        Some(token) => {
            let mut entry = ctx.entry(303, None);
            entry.actor = token.name.clone();
            entry.role = Some(token.role);
            if let Err(e) = state
                .persistence
                .call(crate::actors::persistence::RecordAudit(entry))
                .await
            {
                tracing::warn!(error = %e, "could not write an audit row");
            }
            let res = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, next))
                .cookie(cookie(SESSION_COOKIE, security.sessions().issue(token)))
                .finish();
            audited(res)
        }
        None => {
            let csrf = csrf(&req);
            html_page(
                StatusCode::UNAUTHORIZED,
                login_page(&csrf, &next, Some("That token is not valid.")),
                &csrf,
            )
        }
    }
}

/// `POST /ui/logout`.
pub async fn logout(_form: UiForm) -> HttpResponse {
    let mut gone = cookie(SESSION_COOKIE, String::new());
    gone.make_removal();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/ui/login"))
        .cookie(gone)
        .finish()
}

/// `GET /ui/assets/{file}`: the embedded stylesheet and script.
pub async fn asset(path: web::Path<String>) -> HttpResponse {
    let (body, kind) = match path.as_str() {
        "app.css" => (include_str!("assets/app.css"), "text/css; charset=utf-8"),
        "app.js" => (
            include_str!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(body)
}

/// Who a dashboard request is (for the guard): the caller of a valid session cookie.
pub fn session_caller(req: &actix_web::dev::ServiceRequest, security: &Security) -> Option<Caller> {
    let value = req.cookie(SESSION_COOKIE)?;
    security
        .sessions()
        .verify(value.value(), security.tokens())
        .map(|t| Caller {
            name: t.name.clone(),
            role: t.role,
        })
}

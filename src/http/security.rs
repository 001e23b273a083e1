//! What stands in front of every handler: bearer-token authentication (SHA-256 digests
//! compared in constant time; `/` and `/health` stay open), authorization by role
//! (`access::RULES`), the audit rows of refusals, the rate limit of `POST /deploy` (per token, or
//! per client address without auth), security headers, and CORS from an allow-list only.
//! Tokens are never logged or stored.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::{Method, header};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{Error, HttpMessage, HttpResponse, ResponseError, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use super::AppState;
use super::access::{self, AuditContext, AuditTarget, Audited};
use super::envelope::AppError;
use super::ui::pages::UiError;
use super::ui::session::SessionKeys;
use crate::actors::persistence::RecordAudit;
use crate::config::{ResolvedToken, Settings, token_digest};
use crate::domain::{AuditEntry, Caller};

pub struct Security {
    tokens: Vec<ResolvedToken>,
    deploy_limiter: Option<DefaultKeyedRateLimiter<String>>,
    sessions: SessionKeys,
}

impl Security {
    pub fn new(
        settings: &Settings,
        secret_key: Option<&crate::secrets::SecretKey>,
    ) -> Arc<Security> {
        let deploy_limiter = NonZeroU32::new(settings.server.deploy_rate_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Arc::new(Security {
            // validate() resolved them once already.
            tokens: settings.auth.resolve().unwrap_or_default(),
            deploy_limiter,
            sessions: SessionKeys::new(secret_key),
        })
    }

    pub fn tokens(&self) -> &[ResolvedToken] {
        &self.tokens
    }

    /// The dashboard's session cookies.
    pub fn sessions(&self) -> &SessionKeys {
        &self.sessions
    }

    /// The token whose digest matches the presented token's. Every configured digest is
    /// compared, in constant time, so the time taken says nothing about which matched.
    pub fn check(&self, presented: &[u8]) -> Option<&ResolvedToken> {
        let digest = token_digest(presented);
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.sha256.as_slice().ct_eq(&digest)) {
                found = Some(t);
            }
        }
        found
    }
}

/// Authentication, authorization by role, the deploy rate limit and the audit rows the
/// handlers do not write themselves (refusals, and changes outside the database).
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let Some(security) = req.app_data::<web::Data<Arc<Security>>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let method = req.method().as_str().to_string();
    // The path as the router reads it (percent-encoded characters decoded): judged on the raw
    // path, `/%61udit` would match no rule and still reach `/audit`.
    let path = req.match_info().as_str().to_string();
    let matched = access::rule_for_path(&method, &path);
    let mut ctx = AuditContext {
        caller: Caller::anonymous(),
        authenticated: true,
        action: matched
            .as_ref()
            .map_or("unknown", |(r, _)| r.action.unwrap_or("read"))
            .to_string(),
        route: match &matched {
            Some((r, _)) => format!("{method} {}", r.path),
            None => format!("{method} {}", access::clip(&path)),
        },
        target: matched.as_ref().and_then(|(_, p)| p.first().cloned()),
        request_id: req
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(|id| id.to_string()),
        client_addr: client_ip(&req).map(|ip| ip.to_string()),
    };
    let public = matched.as_ref().is_some_and(|(r, _)| r.role.is_none());
    let ui = access::is_ui(&path);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    if !security.tokens.is_empty() && public {
        // Nobody in particular (a login attempt names its token in its own audit row).
        ctx.caller = Caller {
            name: Caller::UNKNOWN.into(),
            role: crate::domain::Role::Viewer,
        };
        ctx.authenticated = false;
    } else if !security.tokens.is_empty() && ui && req.method() != Method::OPTIONS {
        // The dashboard: a session cookie, or the way to the login page.
        match super::ui::pages::session_caller(&req, &security) {
            Some(caller) => ctx.caller = caller,
            None if req.method() == Method::GET => {
                let next = req
                    .uri()
                    .path_and_query()
                    .map_or("/ui", |p| p.as_str())
                    .to_string();
                let location = format!(
                    "/ui/login?next={}",
                    serde_urlencoded::to_string([("", next.as_str())])
                        .unwrap_or_default()
                        .trim_start_matches('=')
                );
                let res = HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, location))
                    .finish();
                return Ok(req.into_response(res).map_into_right_body());
            }
            None => {
                let mut entry = ctx.entry(401, Some("unauthorized"));
                entry.actor = Caller::UNKNOWN.into();
                entry.role = None;
                record(state.as_ref(), entry).await;
                let page = UiError(
                    StatusCode::UNAUTHORIZED,
                    "your session has ended: log in again".into(),
                );
                return Ok(req
                    .into_response(page.error_response())
                    .map_into_right_body());
            }
        }
    } else if !security.tokens.is_empty() && !public && req.method() != Method::OPTIONS {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        match security.check(presented.as_bytes()) {
            Some(t) => {
                ctx.caller = Caller {
                    name: t.name.clone(),
                    role: t.role,
                }
            }
            None => {
                let mut entry = ctx.entry(401, Some("unauthorized"));
                entry.actor = Caller::UNKNOWN.into();
                entry.role = None;
                record(state.as_ref(), entry).await;
                return Ok(refuse(req, AppError::Unauthorized, &ctx));
            }
        }
    }
    if let Some((rule, _)) = &matched
        && let Some(needed) = rule.role
        && !ctx.caller.role.allows(needed)
    {
        let what = rule.action.map_or_else(
            || format!("read {}", rule.path),
            |a| a.replace(['.', '_'], " "),
        );
        let err = AppError::Forbidden(format!(
            "token {:?} has the role {}: {what} needs {needed} or above",
            ctx.caller.name, ctx.caller.role
        ));
        record(state.as_ref(), ctx.entry(403, Some("forbidden"))).await;
        if ui {
            let page = UiError(StatusCode::FORBIDDEN, err.to_string());
            return Ok(req
                .into_response(page.error_response())
                .map_into_right_body());
        }
        return Ok(refuse(req, err, &ctx));
    }
    // Every way to create a deployment (the API's and the dashboard's form) is rate limited.
    if matched
        .as_ref()
        .is_some_and(|(r, _)| r.action == Some("deployment.create"))
        && let Some(limiter) = &security.deploy_limiter
    {
        let key = if security.tokens.is_empty() {
            format!(
                "ip:{}",
                client_ip(&req).map(|ip| ip.to_string()).unwrap_or_default()
            )
        } else {
            format!("token:{}", ctx.caller.name)
        };
        if let Err(not_until) = limiter.check_key(&key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            record(state.as_ref(), ctx.entry(429, Some("rate_limited"))).await;
            return Ok(refuse(
                req,
                AppError::TooManyRequests(wait.as_secs().max(1)),
                &ctx,
            ));
        }
    }
    let audit_this = access::is_change(&method);
    req.extensions_mut().insert(ctx.clone());
    let mut res = next.call(req).await?;
    with_request_id(res.headers_mut(), &ctx);
    let status = res.status().as_u16();
    let audited = res.response().extensions().get::<Audited>().is_some();
    if audit_this && !audited && status != 503 {
        let code = res
            .response()
            .error()
            .and_then(|e| e.as_error::<AppError>())
            .map(AppError::code);
        let mut entry = ctx.entry(status, code);
        if let Some(AuditTarget(t)) = res.response().extensions().get::<AuditTarget>() {
            entry.target = Some(t.clone());
        }
        record(state.as_ref(), entry).await;
    }
    Ok(res.map_into_left_body())
}

/// The error's envelope as this request's answer (with its request id).
fn refuse<B>(
    req: ServiceRequest,
    err: AppError,
    ctx: &AuditContext,
) -> ServiceResponse<EitherBody<B>> {
    let mut res = req.into_response(err.error_response());
    with_request_id(res.headers_mut(), ctx);
    res.map_into_right_body()
}

/// `x-request-id`: the id of the request in the logs and the audit trail.
fn with_request_id(headers: &mut header::HeaderMap, ctx: &AuditContext) {
    if let Some(id) = &ctx.request_id
        && let Ok(v) = header::HeaderValue::from_str(id)
    {
        headers.insert(header::HeaderName::from_static("x-request-id"), v);
    }
}

/// Writes one audit row; a failure is logged (the answer stands: nothing changed with it).
async fn record(state: Option<&web::Data<AppState>>, entry: AuditEntry) {
    let Some(state) = state else { return };
    if let Err(e) = state.persistence.call(RecordAudit(entry)).await {
        tracing::warn!(error = %e, "could not write an audit row");
    }
}

fn client_ip(req: &ServiceRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// nosniff, frame deny, no referrer, and a CSP that allows nothing but what `/docs` needs.
pub fn headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ))
}

/// CORS from `server.cors_allowed_origins` only; with none, browsers get no CORS grant.
pub fn cors(settings: &Settings) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(vec!["GET", "POST", "PATCH", "DELETE"])
        .allowed_headers(vec![
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("idempotency-key"),
        ])
        .max_age(600);
    for origin in &settings.server.cors_allowed_origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

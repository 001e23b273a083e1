//! What stands in front of every handler: bearer-token authentication (constant-time
//! comparison; `/` and `/health` stay open), the rate limit of `POST /deploy` (per token, or per
//! client address without auth), security headers, and CORS from an allow-list only.
//! Tokens are never logged.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{Error, HttpMessage, web};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use super::envelope::AppError;
use crate::config::Settings;

/// Who made a request: the token's index in `auth.tokens` (never the token itself), or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller(pub Option<usize>);

pub struct Security {
    tokens: Vec<Vec<u8>>,
    deploy_limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl Security {
    pub fn new(settings: &Settings) -> Arc<Security> {
        let deploy_limiter = NonZeroU32::new(settings.server.deploy_rate_per_minute)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        Arc::new(Security {
            tokens: settings
                .auth
                .tokens
                .iter()
                .map(|t| t.as_bytes().to_vec())
                .collect(),
            deploy_limiter,
        })
    }

    /// The index of the matching token. Every configured token is compared, in constant time,
    /// so the time taken says nothing about which (or how much of one) matched.
    fn check(&self, presented: &[u8]) -> Option<usize> {
        let mut found = None;
        for (i, t) in self.tokens.iter().enumerate() {
            if bool::from(t.as_slice().ct_eq(presented)) {
                found = Some(i);
            }
        }
        found
    }
}

fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/health")
}

/// Authentication and the deploy rate limit.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let Some(security) = req.app_data::<web::Data<Arc<Security>>>().cloned() else {
        return next.call(req).await;
    };
    let mut caller = Caller(None);
    if !security.tokens.is_empty() && !is_public(req.path()) && req.method() != Method::OPTIONS {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        match security.check(presented.as_bytes()) {
            Some(i) => caller = Caller(Some(i)),
            None => return Err(AppError::Unauthorized.into()),
        }
    }
    if req.method() == Method::POST
        && req.path() == "/deploy"
        && let Some(limiter) = &security.deploy_limiter
    {
        let key = match caller.0 {
            Some(i) => format!("token:{i}"),
            None => format!(
                "ip:{}",
                client_ip(&req).map(|ip| ip.to_string()).unwrap_or_default()
            ),
        };
        if let Err(not_until) = limiter.check_key(&key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(AppError::TooManyRequests(wait.as_secs().max(1)).into());
        }
    }
    req.extensions_mut().insert(caller);
    next.call(req).await
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
        .allowed_methods(vec!["GET", "POST", "DELETE"])
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

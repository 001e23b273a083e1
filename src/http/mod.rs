//! The REST API of design.md §7. Handlers are thin: parse and validate, send one message,
//! map the answer to the envelope. `configure` registers everything, so tests and the daemon
//! build the same app.

pub mod access;
pub mod audit;
pub mod deployments;
pub mod envelope;
pub mod meta;
pub mod openapi;
pub mod resource_groups;
pub mod runs;
pub mod security;
pub mod templates;
pub mod ui;
pub mod webhooks;

use std::sync::Arc;

use actix::Addr;
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::{HttpRequest, HttpResponse, Resource, web};

use crate::actors::persistence::PersistenceHandle;
use crate::actors::supervisor::Supervisor;
use crate::catalog::CatalogHandle;
use crate::config::Settings;
use crate::engines::Engines;
use envelope::AppError;

/// What every handler can reach.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub persistence: PersistenceHandle,
    pub supervisor: Addr<Supervisor>,
    pub catalog: CatalogHandle,
    pub engines: Arc<Engines>,
    pub secret_key: Arc<Option<crate::secrets::SecretKey>>,
}

pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(move |err, _| json_error(err, max_body_bytes).into()),
    )
    .app_data(web::PayloadConfig::default().limit(max_body_bytes))
    .app_data(web::QueryConfig::default().error_handler(|err, _| query_error(err).into()))
    .app_data(web::PathConfig::default().error_handler(|err, _| {
        AppError::not_found("not_found", format!("invalid path: {err}")).into()
    }))
    .service(resource("/", "GET").route(web::get().to(meta::index)))
    .service(resource("/health", "GET").route(web::get().to(meta::health)))
    .service(resource("/providers", "GET").route(web::get().to(meta::providers)))
    .service(resource("/metrics", "GET").route(web::get().to(meta::metrics)))
    .service(resource("/openapi.json", "GET").route(web::get().to(openapi::openapi_json)))
    .service(resource("/docs", "GET").route(web::get().to(openapi::docs)))
    .service(resource("/templates", "GET").route(web::get().to(templates::list)))
    .service(
        resource("/templates/{provider_type}/{name}", "GET")
            .route(web::get().to(templates::detail)),
    )
    .service(
        resource("/templates/{provider_type}/{name}/parameters", "GET")
            .route(web::get().to(templates::parameters)),
    )
    .service(
        resource("/templates/{provider_type}/{name}/content", "GET")
            .route(web::get().to(templates::content)),
    )
    .service(resource("/deploy", "POST").route(web::post().to(deployments::deploy)))
    .service(resource("/deployments", "GET").route(web::get().to(deployments::list)))
    .service(
        resource("/deployments/{id}", "GET, PATCH, DELETE")
            .route(web::get().to(deployments::get))
            .route(web::patch().to(runs::update))
            .route(web::delete().to(deployments::destroy)),
    )
    .service(resource("/deployments/{id}/status", "GET").route(web::get().to(deployments::status)))
    .service(resource("/deployments/{id}/logs", "GET").route(web::get().to(deployments::logs)))
    .service(resource("/deployments/{id}/runs", "GET").route(web::get().to(runs::list)))
    .service(resource("/deployments/{id}/plan", "POST").route(web::post().to(runs::plan)))
    .service(
        resource("/deployments/{id}/drift-check", "POST").route(web::post().to(runs::drift_check)),
    )
    .service(resource("/deployments/{id}/apply", "POST").route(web::post().to(runs::apply)))
    .service(resource("/deployments/{id}/discard", "POST").route(web::post().to(runs::discard)))
    .service(resource("/runs/{id}", "GET").route(web::get().to(runs::get)))
    .service(resource("/runs/{id}/logs", "GET").route(web::get().to(runs::logs)))
    .service(
        resource("/deployments/{id}/cancel", "POST").route(web::post().to(deployments::cancel)),
    )
    .service(
        resource("/resource-groups", "GET, POST")
            .route(web::get().to(resource_groups::list))
            .route(web::post().to(resource_groups::create)),
    )
    .service(
        resource("/resource-groups/{name}", "DELETE")
            .route(web::delete().to(resource_groups::delete)),
    )
    .service(
        resource("/resource-groups/{name}/resources", "GET")
            .route(web::get().to(resource_groups::resources)),
    )
    .service(resource("/audit", "GET").route(web::get().to(audit::list)))
    .service(
        resource("/webhooks", "GET, POST")
            .route(web::get().to(webhooks::list))
            .route(web::post().to(webhooks::create)),
    )
    .service(
        resource("/webhooks/{id}", "GET, DELETE")
            .route(web::get().to(webhooks::get))
            .route(web::delete().to(webhooks::delete)),
    )
    .service(
        resource("/webhooks/{id}/deliveries", "GET").route(web::get().to(webhooks::deliveries)),
    )
    .service(
        resource("/webhooks/{id}/deliveries/{delivery_id}/redeliver", "POST")
            .route(web::post().to(webhooks::redeliver)),
    )
    .service(resource("/ui", "GET").route(web::get().to(ui::pages::deployments)))
    .service(
        resource("/ui/deployments/rows", "GET").route(web::get().to(ui::pages::deployment_rows)),
    )
    .service(resource("/ui/deployments/{id}", "GET").route(web::get().to(ui::pages::deployment)))
    .service(
        resource("/ui/deployments/{id}/live", "GET")
            .route(web::get().to(ui::pages::deployment_live)),
    )
    .service(
        resource("/ui/deployments/{id}/log", "GET").route(web::get().to(ui::pages::deployment_log)),
    )
    .service(
        resource("/ui/deployments/{id}/apply", "POST").route(web::post().to(ui::pages::action)),
    )
    .service(
        resource("/ui/deployments/{id}/discard", "POST").route(web::post().to(ui::pages::action)),
    )
    .service(
        resource("/ui/deployments/{id}/cancel", "POST").route(web::post().to(ui::pages::action)),
    )
    .service(
        resource("/ui/deployments/{id}/drift-check", "POST")
            .route(web::post().to(ui::pages::action)),
    )
    .service(
        resource("/ui/deployments/{id}/destroy", "POST").route(web::post().to(ui::pages::destroy)),
    )
    .service(
        resource("/ui/deployments/{id}/update", "POST").route(web::post().to(ui::pages::update)),
    )
    .service(resource("/ui/templates", "GET").route(web::get().to(ui::pages::templates)))
    .service(
        resource("/ui/templates/{provider_type}/{name}", "GET, POST")
            .route(web::get().to(ui::pages::template))
            .route(web::post().to(ui::pages::deploy)),
    )
    .service(resource("/ui/health", "GET").route(web::get().to(ui::pages::health)))
    .service(
        resource("/ui/login", "GET, POST")
            .route(web::get().to(ui::pages::login_form))
            .route(web::post().to(ui::pages::login)),
    )
    .service(resource("/ui/logout", "POST").route(web::post().to(ui::pages::logout)))
    .service(resource("/ui/assets/{file}", "GET").route(web::get().to(ui::pages::asset)))
    .default_service(web::to(not_found));
}

/// A page of a list with a numeric keyset cursor: its size (`limit`, default `default`, at
/// most `max`) and the exclusive id to start before (`cursor`: the previous `next_cursor`).
pub(crate) fn keyset_page(
    limit: Option<i64>,
    cursor: Option<&str>,
    default: i64,
    max: i64,
) -> Result<(i64, Option<i64>), AppError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(AppError::invalid(
            "limit",
            format!("must be between 1 and {max}"),
        ));
    }
    let before =
        match cursor {
            None => None,
            Some(c) => Some(c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                AppError::invalid("cursor", "is not a cursor returned by this API")
            })?),
        };
    Ok((limit, before))
}

/// A resource whose unmatched methods answer 405 in the envelope, with `Allow: <allow>`.
/// Every method it allows must have a rule in `access::RULES` (who may call it, and whether
/// it is audited): a route without one is a programming error, found at start.
fn resource(path: &str, allow: &'static str) -> Resource {
    for method in allow.split(',').map(str::trim) {
        assert!(
            access::rule(method, path).is_some(),
            "route {method} {path} has no rule in http::access::RULES"
        );
    }
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(AppError::MethodNotAllowed(allow))
    }))
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::not_found(
        "route_not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

fn json_error(err: JsonPayloadError, limit: usize) -> AppError {
    match err {
        JsonPayloadError::ContentType => AppError::UnsupportedMediaType,
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            AppError::PayloadTooLarge(limit)
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => AppError::invalid("body", e.to_string()),
        JsonPayloadError::Deserialize(e) => AppError::BadRequest(format!("malformed JSON: {e}")),
        other => AppError::BadRequest(format!("cannot read the request body: {other}")),
    }
}

fn query_error(err: QueryPayloadError) -> AppError {
    let text = match err {
        QueryPayloadError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    AppError::invalid("query", text)
}

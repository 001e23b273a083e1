//! `/webhooks` (admin): register a receiver for events, list and delete them, see and repeat
//! their deliveries. The signing secret is stored encrypted and never returned; a URL on a
//! private, loopback or link-local address is refused unless `webhooks.allow_private`.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::access::{self, AuditContext};
use super::envelope::{self, AppError};
use crate::actors::persistence::{
    CreateWebhook, DeleteWebhook, GetWebhook, ListDeliveries, ListWebhooks, PersistError, Redeliver,
};
use crate::catalog::ValidationErrors;
use crate::domain::{EventType, NewWebhook, WebhookId};

pub const MAX_DELIVERIES_LIMIT: i64 = 200;
const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=256;
/// How long registering waits for the URL's host name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    url: Value,
    events: Value,
    secret: Value,
}

fn webhook_id(raw: &str) -> Result<WebhookId, AppError> {
    WebhookId::parse(raw).ok_or_else(|| not_found(raw))
}

fn not_found(raw: &str) -> AppError {
    AppError::not_found(
        "webhook_not_found",
        format!("webhook {} not found", access::clip(raw)),
    )
}

fn or_not_found(raw: &str) -> impl FnOnce(PersistError) -> AppError + '_ {
    move |e| match e {
        PersistError::NotFound => not_found(raw),
        other => other.into(),
    }
}

pub async fn create(
    state: web::Data<AppState>,
    audit: AuditContext,
    body: web::Json<NewWebhookBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let mut errors = ValidationErrors::default();
    let url = match body.url {
        Value::String(u) => match crate::webhooks::parse_target(&u) {
            Ok(target) => Some((u, target)),
            Err(e) => {
                errors.add("url", e.to_string());
                None
            }
        },
        _ => {
            errors.add("url", "must be an http(s) URL");
            None
        }
    };
    let mut events = Vec::new();
    match body.events {
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match item.as_str().map(str::parse::<EventType>) {
                    Some(Ok(e)) if !events.contains(&e) => events.push(e),
                    Some(Ok(e)) => errors.add("events", format!("{e} is listed twice")),
                    _ => errors.add(
                        "events",
                        format!(
                            "{item} is not an event; events are {}",
                            EventType::ALL.map(EventType::as_str).join(", ")
                        ),
                    ),
                }
            }
        }
        _ => errors.add(
            "events",
            format!(
                "must be a non-empty list of {}",
                EventType::ALL.map(EventType::as_str).join(", ")
            ),
        ),
    }
    let secret = match body.secret {
        Value::String(s) if SECRET_LEN.contains(&s.len()) => Some(s),
        _ => {
            errors.add(
                "secret",
                format!(
                    "must be a string of {} to {} characters (receivers verify the signature with it)",
                    SECRET_LEN.start(),
                    SECRET_LEN.end()
                ),
            );
            None
        }
    };
    let key = state.secret_key.as_ref().as_ref();
    if key.is_none() {
        errors.add(
            "secret",
            "webhook secrets are stored encrypted: configure secrets.key or secrets.key_file first",
        );
    }
    let (Some((url, target)), Some(secret), Some(key)) = (url, secret, key) else {
        return Err(AppError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(AppError::Validation(errors));
    }
    let allow_private = state.settings.webhooks.allow_private;
    match tokio::time::timeout(
        RESOLVE_TIMEOUT,
        crate::webhooks::check_target(&target, allow_private),
    )
    .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(AppError::invalid("url", e.to_string())),
        Err(_) => {
            return Err(AppError::invalid(
                "url",
                "its host name did not resolve in time",
            ));
        }
    }
    let webhook = NewWebhook {
        id: WebhookId::generate(),
        url,
        events,
        secret_sealed: crate::secrets::seal_bytes(Some(key), secret.as_bytes()),
        created_by: audit.caller.name.clone(),
    };
    let created = state
        .persistence
        .call(CreateWebhook {
            webhook,
            audit: Some(audit.entry(201, None)),
        })
        .await?;
    let location = format!("/webhooks/{}", created.webhook_id);
    let mut resp = envelope::success(
        StatusCode::CREATED,
        format!("webhook {} registered", created.webhook_id),
        &created,
    );
    resp.headers_mut().insert(
        actix_web::http::header::LOCATION,
        actix_web::http::header::HeaderValue::from_str(&location)
            .map_err(|e| AppError::Internal(e.to_string()))?,
    );
    Ok(access::audited(resp))
}

pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let hooks = state.persistence.call(ListWebhooks).await?;
    Ok(envelope::ok(
        format!("{} webhooks", hooks.len()),
        json!({ "webhooks": hooks, "count": hooks.len() }),
    ))
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = webhook_id(&path)?;
    let hook = state
        .persistence
        .call(GetWebhook(id.to_string()))
        .await
        .map_err(or_not_found(&path))?;
    Ok(envelope::ok(format!("webhook {id}"), hook))
}

pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
    audit: AuditContext,
) -> Result<HttpResponse, AppError> {
    let id = webhook_id(&path)?;
    state
        .persistence
        .call(DeleteWebhook {
            webhook_id: id.to_string(),
            audit: Some(audit.entry(200, None)),
        })
        .await
        .map_err(or_not_found(&path))?;
    Ok(access::audited(envelope::ok(
        format!("webhook {id} deleted"),
        json!({ "webhook_id": id, "deleted": true }),
    )))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn deliveries(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<DeliveriesQuery>,
) -> Result<HttpResponse, AppError> {
    let (limit, before) =
        super::keyset_page(q.limit, q.cursor.as_deref(), 50, MAX_DELIVERIES_LIMIT)?;
    let id = webhook_id(&path)?;
    let mut list = state
        .persistence
        .call(ListDeliveries {
            webhook_id: id.to_string(),
            before,
            limit: limit + 1,
        })
        .await
        .map_err(or_not_found(&path))?;
    let more = list.len() as i64 > limit;
    list.truncate(limit as usize);
    let next_cursor = if more {
        list.last().map(|d| d.delivery_id.to_string())
    } else {
        None
    };
    Ok(envelope::ok(
        format!("{} deliveries", list.len()),
        json!({ "webhook_id": id, "deliveries": list, "count": list.len(), "next_cursor": next_cursor }),
    ))
}

pub async fn redeliver(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    audit: AuditContext,
) -> Result<HttpResponse, AppError> {
    let (raw_id, raw_delivery) = path.into_inner();
    let id = webhook_id(&raw_id)?;
    let delivery_id = raw_delivery
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| delivery_not_found(&raw_delivery))?;
    let delivery = state
        .persistence
        .call(Redeliver {
            webhook_id: id.to_string(),
            delivery_id,
            audit: Some(audit.entry(202, None)),
        })
        .await
        .map_err(|e| match e {
            PersistError::NotFound => delivery_not_found(&raw_delivery),
            other => other.into(),
        })?;
    Ok(access::audited(envelope::success(
        StatusCode::ACCEPTED,
        format!("delivery {delivery_id} of webhook {id} queued again"),
        delivery,
    )))
}

fn delivery_not_found(raw: &str) -> AppError {
    AppError::not_found(
        "delivery_not_found",
        format!("delivery {} not found", access::clip(raw)),
    )
}

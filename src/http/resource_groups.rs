//! Azure resource groups, as the original service offered them: list, create (201), delete
//! (202, the long-running delete is followed in the background) and list a group's resources.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use awc::http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::envelope::{self, AppError};
use crate::catalog::ValidationErrors;
use crate::engines::arm::client::{ArmError, RESOURCES_API};

/// Azure's rules: 1-90 letters, digits, `-_.()`, not ending with a period.
pub fn valid_resource_group(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 90
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.()".contains(c))
}

/// A subscription id (a GUID in Azure; letters, digits and hyphens accepted).
pub fn valid_subscription(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn arm_error(e: ArmError, what: &str) -> AppError {
    match e {
        ArmError::NoCredentials => AppError::ProviderNotConfigured(e.to_string()),
        ArmError::Api {
            status: 404,
            message,
            ..
        } => AppError::not_found("resource_group_not_found", format!("{what}: {message}")),
        ArmError::Api {
            status: 409,
            message,
            ..
        } => AppError::Conflict(message),
        ArmError::Api {
            status: 400,
            message,
            ..
        } => AppError::invalid("body", message),
        other => AppError::BadGateway(other.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    subscription_id: Option<String>,
}

fn subscription(q: &SubscriptionQuery) -> Result<String, AppError> {
    match q.subscription_id.as_deref() {
        Some(s) if valid_subscription(s) => Ok(s.to_string()),
        Some(_) => Err(AppError::invalid(
            "subscription_id",
            "must be a subscription id (letters, digits and hyphens)",
        )),
        None => Err(AppError::invalid("subscription_id", "is required")),
    }
}

fn group_name(name: &str) -> Result<String, AppError> {
    if valid_resource_group(name) {
        Ok(name.to_string())
    } else {
        Err(AppError::not_found(
            "resource_group_not_found",
            format!("{name:?} is not a resource group name"),
        ))
    }
}

fn view(rg: &Value) -> Value {
    json!({
        "id": rg["id"],
        "name": rg["name"],
        "location": rg["location"],
        "tags": rg.get("tags").cloned().unwrap_or(json!({})),
        "provisioning_state": rg["properties"]["provisioningState"],
    })
}

pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<SubscriptionQuery>,
) -> Result<HttpResponse, AppError> {
    let sub = subscription(&q)?;
    let client = state.engines.arm.client();
    let r = client
        .get(&format!(
            "/subscriptions/{sub}/resourcegroups?api-version={RESOURCES_API}"
        ))
        .await
        .map_err(|e| arm_error(e, "subscription"))?;
    let mut groups: Vec<Value> = r.body["value"]
        .as_array()
        .map(|v| v.iter().map(view).collect())
        .unwrap_or_default();
    groups.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(envelope::ok(
        format!("{} resource groups", groups.len()),
        json!({ "resource_groups": groups, "count": groups.len() }),
    ))
}

pub async fn create(
    state: web::Data<AppState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, AppError> {
    let Value::Object(mut body) = body.into_inner() else {
        return Err(AppError::invalid("body", "must be a JSON object"));
    };
    let mut errors = ValidationErrors::default();
    let mut text = |field: &str, ok: fn(&str) -> bool, problem: &str| -> Option<String> {
        match body.remove(field) {
            Some(Value::String(s)) if ok(&s) => Some(s),
            Some(_) => {
                errors.add(field, problem);
                None
            }
            None => {
                errors.add(field, "is required");
                None
            }
        }
    };
    let name = text(
        "name",
        valid_resource_group,
        "must be 1-90 letters, digits or -_.() and not end with a period",
    );
    let location = text(
        "location",
        |l| !l.is_empty() && l.len() <= 64 && l.chars().all(|c| c.is_ascii_alphanumeric()),
        "must be an Azure region such as westeurope",
    );
    let sub = text(
        "subscription_id",
        valid_subscription,
        "must be a subscription id",
    );
    let tags = match body.remove("tags") {
        None | Some(Value::Null) => json!({}),
        Some(t @ Value::Object(_)) => t,
        Some(_) => {
            errors.add("tags", "must be an object");
            Value::Null
        }
    };
    for unknown in body.keys() {
        errors.add(
            unknown.clone(),
            "unknown field (expected name, location, subscription_id, tags)",
        );
    }
    let (Some(name), Some(location), Some(sub), true) = (name, location, sub, errors.is_empty())
    else {
        return Err(AppError::Validation(errors));
    };
    let r = state
        .engines
        .arm
        .client()
        .request(
            Method::PUT,
            &format!("/subscriptions/{sub}/resourcegroups/{name}?api-version={RESOURCES_API}"),
            Some(&json!({ "location": location, "tags": tags })),
        )
        .await
        .map_err(|e| arm_error(e, "subscription"))?;
    let mut resp = envelope::success(
        StatusCode::CREATED,
        format!("resource group {name} created"),
        view(&r.body),
    );
    // A change in Azure, not in the database: the guard writes its audit row, on this name.
    resp.extensions_mut()
        .insert(super::access::AuditTarget(name));
    Ok(resp)
}

pub async fn delete(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<SubscriptionQuery>,
) -> Result<HttpResponse, AppError> {
    let sub = subscription(&q)?;
    let name = group_name(&path)?;
    let client = state.engines.arm.client().clone();
    let r = client
        .request(
            Method::DELETE,
            &format!("/subscriptions/{sub}/resourcegroups/{name}?api-version={RESOURCES_API}"),
            None,
        )
        .await
        .map_err(|e| arm_error(e, &format!("resource group {name}")))?;
    // Follow the long-running delete in the background and log how it ends.
    let group = name.clone();
    actix_rt::spawn(async move {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        match client.wait_operation(&r, deadline).await {
            Ok((state, _)) => {
                tracing::info!(resource_group = %group, state = %state, "resource group delete ended")
            }
            Err(e) => {
                tracing::warn!(resource_group = %group, error = %e, "following the resource group delete failed")
            }
        }
    });
    Ok(envelope::success(
        StatusCode::ACCEPTED,
        format!("deletion of resource group {name} accepted"),
        json!({ "name": name, "subscription_id": sub, "status": "deleting" }),
    ))
}

pub async fn resources(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<SubscriptionQuery>,
) -> Result<HttpResponse, AppError> {
    let sub = subscription(&q)?;
    let name = group_name(&path)?;
    let r = state
        .engines
        .arm
        .client()
        .get(&format!(
            "/subscriptions/{sub}/resourceGroups/{name}/resources?api-version={RESOURCES_API}"
        ))
        .await
        .map_err(|e| arm_error(e, &format!("resource group {name}")))?;
    let mut items: Vec<Value> = r.body["value"]
        .as_array()
        .map(|v| v.iter().map(|x| json!({"id": x["id"], "name": x["name"], "type": x["type"], "location": x["location"]})).collect())
        .unwrap_or_default();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(envelope::ok(
        format!("{} resources", items.len()),
        json!({ "resource_group": name, "resources": items, "count": items.len() }),
    ))
}

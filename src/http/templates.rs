//! `/templates` and a template's detail, parameters and content.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::envelope::{self, AppError};
use crate::catalog::Template;
use crate::domain::ProviderType;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    provider_type: Option<String>,
    cloud: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let provider_type = q.provider_type.as_deref().map(parse_provider).transpose()?;
    if let Some(c) = &q.cloud
        && !["aws", "gcp", "azure"].contains(&c.to_ascii_lowercase().as_str())
    {
        return Err(AppError::invalid("cloud", "must be one of aws, gcp, azure"));
    }
    let catalog = state.catalog.get();
    let templates: Vec<_> = catalog
        .list(provider_type, q.cloud.as_deref())
        .map(summary)
        .collect();
    Ok(envelope::ok(
        format!("{} templates", templates.len()),
        json!({ "templates": templates, "count": templates.len() }),
    ))
}

pub async fn detail(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let t = find(&state, &path.0, &path.1)?;
    Ok(envelope::ok(format!("template {}", t.name), t))
}

pub async fn parameters(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let t = find(&state, &path.0, &path.1)?;
    Ok(envelope::ok(
        format!("parameters of {}", t.name),
        json!({ "template": t.name, "provider_type": t.provider_type, "parameters": t.parameters }),
    ))
}

pub async fn content(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let t = find(&state, &path.0, &path.1)?;
    let content = web::block(move || t.content())
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
        .map_err(|e| AppError::Internal(format!("reading template: {e}")))?;
    Ok(envelope::ok(
        "template content",
        json!({ "template": path.1, "provider_type": ProviderType::parse(&path.0), "content": content }),
    ))
}

fn summary(t: &Template) -> serde_json::Value {
    json!({
        "name": t.name,
        "provider_type": t.provider_type,
        "cloud": t.cloud,
        "format": t.format,
        "title": t.title,
        "description": t.description,
        "file_name": t.file_name,
        "parameter_count": t.parameters.len(),
        "error": t.error,
        "target_scope": t.target_scope,
    })
}

pub fn parse_provider(value: &str) -> Result<ProviderType, AppError> {
    ProviderType::parse(value).ok_or_else(|| {
        AppError::invalid(
            "provider_type",
            format!(
                "unknown provider type {value:?}: expected one of azure, terraform-aws, \
                 terraform-gcp, terraform-azure (aliases: bicep, arm, aws, gcp)"
            ),
        )
    })
}

fn find(state: &AppState, provider: &str, name: &str) -> Result<Template, AppError> {
    let p = ProviderType::parse(provider).ok_or_else(|| {
        AppError::not_found(
            "template_not_found",
            format!("unknown provider type {provider:?}"),
        )
    })?;
    state
        .catalog
        .get()
        .find(p, name)
        .cloned()
        .ok_or_else(|| template_not_found(p, name))
}

pub fn template_not_found(p: ProviderType, name: &str) -> AppError {
    AppError::not_found(
        "template_not_found",
        format!("template {name:?} not found for provider type {p}"),
    )
}

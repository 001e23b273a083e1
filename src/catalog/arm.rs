//! ARM JSON templates (`templates/*.json`) for the native Azure engine.

use std::path::Path;

use serde_json::Value;

use super::params::{ParamSpec, ParamType};
use super::{Template, name_of};
use crate::domain::ProviderType;

pub fn load(path: &Path) -> Template {
    from_source(
        path,
        std::fs::read_to_string(path).map_err(|e| e.to_string()),
    )
}

/// The template an ARM JSON source describes (`path` names it).
pub fn from_source(path: &Path, source: Result<String, String>) -> Template {
    let mut template = Template {
        name: name_of(path),
        provider_type: ProviderType::Azure,
        cloud: "azure",
        format: "arm",
        title: String::new(),
        description: String::new(),
        path: path.to_path_buf(),
        file_name: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
        parameters: Vec::new(),
        required_providers: Vec::new(),
        error: None,
        target_scope: Default::default(),
    };
    let doc: Value = match source
        .and_then(|s| serde_json::from_str(&s).map_err(|e| format!("invalid JSON: {e}")))
    {
        Ok(v) => v,
        Err(e) => {
            template.error = Some(e);
            return template;
        }
    };
    let Some(schema) = doc.get("$schema").and_then(Value::as_str) else {
        template.error = Some("not an ARM template (no $schema or resources)".into());
        return template;
    };
    if doc.get("resources").is_none() {
        template.error = Some("not an ARM template (no $schema or resources)".into());
        return template;
    }
    match super::TargetScope::from_schema(schema) {
        Some(scope) => template.target_scope = scope,
        None => {
            template.error = Some(format!(
                "unknown $schema {schema:?}: expected one of ARM's deployment template schemas"
            ));
            return template;
        }
    }
    let description = doc
        .pointer("/metadata/description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    template.title = doc
        .pointer("/metadata/title")
        .and_then(Value::as_str)
        .unwrap_or(&template.name)
        .to_string();
    template.description = description.to_string();
    if let Some(params) = doc.get("parameters").and_then(Value::as_object) {
        template.parameters = params.iter().map(|(n, p)| param(n, p)).collect();
        template.parameters.sort_by(|a, b| a.name.cmp(&b.name));
    }
    template
}

fn param(name: &str, p: &Value) -> ParamSpec {
    let raw_type = p.get("type").and_then(Value::as_str).unwrap_or("string");
    let lower = raw_type.to_ascii_lowercase();
    let param_type = match lower.as_str() {
        "string" | "securestring" => ParamType::String,
        "int" => ParamType::Number,
        "bool" => ParamType::Bool,
        "array" => ParamType::List,
        "object" | "secureobject" => ParamType::Object,
        _ => ParamType::Any,
    };
    let mut spec = ParamSpec::new(name, param_type, raw_type.to_string());
    spec.sensitive = lower.starts_with("secure");
    spec.description = p
        .pointer("/metadata/description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(default) = p.get("defaultValue") {
        spec.required = false;
        spec.default = Some(default.clone());
    }
    spec.allowed_values = p.get("allowedValues").and_then(Value::as_array).cloned();
    spec.min_length = p.get("minLength").and_then(Value::as_u64);
    spec.max_length = p.get("maxLength").and_then(Value::as_u64);
    spec.min_value = p.get("minValue").and_then(Value::as_f64);
    spec.max_value = p.get("maxValue").and_then(Value::as_f64);
    spec
}

//! Terraform templates: metadata from the HCL itself (hcl-rs), never from line regexes.

use std::path::Path;

use hcl::{Block, Body, Expression};

use super::params::{ParamSpec, ParamType};
use super::{Template, leading_comment, name_of};
use crate::domain::ProviderType;

pub fn load(path: &Path, provider_type: ProviderType) -> Template {
    let mut template = Template {
        name: name_of(path),
        provider_type,
        cloud: provider_type.cloud(),
        format: "terraform",
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
    };
    let source = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => {
            template.error = Some(format!("cannot read {}: {e}", path.display()));
            return template;
        }
    };
    (template.title, template.description) = leading_comment(&source);
    if template.title.is_empty() {
        template.title = template.name.clone();
    }
    match hcl::parse(&source) {
        Ok(body) => {
            template.parameters = body
                .blocks()
                .filter(|b| b.identifier() == "variable")
                .filter_map(variable)
                .collect();
            template.parameters.sort_by(|a, b| a.name.cmp(&b.name));
            template.required_providers = required_providers(&body);
        }
        Err(e) => template.error = Some(format!("invalid HCL: {e}")),
    }
    template
}

fn variable(block: &Block) -> Option<ParamSpec> {
    let name = block.labels().first()?.as_str();
    let type_expr = attr(block.body(), "type").map(|e| e.to_string());
    let param_type = type_expr
        .as_deref()
        .map(param_type)
        .unwrap_or(ParamType::Any);
    let mut spec = ParamSpec::new(
        name,
        param_type,
        type_expr.unwrap_or_else(|| "any".to_string()),
    );
    if let Some(Expression::String(d)) = attr(block.body(), "description") {
        spec.description = d.clone();
    }
    if let Some(default) = attr(block.body(), "default") {
        spec.required = false;
        let value = hcl::Value::from(default.clone());
        spec.default = serde_json::to_value(value).ok();
    }
    if let Some(Expression::Bool(b)) = attr(block.body(), "sensitive") {
        spec.sensitive = *b;
    }
    Some(spec)
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

/// Maps a terraform type constraint to the JSON shape it accepts.
fn param_type(expr: &str) -> ParamType {
    let head = expr.split('(').next().unwrap_or(expr).trim();
    match head {
        "string" => ParamType::String,
        "number" => ParamType::Number,
        "bool" => ParamType::Bool,
        "list" | "set" | "tuple" => ParamType::List,
        "map" => ParamType::Map,
        "object" => ParamType::Object,
        _ => ParamType::Any,
    }
}

fn required_providers(body: &Body) -> Vec<String> {
    let mut names: Vec<String> = body
        .blocks()
        .filter(|b| b.identifier() == "terraform")
        .flat_map(|b| b.body().blocks())
        .filter(|b| b.identifier() == "required_providers")
        .flat_map(|b| b.body().attributes())
        .map(|a| a.key().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_and_providers_are_read_from_hcl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("My_Bucket.tf");
        std::fs::write(
            &path,
            r#"# A bucket
# Private by default.
terraform {
  required_providers {
    aws = { source = "hashicorp/aws" }
  }
}
variable "bucket_name" {
  type        = string
  description = "Name"
}
variable "tags" {
  type    = map(string)
  default = { team = "x" }
}
variable "password" {
  type      = string
  sensitive = true
  default   = null
}
"#,
        )
        .expect("write");
        let t = load(&path, ProviderType::TerraformAws);
        assert_eq!(t.error, None);
        assert_eq!(t.name, "my-bucket");
        assert_eq!(t.title, "A bucket");
        assert_eq!(t.required_providers, vec!["aws"]);
        let names: Vec<&str> = t.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bucket_name", "password", "tags"]);
        let bucket = &t.parameters[0];
        assert!(bucket.required && bucket.param_type == ParamType::String);
        assert_eq!(bucket.description, "Name");
        let tags = &t.parameters[2];
        assert!(!tags.required);
        assert_eq!(tags.param_type, ParamType::Map);
        assert_eq!(tags.default, Some(serde_json::json!({"team": "x"})));
        assert!(t.parameters[1].sensitive && !t.parameters[1].required);
    }

    #[test]
    fn invalid_hcl_is_reported_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broken.tf");
        std::fs::write(&path, "variable \"x\" {").expect("write");
        let t = load(&path, ProviderType::TerraformAws);
        assert!(
            t.error
                .as_deref()
                .is_some_and(|e| e.contains("invalid HCL"))
        );
    }
}

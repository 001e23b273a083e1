//! Terraform templates: metadata from the HCL itself (hcl-rs), never from line regexes.

use std::path::Path;

use hcl::{Block, Body, Expression};

use super::params::{ParamSpec, ParamType, PatternRule};
use super::{Template, leading_comment, name_of};
use crate::domain::ProviderType;

pub fn load(path: &Path, provider_type: ProviderType) -> Template {
    let source =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    from_source(path, provider_type, source)
}

/// The template a source describes (`path` names it).
pub fn from_source(
    path: &Path,
    provider_type: ProviderType,
    source: Result<String, String>,
) -> Template {
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
        target_scope: Default::default(),
    };
    let source = match source {
        Ok(s) => s,
        Err(e) => {
            template.error = Some(e);
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
    validation_rules(block, &mut spec);
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

/// Reads the simple rules of a variable's `validation` blocks into `spec`: length bounds,
/// value bounds, `can(regex(...))` (also negated) and `contains([...], var.x)`, joined with
/// `&&`. Conditions it can't read are left to terraform, which checks them at plan.
fn validation_rules(block: &Block, spec: &mut ParamSpec) {
    for v in block
        .body()
        .blocks()
        .filter(|b| b.identifier() == "validation")
    {
        let message = match attr(v.body(), "error_message") {
            Some(Expression::String(m)) => m.clone(),
            _ => format!(
                "does not satisfy the template's validation of {}",
                spec.name
            ),
        };
        if let Some(condition) = attr(v.body(), "condition") {
            read_condition(condition, &spec.name.clone(), &message, spec);
        }
    }
}

fn read_condition(expr: &Expression, var: &str, message: &str, spec: &mut ParamSpec) {
    use hcl::expr::{BinaryOperator as B, Operation, UnaryOperator};
    match expr {
        Expression::Parenthesis(inner) => read_condition(inner, var, message, spec),
        Expression::Operation(op) => match op.as_ref() {
            Operation::Binary(b) if b.operator == B::And => {
                read_condition(&b.lhs_expr, var, message, spec);
                read_condition(&b.rhs_expr, var, message, spec);
            }
            Operation::Binary(b) => {
                // `length(var.x) OP n` or `var.x OP n` (either side).
                let (subject, op, number) = match (number(&b.rhs_expr), number(&b.lhs_expr)) {
                    (Some(n), _) => (&b.lhs_expr, b.operator, n),
                    (None, Some(n)) => (&b.rhs_expr, flip(b.operator), n),
                    _ => return,
                };
                let is_length = matches!(subject, Expression::FuncCall(f)
                    if f.name.name.as_str() == "length" && f.args.len() == 1 && is_var(&f.args[0], var));
                let is_value = is_var(subject, var);
                let (min, max) = match op {
                    B::GreaterEq => (Some(number), None),
                    B::Greater => (
                        Some(number + if is_length { 1.0 } else { f64::MIN_POSITIVE }),
                        None,
                    ),
                    B::LessEq => (None, Some(number)),
                    B::Less => (
                        None,
                        Some(number - if is_length { 1.0 } else { f64::MIN_POSITIVE }),
                    ),
                    _ => return,
                };
                if is_length {
                    if let Some(m) = min {
                        spec.min_length = Some(m.max(0.0) as u64);
                    }
                    if let Some(m) = max {
                        spec.max_length = Some(m.max(0.0) as u64);
                    }
                } else if is_value {
                    spec.min_value = min.or(spec.min_value);
                    spec.max_value = max.or(spec.max_value);
                }
            }
            Operation::Unary(u) if u.operator == UnaryOperator::Not => {
                if let Some(pattern) = can_regex(&u.expr, var) {
                    push_pattern(spec, pattern, false, message);
                }
            }
            Operation::Unary(_) => {}
        },
        Expression::FuncCall(f)
            if f.name.name.as_str() == "contains"
                && f.args.len() == 2
                && is_var(&f.args[1], var) =>
        {
            if let Expression::Array(items) = &f.args[0] {
                let values: Option<Vec<serde_json::Value>> = items
                    .iter()
                    .map(|i| serde_json::to_value(hcl::Value::from(i.clone())).ok())
                    .collect();
                spec.allowed_values = values;
            }
        }
        other => {
            if let Some(pattern) = can_regex(other, var) {
                push_pattern(spec, pattern, true, message);
            }
        }
    }
}

/// `can(regex("pattern", var.x))` → the pattern.
fn can_regex(expr: &Expression, var: &str) -> Option<String> {
    let Expression::FuncCall(can) = expr else {
        return None;
    };
    if can.name.name.as_str() != "can" || can.args.len() != 1 {
        return None;
    }
    let Expression::FuncCall(re) = &can.args[0] else {
        return None;
    };
    match (re.name.name.as_str(), re.args.as_slice()) {
        ("regex", [Expression::String(p), subject]) if is_var(subject, var) => Some(p.clone()),
        _ => None,
    }
}

fn push_pattern(spec: &mut ParamSpec, pattern: String, must_match: bool, message: &str) {
    // terraform's regex is RE2, which the regex crate follows; anything it rejects is left to
    // terraform.
    if let Ok(regex) = regex::Regex::new(&pattern) {
        spec.patterns.push(PatternRule {
            pattern,
            must_match,
            message: message.to_string(),
            regex,
        });
    }
}

fn is_var(expr: &Expression, var: &str) -> bool {
    match expr {
        Expression::Traversal(t) => {
            matches!(&t.expr, Expression::Variable(v) if v.as_str() == "var")
                && matches!(t.operators.as_slice(), [hcl::expr::TraversalOperator::GetAttr(a)] if a.as_str() == var)
        }
        Expression::Parenthesis(inner) => is_var(inner, var),
        _ => false,
    }
}

fn number(expr: &Expression) -> Option<f64> {
    match expr {
        Expression::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn flip(op: hcl::expr::BinaryOperator) -> hcl::expr::BinaryOperator {
    use hcl::expr::BinaryOperator as B;
    match op {
        B::Greater => B::Less,
        B::GreaterEq => B::LessEq,
        B::Less => B::Greater,
        B::LessEq => B::GreaterEq,
        other => other,
    }
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

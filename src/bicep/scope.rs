//! Target scopes: what a template deploys to (`targetScope = 'subscription'`), read from a
//! Bicep file's declaration or from an ARM template's `$schema`.

use super::CompileError;
use super::syntax::{Expr, ExprKind, Stmt, StmtKind};

/// The deployment scope of a template (serialized as Bicep names it: `resourceGroup`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Scope {
    #[default]
    ResourceGroup,
    Subscription,
    ManagementGroup,
    Tenant,
}

impl Scope {
    /// The name Bicep writes (`targetScope = '<name>'`).
    pub fn name(self) -> &'static str {
        match self {
            Scope::ResourceGroup => "resourceGroup",
            Scope::Subscription => "subscription",
            Scope::ManagementGroup => "managementGroup",
            Scope::Tenant => "tenant",
        }
    }

    /// The scope Bicep names `name`.
    pub fn from_name(name: &str) -> Option<Scope> {
        [
            Scope::ResourceGroup,
            Scope::Subscription,
            Scope::ManagementGroup,
            Scope::Tenant,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }

    /// The `$schema` of a template at this scope (the official compiler's).
    pub fn schema(self) -> &'static str {
        match self {
            Scope::ResourceGroup => {
                "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
            }
            Scope::Subscription => {
                "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#"
            }
            Scope::ManagementGroup => {
                "https://schema.management.azure.com/schemas/2019-08-01/managementGroupDeploymentTemplate.json#"
            }
            Scope::Tenant => {
                "https://schema.management.azure.com/schemas/2019-08-01/tenantDeploymentTemplate.json#"
            }
        }
    }

    /// The scope an ARM template's `$schema` names (by the path of the URI, as the official
    /// compiler reads a JSON module); None for any other schema.
    pub fn from_schema(schema: &str) -> Option<Scope> {
        let rest = schema
            .strip_prefix("https://")
            .or_else(|| schema.strip_prefix("http://"))?;
        let path = &rest[rest.find('/')?..];
        let path = path.split(['#', '?']).next().unwrap_or(path);
        Some(match path {
            "/schemas/2019-08-01/tenantDeploymentTemplate.json" => Scope::Tenant,
            "/schemas/2019-08-01/managementGroupDeploymentTemplate.json" => Scope::ManagementGroup,
            "/schemas/2018-05-01/subscriptionDeploymentTemplate.json" => Scope::Subscription,
            "/schemas/2014-04-01-preview/deploymentTemplate.json"
            | "/schemas/2015-01-01/deploymentTemplate.json"
            | "/schemas/2019-04-01/deploymentTemplate.json" => Scope::ResourceGroup,
            _ => return None,
        })
    }
}

/// The target scope `stmts` declare: `resourceGroup` without a `targetScope` statement; the
/// value must be one literal string naming a scope, declared once.
pub fn declared(src: &str, stmts: &[Stmt]) -> Result<Scope, CompileError> {
    let mut found: Option<Scope> = None;
    for s in stmts {
        let StmtKind::TargetScope(value) = &s.kind else {
            continue;
        };
        if found.is_some() {
            return Err(CompileError::at(
                src,
                s.at,
                "'targetScope' is declared more than once",
            ));
        }
        if let Some(d) = s.decorators.first() {
            return Err(CompileError::at(
                src,
                d.at,
                format!("decorator '@{}' is not allowed here", d.name),
            ));
        }
        found = Some(parse_value(src, value)?);
    }
    Ok(found.unwrap_or(Scope::ResourceGroup))
}

fn parse_value(src: &str, value: &Expr) -> Result<Scope, CompileError> {
    let ExprKind::Str { parts, holes } = &value.kind else {
        return Err(CompileError::at(
            src,
            value.at,
            "'targetScope' must be a literal string",
        ));
    };
    if !holes.is_empty() {
        return Err(CompileError::at(
            src,
            value.at,
            "'targetScope' must be a literal string",
        ));
    }
    match Scope::from_name(&parts[0]) {
        Some(s) => Ok(s),
        None if matches!(parts[0].as_str(), "local" | "desiredStateConfiguration") => {
            Err(super::syntax::unsupported(
                src,
                value.at,
                &format!("target scopes like '{}'", parts[0]),
            ))
        }
        None => Err(CompileError::at(
            src,
            value.at,
            format!(
                "'{}' is not a target scope ('resourceGroup', 'subscription', 'managementGroup' or 'tenant')",
                parts[0]
            ),
        )),
    }
}

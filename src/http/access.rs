//! Which role each route needs and which audited action it is (design.md §10). One table,
//! used by the guard to authorize, by `configure` to refuse a route registered without a rule
//! (the daemon panics at start, so every test catches it), and by the tests, which walk the
//! OpenAPI document against it.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest};

use crate::domain::{AuditEntry, Caller, Role};

/// One route's rule. `role: None` is public (no token needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Option<Role>,
    /// The audited action of a state-changing route (`None` for reads).
    pub action: Option<&'static str>,
}

const fn read(method: &'static str, path: &'static str, role: Option<Role>) -> Rule {
    Rule {
        method,
        path,
        role,
        action: None,
    }
}

const fn change(
    method: &'static str,
    path: &'static str,
    role: Role,
    action: &'static str,
) -> Rule {
    Rule {
        method,
        path,
        role: Some(role),
        action: Some(action),
    }
}

const V: Option<Role> = Some(Role::Viewer);
const A: Option<Role> = Some(Role::Admin);

pub const RULES: &[Rule] = &[
    read("GET", "/", None),
    read("GET", "/health", None),
    read("GET", "/providers", V),
    read("GET", "/metrics", V),
    read("GET", "/openapi.json", V),
    read("GET", "/docs", V),
    read("GET", "/templates", V),
    read("GET", "/templates/{provider_type}/{name}", V),
    read("GET", "/templates/{provider_type}/{name}/parameters", V),
    read("GET", "/templates/{provider_type}/{name}/content", V),
    change("POST", "/deploy", Role::Operator, "deployment.create"),
    read("GET", "/deployments", V),
    read("GET", "/deployments/{id}", V),
    change(
        "PATCH",
        "/deployments/{id}",
        Role::Operator,
        "deployment.update",
    ),
    change(
        "DELETE",
        "/deployments/{id}",
        Role::Operator,
        "deployment.destroy",
    ),
    read("GET", "/deployments/{id}/status", V),
    read("GET", "/deployments/{id}/logs", V),
    read("GET", "/deployments/{id}/runs", V),
    change("POST", "/deployments/{id}/plan", Role::Operator, "run.plan"),
    change(
        "POST",
        "/deployments/{id}/drift-check",
        Role::Operator,
        "run.drift_check",
    ),
    change(
        "POST",
        "/deployments/{id}/apply",
        Role::Approver,
        "run.apply",
    ),
    change(
        "POST",
        "/deployments/{id}/discard",
        Role::Approver,
        "run.discard",
    ),
    change(
        "POST",
        "/deployments/{id}/cancel",
        Role::Operator,
        "deployment.cancel",
    ),
    read("GET", "/runs/{id}", V),
    read("GET", "/runs/{id}/logs", V),
    read("GET", "/resource-groups", V),
    change(
        "POST",
        "/resource-groups",
        Role::Operator,
        "resource_group.create",
    ),
    change(
        "DELETE",
        "/resource-groups/{name}",
        Role::Admin,
        "resource_group.delete",
    ),
    read("GET", "/resource-groups/{name}/resources", V),
    read("GET", "/audit", A),
    read("GET", "/webhooks", A),
    change("POST", "/webhooks", Role::Admin, "webhook.create"),
    read("GET", "/webhooks/{id}", A),
    change("DELETE", "/webhooks/{id}", Role::Admin, "webhook.delete"),
    read("GET", "/webhooks/{id}/deliveries", A),
    change(
        "POST",
        "/webhooks/{id}/deliveries/{delivery_id}/redeliver",
        Role::Admin,
        "webhook.redeliver",
    ),
    // The dashboard: the same roles and actions as the API routes it stands for.
    read("GET", "/ui", V),
    read("GET", "/ui/deployments/rows", V),
    read("GET", "/ui/deployments/{id}", V),
    read("GET", "/ui/deployments/{id}/live", V),
    read("GET", "/ui/deployments/{id}/log", V),
    change(
        "POST",
        "/ui/deployments/{id}/apply",
        Role::Approver,
        "run.apply",
    ),
    change(
        "POST",
        "/ui/deployments/{id}/discard",
        Role::Approver,
        "run.discard",
    ),
    change(
        "POST",
        "/ui/deployments/{id}/cancel",
        Role::Operator,
        "deployment.cancel",
    ),
    change(
        "POST",
        "/ui/deployments/{id}/drift-check",
        Role::Operator,
        "run.drift_check",
    ),
    change(
        "POST",
        "/ui/deployments/{id}/destroy",
        Role::Operator,
        "deployment.destroy",
    ),
    change(
        "POST",
        "/ui/deployments/{id}/update",
        Role::Operator,
        "deployment.update",
    ),
    read("GET", "/ui/templates", V),
    read("GET", "/ui/templates/{provider_type}/{name}", V),
    change(
        "POST",
        "/ui/templates/{provider_type}/{name}",
        Role::Operator,
        "deployment.create",
    ),
    read("GET", "/ui/health", V),
    read("GET", "/ui/login", None),
    Rule {
        method: "POST",
        path: "/ui/login",
        role: None,
        action: Some("session.login"),
    },
    Rule {
        method: "POST",
        path: "/ui/logout",
        role: None,
        action: Some("session.logout"),
    },
    read("GET", "/ui/assets/{file}", None),
];

/// Whether a path is the dashboard's (session cookies, HTML answers) rather than the API's
/// (bearer tokens, JSON).
pub fn is_ui(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// The rule of a route pattern and method, as registered.
pub fn rule(method: &str, pattern: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.method == method && r.path == pattern)
}

/// The rule matching a request path, with the values of its `{...}` segments.
pub fn rule_for_path(method: &str, path: &str) -> Option<(&'static Rule, Vec<String>)> {
    let segments: Vec<&str> = path.split('/').collect();
    RULES.iter().filter(|r| r.method == method).find_map(|r| {
        let pattern: Vec<&str> = r.path.split('/').collect();
        if pattern.len() != segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, s) in pattern.iter().zip(&segments) {
            if p.starts_with('{') {
                if s.is_empty() {
                    return None;
                }
                params.push(s.to_string());
            } else if p != s {
                return None;
            }
        }
        Some((r, params))
    })
}

/// Whether a method changes state (its requests are audited whatever their outcome).
pub fn is_change(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// What the guard learned about a request, for handlers and the audit trail.
#[derive(Debug, Clone)]
pub struct AuditContext {
    pub caller: Caller,
    /// False for a request without a verified token (a public route, a login attempt).
    pub authenticated: bool,
    pub action: String,
    pub route: String,
    pub target: Option<String>,
    pub request_id: Option<String>,
    pub client_addr: Option<String>,
}

impl AuditContext {
    /// The audit row of this request with `status` (`ok` for a 2xx).
    pub fn entry(&self, status: u16, error_code: Option<&str>) -> AuditEntry {
        AuditEntry {
            actor: self.caller.name.clone(),
            role: self.authenticated.then_some(self.caller.role),
            action: self.action.clone(),
            route: self.route.clone(),
            target: self.target.clone(),
            run_id: None,
            outcome: AuditEntry::outcome_of(status).into(),
            status_code: status,
            error_code: error_code.map(str::to_string),
            request_id: self.request_id.clone(),
            client_addr: self.client_addr.clone(),
        }
    }

    /// Without the guard (an app built without `Security`): anonymous, from the request.
    fn from_request_alone(req: &HttpRequest) -> AuditContext {
        let method = req.method().as_str();
        let (action, route, target) = match rule_for_path(method, req.path()) {
            Some((r, params)) => (
                r.action.unwrap_or("read").to_string(),
                format!("{method} {}", r.path),
                params.first().cloned(),
            ),
            None => (
                "unknown".into(),
                format!("{method} {}", clip(req.path())),
                None,
            ),
        };
        AuditContext {
            caller: Caller::anonymous(),
            authenticated: true,
            action,
            route,
            target,
            request_id: None,
            client_addr: req.peer_addr().map(|a| a.ip().to_string()),
        }
    }
}

/// At most 200 characters of a path (an unknown route's, in the audit trail).
pub fn clip(path: &str) -> &str {
    match path.char_indices().nth(200) {
        Some((i, _)) => &path[..i],
        None => path,
    }
}

impl FromRequest for AuditContext {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ctx = req.extensions().get::<AuditContext>().cloned();
        ready(Ok(
            ctx.unwrap_or_else(|| AuditContext::from_request_alone(req))
        ))
    }
}

/// Marks a response whose audit row was written with the change it describes (in the same
/// transaction); the guard writes the row of every other audited response itself.
#[derive(Debug, Clone, Copy)]
pub struct Audited;

/// The target of a change whose route names none (e.g. the resource group a POST created),
/// for the row the guard writes.
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// `resp`, marked as audited.
pub fn audited(mut resp: actix_web::HttpResponse) -> actix_web::HttpResponse {
    resp.extensions_mut().insert(Audited);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_their_rules_with_parameters() {
        let (r, p) = rule_for_path("POST", "/deployments/deploy-1/apply").expect("apply");
        assert_eq!(r.role, Some(Role::Approver));
        assert_eq!(p, vec!["deploy-1"]);
        let (r, _) = rule_for_path("DELETE", "/deployments/x").expect("destroy");
        assert_eq!(r.action, Some("deployment.destroy"));
        assert!(rule_for_path("POST", "/deployments//apply").is_none());
        assert!(rule_for_path("PUT", "/deploy").is_none());
        let (r, p) =
            rule_for_path("POST", "/webhooks/wh-1/deliveries/7/redeliver").expect("redeliver");
        assert_eq!((r.role, p.len()), (Some(Role::Admin), 2));
        assert_eq!(rule_for_path("GET", "/").map(|(r, _)| r.role), Some(None));
    }

    #[test]
    fn every_rule_is_unique_and_changes_have_actions() {
        for (i, r) in RULES.iter().enumerate() {
            assert!(
                !RULES[..i]
                    .iter()
                    .any(|o| o.method == r.method && o.path == r.path),
                "{} {} twice",
                r.method,
                r.path
            );
            assert_eq!(
                is_change(r.method),
                r.action.is_some(),
                "{} {}",
                r.method,
                r.path
            );
        }
    }
}

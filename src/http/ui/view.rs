//! The dashboard's markup: one layout, and components the pages share. Everything is rendered
//! by maud, which escapes every value it is given: nothing here marks a value as safe.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

use crate::domain::{Caller, Role};

/// What every page shows around its content.
pub struct Frame<'a> {
    pub title: &'a str,
    pub nav: Nav,
    /// None on the login page.
    pub caller: Option<&'a Caller>,
    /// Whether the daemon has tokens (a logout button makes sense).
    pub sessions: bool,
    pub csrf: &'a str,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Deployments,
    Templates,
    Health,
    None,
}

/// The version of the embedded assets in their URLs, so a new binary is never served a
/// browser's cached copy of the old ones.
const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn layout(frame: &Frame, content: Markup) -> Markup {
    let link = |nav: Nav, href: &str, label: &str| {
        html! {
            a href=(href) aria-current=[(frame.nav == nav).then_some("page")] { (label) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (frame.title) " · multicloud" }
                link rel="stylesheet" href={ "/ui/assets/app.css?v=" (ASSET_VERSION) };
                script src={ "/ui/assets/app.js?v=" (ASSET_VERSION) } defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui" { "multicloud" }
                    @if frame.caller.is_some() {
                        nav aria-label="Main" {
                            (link(Nav::Deployments, "/ui", "Deployments"))
                            (link(Nav::Templates, "/ui/templates", "Templates"))
                            (link(Nav::Health, "/ui/health", "Health"))
                        }
                    }
                    @if let Some(c) = frame.caller {
                        div.who {
                            span { (c.name) " · " (c.role) }
                            @if frame.sessions {
                                form method="post" action="/ui/logout" {
                                    (csrf_field(frame.csrf))
                                    button.link type="submit" { "Log out" }
                                }
                            }
                        }
                    }
                }
                main #main { (content) }
            }
        }
    }
}

pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A status word as a coloured badge (colour is never the only cue: the word is there).
pub fn badge(status: &str) -> Markup {
    let class = match status {
        "completed" | "no_changes" | "delivered" | "in_sync" | "healthy" | "available" => "ok",
        "failed" | "dead" | "drifted" | "unhealthy" | "unavailable" => "bad",
        "running" | "pending" => "busy",
        "planned" => "wait",
        _ => "muted",
    };
    html! { span class={ "badge " (class) } { (status.replace('_', " ")) } }
}

/// "5 min ago" from an RFC 3339 time, with the exact time in `datetime` and as a tooltip.
pub fn age(at: &Value) -> Markup {
    let Some(text) = at.as_str() else {
        return html! { "—" };
    };
    let ago = chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| chrono::Utc::now().signed_duration_since(t))
        .ok();
    let label = match ago {
        Some(d) if d.num_seconds() < 60 => format!("{} s ago", d.num_seconds().max(0)),
        Some(d) if d.num_minutes() < 60 => format!("{} min ago", d.num_minutes()),
        Some(d) if d.num_hours() < 48 => format!("{} h ago", d.num_hours()),
        Some(d) => format!("{} days ago", d.num_days()),
        None => text.to_string(),
    };
    html! { time datetime=(text) title=(text) { (label) } }
}

/// A JSON value as text: strings as they are, the rest as compact JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The plan of a run as a readable diff: one line per resource, `+` add, `~` change, `-`
/// destroy, `-/+` replace.
pub fn plan_diff(plan: &Value) -> Markup {
    let resources = plan["resources"].as_array().cloned().unwrap_or_default();
    html! {
        p.headline { (text(&plan["headline"])) }
        @if !resources.is_empty() {
            ul.diff aria-label="Planned changes" {
                @for r in &resources {
                    @let action = r["action"].as_str().unwrap_or_default();
                    @let (sign, class) = match action {
                        "create" => ("+", "add"),
                        "update" => ("~", "change"),
                        "delete" => ("−", "destroy"),
                        "replace" => ("−/+", "replace"),
                        _ => ("·", "muted"),
                    };
                    li class=(class) {
                        span.sign aria-hidden="true" { (sign) }
                        " "
                        span.sr-only { (action) ": " }
                        code { (text(&r["address"])) }
                        " "
                        span.muted { "(" (text(&r["type"])) ")" }
                    }
                }
            }
        }
    }
}

/// Whether the caller may use buttons that need `role`.
pub fn may(caller: &Caller, role: Role) -> bool {
    caller.role.allows(role)
}

/// An error box (`role=alert`, read out when it appears).
pub fn alert(message: &str) -> Markup {
    html! { div.alert role="alert" { (message) } }
}

/// A small page for a refusal (403, 404...) in the dashboard.
pub fn refusal(status: u16, message: &str) -> String {
    let frame = Frame {
        title: "Refused",
        nav: Nav::None,
        caller: None,
        sessions: false,
        csrf: "",
    };
    layout(
        &frame,
        html! {
            h1 { (status) }
            (alert(message))
            p { a href="/ui" { "Back to the deployments" } }
        },
    )
    .into_string()
}

//! `/`, `/health`, `/providers`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::envelope;
use crate::actors::persistence::Ping;
use crate::actors::supervisor::GetRunnerStats;
use crate::domain::ProviderType;

pub async fn index(state: web::Data<AppState>, req: actix_web::HttpRequest) -> HttpResponse {
    // A browser asking for a page goes to the dashboard; API clients get the JSON as always.
    let wants_html = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        return HttpResponse::SeeOther()
            .insert_header((actix_web::http::header::LOCATION, "/ui"))
            .finish();
    }
    let available: Vec<&str> = ProviderType::ALL
        .into_iter()
        .filter(|p| availability(&state, *p).0)
        .map(ProviderType::as_str)
        .collect();
    envelope::ok(
        "multicloud deployment service",
        json!({
            "name": "multicloud",
            "version": env!("CARGO_PKG_VERSION"),
            "providers": available,
            "docs_url": "/docs",
        }),
    )
}

/// 200 when the database answers, 503 otherwise; the body says what was checked.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let (healthy, data) = health_report(&state).await;
    if healthy {
        envelope::ok("healthy", data)
    } else {
        // The error envelope, with the checks kept in `data`.
        let body = json!({
            "success": false,
            "message": "unhealthy: the database is unreachable",
            "data": data,
            "error": {"code": "service_unavailable", "details": null, "status_code": 503},
            "timestamp": envelope::timestamp(),
        });
        HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .insert_header(("Retry-After", "2"))
            .json(body)
    }
}

/// Whether the daemon is healthy (the database answers), and what was checked.
pub(super) async fn health_report(state: &AppState) -> (bool, serde_json::Value) {
    let db = state.persistence.call(Ping).await;
    let runner = state.supervisor.send(GetRunnerStats).await.ok();
    let terraform = state.engines.terraform.binary();
    let healthy = db.is_ok();
    let data = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "database": match &db {
            Ok(_) => json!({"reachable": true}),
            Err(e) => json!({"reachable": false, "error": e.to_string()}),
        },
        "terraform": {"found": terraform.is_some(), "path": terraform},
        "runner": runner,
    });
    (healthy, data)
}

pub async fn providers(state: web::Data<AppState>) -> HttpResponse {
    let catalog = state.catalog.get();
    let list: Vec<_> = ProviderType::ALL
        .into_iter()
        .map(|p| {
            let (available, reason) = availability(&state, p);
            let mut entry = json!({
                "provider_type": p.as_str(),
                "cloud": p.cloud(),
                "format": p.format(),
                "template_count": catalog.count(p),
                "available": available,
                "reason": reason,
            });
            if p == ProviderType::Azure {
                entry["bicep_compiler"] = json!(state.engines.arm.bicep_compiler().describe());
                use crate::catalog::TargetScope;
                entry["target_scopes"] = json!([
                    TargetScope::ResourceGroup,
                    TargetScope::Subscription,
                    TargetScope::ManagementGroup,
                    TargetScope::Tenant
                ]);
            }
            entry
        })
        .collect();
    envelope::ok(
        "providers",
        json!({ "providers": list, "count": list.len() }),
    )
}

/// Why requests for `p` can't be served by this daemon's configuration (Azure without
/// credentials), if they can't: a 4xx, not an outage. A missing terraform binary is not
/// refused here: another node sharing the database may run the deployment.
pub fn not_configured(state: &AppState, p: ProviderType) -> Option<String> {
    match p {
        ProviderType::Azure => state.engines.arm.unavailable_reason(),
        _ => None,
    }
}

/// Whether this node can run deployments of `p`, and why not.
pub fn availability(state: &AppState, p: ProviderType) -> (bool, Option<String>) {
    if let Some(reason) = not_configured(state, p) {
        return (false, Some(reason));
    }
    if p == ProviderType::Azure {
        let arm = &state.engines.arm;
        // ARM JSON deploys; say when Bicep files can't be compiled.
        return match arm.bicep_compiler() {
            crate::engines::arm::BicepCompiler::External(_)
            | crate::engines::arm::BicepCompiler::Native => (true, None),
            crate::engines::arm::BicepCompiler::Missing(why) => (true, Some(why)),
        };
    }
    match state.engines.for_provider(p) {
        Err(e) => (false, Some(e.to_string())),
        Ok(_) if p.is_terraform() && state.engines.terraform.binary().is_none() => (
            false,
            Some(format!(
                "terraform binary {:?} not found",
                state.settings.terraform.binary
            )),
        ),
        Ok(_) => (true, None),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let m = crate::metrics::global();
    if let Ok(stats) = state
        .persistence
        .call(crate::actors::persistence::GetDatabaseStats)
        .await
    {
        let gauge =
            |family: &crate::metrics::StatusGauges, counts: &[(String, i64)], status: &str| {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status)
                    .map(|(_, n)| *n)
                    .unwrap_or(0);
                family
                    .get_or_create(&crate::metrics::StatusLabels {
                        status: status.into(),
                    })
                    .set(n);
                n
            };
        for status in crate::domain::DeploymentStatus::ALL {
            gauge(&m.deployments, &stats.by_status, status.as_str());
        }
        for status in ["pending", "delivered", "dead"] {
            gauge(&m.webhook_deliveries, &stats.deliveries_by_status, status);
        }
        for status in crate::domain::RunStatus::ALL {
            let n = gauge(&m.runs, &stats.runs_by_status, status.as_str());
            if status == crate::domain::RunStatus::Pending {
                m.queue_depth.set(n);
            }
        }
        let in_use = stats.pool_connections.saturating_sub(stats.pool_idle);
        m.db_pool
            .get_or_create(&crate::metrics::PoolLabels {
                state: "idle".into(),
            })
            .set(stats.pool_idle as i64);
        m.db_pool
            .get_or_create(&crate::metrics::PoolLabels {
                state: "in_use".into(),
            })
            .set(in_use as i64);
    }
    if let Ok(runner) = state.supervisor.send(GetRunnerStats).await {
        m.runs_running.set(runner.running as i64);
        m.runner_capacity.set(runner.capacity as i64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(m.encode())
}

/// Records every request's duration by matched route (not raw path) and status.
pub async fn record(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    crate::metrics::global()
        .http_requests
        .get_or_create(&crate::metrics::HttpLabels {
            method,
            route,
            status: res.status().as_u16(),
        })
        .observe(started.elapsed().as_secs_f64());
    Ok(res)
}

//! Start-up and shutdown of `multicloud serve` (and `migrate`).
//!
//! Order: database (embedded cluster when `database.url` is empty) → migrations under an
//! advisory lock → pool → actix system with persistence, supervisor and HTTP server. On
//! SIGTERM/SIGINT: stop accepting HTTP, drain the supervisor (runs get
//! `runner.shutdown_grace_secs`, then are interrupted and their leases released), stop the
//! system, stop the embedded cluster. SIGHUP re-scans the templates folder.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::Actor;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use rand::RngCore;

use crate::actors::deployment::RunContext;
use crate::actors::notifier::{Notifier, WakeNotifier};
use crate::actors::persistence::{PersistenceActor, PersistenceHandle};
use crate::actors::supervisor::{Drain, QueueNotification, Supervisor};
use crate::catalog::{Catalog, CatalogHandle};
use crate::config::Settings;
use crate::db::{self, embedded::EmbeddedPostgres};
use crate::engines::{Engines, arm::ArmEngine, terraform::TerraformEngine};
use crate::http::{self, AppState};
use crate::secrets::SecretKey;

/// How long an HTTP request waits for the database before answering 503.
const DB_CALL_TIMEOUT: Duration = Duration::from_millis(1800);

/// The database this process uses, and the embedded cluster when it runs one (dropping it
/// stops the cluster).
pub struct Database {
    pub url: String,
    pub embedded: Option<EmbeddedPostgres>,
}

pub fn open_database(settings: &Settings) -> anyhow::Result<Database> {
    if !settings.database.url.is_empty() {
        return Ok(Database {
            url: settings.database.url.clone(),
            embedded: None,
        });
    }
    let pg = EmbeddedPostgres::start(&settings.paths.data_dir)
        .context("starting the embedded PostgreSQL")?;
    Ok(Database {
        url: pg.url(),
        embedded: Some(pg),
    })
}

/// `multicloud migrate`.
pub fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let database = open_database(settings)?;
    let applied = db::run_migrations(&database.url)?;
    if applied.is_empty() {
        tracing::info!("the database schema is up to date");
    } else {
        tracing::info!(versions = ?applied, "migrations applied");
    }
    Ok(())
}

/// `multicloud serve`: runs until SIGTERM or SIGINT.
pub fn serve(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    std::fs::create_dir_all(settings.paths.data_dir.join("workspaces")).with_context(|| {
        format!(
            "creating {}",
            settings.paths.data_dir.join("workspaces").display()
        )
    })?;
    let database = open_database(&settings)?;
    let applied = db::run_migrations(&database.url)?;
    if !applied.is_empty() {
        tracing::info!(versions = ?applied, "migrations applied");
    }
    let threads = settings.database.pool_size as usize;
    // Headroom beyond the sync workers for start-up work and terraform's own connections do
    // not count here (terraform opens its own).
    let pool = db::build_pool(&database.url, settings.database.pool_size + 2)?;
    let catalog = CatalogHandle::new(Catalog::scan(&settings.paths.templates_dir));
    let secret_key = Arc::new(
        SecretKey::for_daemon(&settings, database.embedded.is_some())
            .context("loading the secrets key")?,
    );
    if secret_key.is_none() {
        tracing::warn!(
            "no secrets key (secrets.key_file): deployments with sensitive parameters will be refused"
        );
    }
    let engines = Arc::new(Engines {
        terraform: TerraformEngine::new(settings.clone(), database.url.clone()),
        arm: ArmEngine::new(settings.clone()),
    });
    let node = node_name();
    let database_url = database.url.clone();

    let result = actix_rt::System::new().block_on(async move {
        let persistence = PersistenceHandle::new(PersistenceActor::start(pool, threads), DB_CALL_TIMEOUT);
        let run_ctx = Arc::new(RunContext {
            node: node.clone(),
            settings: settings.clone(),
            persistence: persistence.clone(),
            engines: engines.clone(),
            catalog: catalog.clone(),
            secret_key: secret_key.clone(),
        });
        let supervisor = Supervisor::new(run_ctx).start();
        let notifier = Notifier::new(node.clone(), settings.clone(), persistence.clone(), secret_key.clone()).start();
        let listener_stop = Arc::new(AtomicBool::new(false));
        let notified = supervisor.clone();
        let listener = db::notify::spawn_listener(database_url.clone(), listener_stop.clone(), move |event| match event {
            db::notify::QueueEvent::Webhook(_) => notifier.do_send(WakeNotifier),
            event => notified.do_send(QueueNotification(event)),
        })
        .context("starting the LISTEN thread")?;
        let secret_key_for_ui = secret_key.clone();
        let state = web::Data::new(AppState {
            settings: settings.clone(),
            persistence,
            supervisor: supervisor.clone(),
            catalog: catalog.clone(),
            engines,
            secret_key,
        });
        let max_body = settings.server.max_body_bytes;
        let security = web::Data::new(http::security::Security::new(&settings, secret_key_for_ui.as_ref().as_ref()));
        let app_settings = settings.clone();
        let server = HttpServer::new(move || {
            // The last `wrap` is the outermost: logging, headers, CORS, then authentication.
            App::new()
                .app_data(state.clone())
                .app_data(security.clone())
                .wrap(actix_web::middleware::from_fn(http::security::guard))
                .wrap(http::security::cors(&app_settings))
                .wrap(http::security::headers())
                .wrap(actix_web::middleware::from_fn(http::meta::record))
                .wrap(tracing_actix_web::TracingLogger::default())
                .configure(|cfg| http::configure(cfg, max_body))
        })
        .disable_signals()
        .workers(settings.server.worker_threads())
        .bind(settings.bind_addr())
        .with_context(|| format!("binding {}", settings.server.bind))?
        .run();
        let handle = server.handle();
        let server_task = actix_rt::spawn(server);
        tracing::info!(bind = %settings.server.bind, node = %node, version = env!("CARGO_PKG_VERSION"), "multicloud is serving");
        // systemd (Type=notify): ready once migrated and listening. A no-op elsewhere.
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
            tracing::warn!(error = %e, "could not notify systemd");
        }

        wait_for_shutdown(&catalog, &settings).await;

        tracing::info!("shutting down: no new requests, draining runs");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        handle.stop(true).await;
        let _ = server_task.await;
        let runner = &settings.runner;
        let deadline = Duration::from_secs(runner.shutdown_grace_secs + runner.cancel_grace_secs + 10);
        let drain = supervisor.send(Drain {
            grace: Duration::from_secs(runner.shutdown_grace_secs),
        });
        if tokio::time::timeout(deadline, drain).await.is_err() {
            tracing::warn!("runs did not stop in time; their leases will expire and another node takes them over");
        }
        listener_stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || listener.join()).await;
        actix_rt::System::current().stop();
        Ok::<(), anyhow::Error>(())
    });
    drop(database); // stops the embedded cluster
    tracing::info!("multicloud stopped");
    result
}

/// Resolves on SIGTERM or SIGINT; re-scans the templates on SIGHUP.
async fn wait_for_shutdown(catalog: &CatalogHandle, settings: &Settings) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; waiting forever");
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => {
                let dir = settings.paths.templates_dir.clone();
                match tokio::task::spawn_blocking(move || Catalog::scan(&dir)).await {
                    Ok(new) => {
                        catalog.replace(new);
                        tracing::info!("templates re-scanned (SIGHUP)");
                    }
                    Err(e) => tracing::error!(error = %e, "re-scanning templates failed"),
                }
            }
        }
    }
}

/// `<hostname>-<pid>-<random>`: unique per process, readable in `lease_owner`.
fn node_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::rng().next_u32() & 0xffff
    )
}

//! `DeploymentActor`: one per run (one attempt of one run of a deployment), lives for that run only. It drives an engine (in a task of
//! its own, so a panic there is a failed run, not a dead actor), batches the log lines to
//! persistence in order, records progress, obeys cancel, lease loss and shutdown, writes the
//! final result with compare-and-set, then stops. Its `stopped` hook always tells the
//! supervisor, so the supervisor's table of runs cannot leak.

mod messages;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::stream;
use tokio::sync::{mpsc, watch};

pub use messages::*;

use super::persistence::{
    AppendLogs, FinishRun, GetRunInputs, PersistError, PersistenceHandle, RecordRunSource,
    RecordTerraformState, ReleaseRun, SetProgress,
};
use super::supervisor::{RunFinished, Supervisor};
use crate::catalog::CatalogHandle;
use crate::config::Settings;
use crate::db::queries::states::StateLocation;
use crate::domain::{Deployment, NewLogLine, PlanSummary, Run, RunKind, RunOutcome, RunPhase};
use crate::engines::{EngineError, EngineOutput, Engines, RunEvent, RunJob, StopReason};

/// Log lines are written at least this often while a run goes on.
const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// ... or as soon as this many are waiting.
const FLUSH_LINES: usize = 500;
/// How long a finished engine's remaining events are waited for before the run ends anyway.
const EVENTS_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a finished run keeps trying to write its result while the database is away.
const FINISH_RETRIES: u32 = 120;

/// What every run of this process shares.
pub struct RunContext {
    /// This node's name in leases.
    pub node: String,
    pub settings: Arc<Settings>,
    pub persistence: PersistenceHandle,
    pub engines: Arc<Engines>,
    pub catalog: CatalogHandle,
    pub secret_key: Arc<Option<crate::secrets::SecretKey>>,
}

pub struct DeploymentActor {
    run: Run,
    deployment: Deployment,
    ctx: Arc<RunContext>,
    supervisor: Addr<Supervisor>,
    stop_tx: watch::Sender<Option<StopReason>>,
    buffer: Vec<NewLogLine>,
    /// Batches of log lines, written in order by one task.
    log_tx: Option<mpsc::UnboundedSender<Vec<NewLogLine>>>,
    log_writer: Option<tokio::task::JoinHandle<()>>,
    progress: u8,
    /// Every log line of this run carries the deployment id.
    span: tracing::Span,
    started: Option<std::time::Instant>,
    lease_lost: bool,
    finishing: bool,
    /// The engine's result, kept until its events (the last log lines) have all been taken in.
    awaiting_events: Option<Option<RunOutcome>>,
    /// The engine's event stream ended (every sender dropped, every event handled).
    events_done: bool,
}

impl DeploymentActor {
    pub fn new(
        run: Run,
        deployment: Deployment,
        ctx: Arc<RunContext>,
        supervisor: Addr<Supervisor>,
    ) -> DeploymentActor {
        let (stop_tx, _) = watch::channel(None);
        let span = tracing::info_span!("run", deployment.id = %deployment.id, run.id = %run.id, kind = run.kind.as_str(), attempt = run.attempts);
        DeploymentActor {
            span,
            progress: run.progress,
            run,
            deployment,
            ctx,
            supervisor,
            stop_tx,
            buffer: Vec::new(),
            log_tx: None,
            log_writer: None,
            started: None,
            lease_lost: false,
            finishing: false,
            awaiting_events: None,
            events_done: false,
        }
    }

    /// The run's id: leases, progress and results are the run's.
    fn id(&self) -> String {
        self.run.id.to_string()
    }

    /// Starts the task that writes log batches in order, retrying while the database is away.
    fn start_log_writer(&mut self) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<NewLogLine>>();
        let persistence = self.ctx.persistence.clone();
        let id = self.id();
        let deployment_id = self.deployment.id.to_string();
        self.log_tx = Some(tx);
        let span = self.span.clone();
        self.log_writer = Some(actix_rt::spawn(tracing::Instrument::instrument(
            async move {
                while let Some(lines) = rx.recv().await {
                    let mut attempt = 0;
                    loop {
                        let msg = AppendLogs {
                            deployment_id: deployment_id.clone(),
                            run_id: id.clone(),
                            lines: lines.clone(),
                        };
                        match persistence.call(msg).await {
                            Ok(_) => break,
                            Err(PersistError::Unavailable(e)) if attempt < FINISH_RETRIES => {
                                attempt += 1;
                                tracing::debug!(error = %e, "log write waits for the database");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, lines = lines.len(), "log lines lost");
                                break;
                            }
                        }
                    }
                }
            },
            span,
        )));
    }

    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.buffer);
        if let Some(tx) = &self.log_tx {
            let _ = tx.send(batch);
        }
    }

    fn log_system(&mut self, line: impl Into<String>) {
        self.buffer.push(NewLogLine {
            at: chrono::Utc::now(),
            stream: "system".into(),
            line: line.into(),
        });
    }

    /// Writes the outcome: the remaining log lines first, then the result (compare-and-set),
    /// then stops the actor.
    fn finish(&mut self, outcome: Option<RunOutcome>, ctx: &mut Context<Self>) {
        if self.finishing {
            return;
        }
        self.finishing = true;
        if let (Some(o), Some(started)) = (&outcome, self.started) {
            crate::metrics::global()
                .run_duration
                .get_or_create(&crate::metrics::RunLabels {
                    provider_type: self.deployment.provider_type.to_string(),
                    template: self.deployment.template_name.clone(),
                    operation: self.run.kind.as_str().to_string(),
                    status: o.status().to_string(),
                })
                .observe(started.elapsed().as_secs_f64());
        }
        match &outcome {
            Some(o) => {
                let detail = match o {
                    RunOutcome::Failed { error } => format!(": {error}"),
                    RunOutcome::Cancelled { reason } => format!(": {reason}"),
                    _ => String::new(),
                };
                self.log_system(format!("run ended {}{detail}", o.status()));
            }
            None => self.log_system("run interrupted; its lease is released for another node"),
        }
        self.flush();
        self.log_tx = None; // the writer ends once it has written everything
        let writer = self.log_writer.take();
        let persistence = self.ctx.persistence.clone();
        let node = self.ctx.node.clone();
        let id = self.id();
        let lease_lost = self.lease_lost;
        let span = self.span.clone();
        ctx.wait(
            tracing::Instrument::instrument(async move {
                if let Some(writer) = writer {
                    let _ = writer.await;
                }
                if lease_lost {
                    tracing::warn!(run.id = %id, "lease lost; result not written (another node owns the run)");
                    return;
                }
                match outcome {
                    Some(outcome) => write_result(&persistence, &id, &node, outcome).await,
                    None => {
                        let msg = ReleaseRun { run_id: id.clone(), node };
                        if let Err(e) = persistence.call(msg).await {
                            tracing::warn!(run.id = %id, error = %e, "could not release the lease; it will expire");
                        }
                    }
                }
            }, span)
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        );
    }

    fn on_engine_done(
        &mut self,
        result: Result<Result<EngineOutput, EngineError>, tokio::task::JoinError>,
        ctx: &mut Context<Self>,
    ) {
        let outcome = match result {
            Ok(Ok(EngineOutput::Deployed { outputs })) => Some(RunOutcome::Completed { outputs }),
            Ok(Ok(EngineOutput::Destroyed)) => Some(RunOutcome::Destroyed),
            Ok(Ok(EngineOutput::Planned { summary, plan })) => Some(self.planned(summary, plan)),
            Ok(Err(EngineError::Failed(error) | EngineError::Unavailable(error))) => {
                Some(RunOutcome::Failed { error })
            }
            Ok(Err(e @ EngineError::TimedOut(_))) => Some(RunOutcome::Failed {
                error: e.to_string(),
            }),
            Ok(Err(EngineError::Stopped(StopReason::Cancel))) => Some(RunOutcome::Cancelled {
                reason: "cancelled by request".into(),
            }),
            Ok(Err(EngineError::Stopped(StopReason::Shutdown))) => None,
            Ok(Err(EngineError::Transient(error))) => {
                tracing::warn!(deployment.id = %self.deployment.id, error = %error, "run interrupted by an outage; it will be retried");
                self.log_system(format!(
                    "interrupted by an outage, will be retried: {error}"
                ));
                None
            }
            Err(join) => {
                tracing::error!(deployment.id = %self.deployment.id, error = %join, "engine task panicked");
                Some(RunOutcome::Failed {
                    error: "internal error: the engine stopped unexpectedly".into(),
                })
            }
        };
        // The engine's last events may still be in the channel (its result and its events
        // travel separately): the run ends once they are in, so no log line is lost.
        if self.events_done {
            self.finish(outcome, ctx);
        } else {
            self.awaiting_events = Some(outcome);
            // A sender that outlived the engine must not keep the run open.
            ctx.run_later(EVENTS_DRAIN_TIMEOUT, |act, ctx| {
                if let Some(outcome) = act.awaiting_events.take() {
                    tracing::warn!(deployment.id = %act.deployment.id, "the engine's events did not end; finishing without waiting");
                    act.finish(outcome, ctx);
                }
            });
        }
    }
}

impl DeploymentActor {
    /// Starts the engine on this run (with the saved plan a confirmed run applies).
    fn start_engine(
        &mut self,
        saved_plan: Option<Vec<u8>>,
        source: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let d = self.deployment.clone();
        let catalog = self.ctx.catalog.get();
        let template = match (&source, catalog.find(d.provider_type, &d.template_name)) {
            // A source kept from the deployment's apply describes itself (its parameters,
            // providers and scope), whatever the template file says now or if it is gone.
            (Some(kept), _) => {
                self.log_system("using the template source this deployment was applied with");
                crate::catalog::template_from_source(d.provider_type, &d.template_name, kept)
            }
            (None, Some(t)) => t.clone(),
            (None, None) => {
                let error = format!(
                    "template {} ({}) no longer exists",
                    d.template_name, d.provider_type
                );
                return self.finish(Some(RunOutcome::Failed { error }), ctx);
            }
        };
        if let Some(err) = &template.error {
            let error = format!("template {} cannot be used: {err}", template.name);
            return self.finish(Some(RunOutcome::Failed { error }), ctx);
        }
        let template = Arc::new(template);
        let engines = self.ctx.engines.clone();
        let engine = match engines.for_provider(d.provider_type) {
            Ok(engine) => engine,
            Err(e) => {
                return self.finish(
                    Some(RunOutcome::Failed {
                        error: e.to_string(),
                    }),
                    ctx,
                );
            }
        };
        // The deployment as this run sees it: the run's parameters (sensitive ones are stored
        // encrypted: opened for this run only), operation and attempt.
        let mut deployment = self.deployment.clone();
        deployment.parameters = self.run.parameters.clone();
        deployment.operation = self.run.kind.operation();
        deployment.attempts = self.run.attempts;
        if let Err(e) = crate::secrets::open(
            &mut deployment.parameters,
            self.ctx.secret_key.as_ref().as_ref(),
        ) {
            return self.finish(
                Some(RunOutcome::Failed {
                    error: e.to_string(),
                }),
                ctx,
            );
        }
        let runner = &self.ctx.settings.runner;
        let workspace = self
            .ctx
            .settings
            .paths
            .data_dir
            .join("workspaces")
            .join(self.deployment.id.as_str());
        let job = RunJob {
            deployment,
            run: self.run.clone(),
            saved_plan,
            source,
            template,
            workspace: std::path::absolute(&workspace).unwrap_or(workspace),
            timeout: Duration::from_secs(runner.run_timeout_secs),
            cancel_grace: Duration::from_secs(runner.cancel_grace_secs),
        };
        if d.provider_type.is_terraform() {
            let info = engines.terraform.state_info(&job);
            let msg = RecordTerraformState(StateLocation {
                deployment_id: self.deployment.id.to_string(),
                backend_type: info.backend_type.into(),
                backend_config: info.backend_config,
                workspace: info.workspace,
            });
            let persistence = self.ctx.persistence.clone();
            actix_rt::spawn(async move {
                if let Err(e) = persistence.call(msg).await {
                    tracing::warn!(error = %e, "could not record the terraform state location");
                }
            });
        }

        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        ctx.add_stream(stream::poll_fn(move |cx| events_rx.poll_recv(cx)));
        let fut = engine.run(job, events_tx, self.stop_tx.subscribe());
        let handle = actix_rt::spawn(tracing::Instrument::instrument(fut, self.span.clone()));
        ctx.spawn(
            handle
                .into_actor(self)
                .map(|result, act, ctx| act.on_engine_done(result, ctx)),
        );
    }

    /// What a finished plan means for this run: a speculative plan's or a drift check's result,
    /// or a plan that waits for a decision (sealed for storage), or nothing to decide.
    fn planned(&self, summary: PlanSummary, plan: Option<Vec<u8>>) -> RunOutcome {
        match (self.run.kind, plan) {
            (RunKind::Plan, _) => RunOutcome::Speculative { summary },
            (RunKind::DriftCheck, _) => RunOutcome::DriftChecked { summary },
            (RunKind::Update, _) if summary.is_empty() => RunOutcome::NoChanges { summary },
            (_, Some(plan)) => RunOutcome::Planned {
                summary,
                plan: crate::secrets::seal_bytes(self.ctx.secret_key.as_ref().as_ref(), &plan),
            },
            (_, None) => RunOutcome::Failed {
                error: "internal error: the plan was not saved".into(),
            },
        }
    }
}

async fn write_result(persistence: &PersistenceHandle, id: &str, node: &str, outcome: RunOutcome) {
    let status = outcome.status();
    for attempt in 0..=FINISH_RETRIES {
        let msg = FinishRun {
            run_id: id.to_string(),
            node: node.to_string(),
            outcome: outcome.clone(),
        };
        match persistence.call(msg).await {
            Ok(true) => {
                tracing::info!(run.id = %id, status = %status, "run finished");
                return;
            }
            Ok(false) => {
                tracing::warn!(run.id = %id, "run finished but another node owns it now; result not written");
                return;
            }
            Err(PersistError::Unavailable(e)) if attempt < FINISH_RETRIES => {
                tracing::warn!(run.id = %id, error = %e, "database unavailable; retrying the result write");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::error!(run.id = %id, error = %e, "could not write the result; the lease will expire and the run is retried");
                return;
            }
        }
    }
}

impl Actor for DeploymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let span = self.span.clone();
        let _entered = span.enter();
        self.started = Some(std::time::Instant::now());
        self.start_log_writer();
        ctx.run_interval(FLUSH_INTERVAL, |act, _| act.flush());
        let started = format!(
            "run started on {} (attempt {}, operation {})",
            self.ctx.node,
            self.run.attempts,
            self.run.kind.as_str()
        );
        self.log_system(started);
        let saved_plan = self.run.phase() == RunPhase::ApplySaved;
        let applied_source = self.run.uses_applied_source();
        if !saved_plan && !applied_source {
            return self.start_engine(None, None, ctx);
        }
        // A confirmed run applies exactly the plan it showed, and a run of an existing
        // deployment runs the template source it was applied with: load them first.
        let persistence = self.ctx.persistence.clone();
        let msg = GetRunInputs {
            run_id: self.id(),
            deployment_id: self.deployment.id.to_string(),
            saved_plan,
            applied_source,
        };
        ctx.wait(
            async move { persistence.call(msg).await }
                .into_actor(self)
                .map(move |result, act, ctx| {
                    let inputs = match result {
                        Ok(inputs) => inputs,
                        Err(PersistError::Unavailable(e)) => {
                            act.log_system(format!(
                                "could not load the run's inputs: {e}; the run will be retried"
                            ));
                            return act.finish(None, ctx);
                        }
                        Err(e) => {
                            let error = e.to_string();
                            return act.finish(Some(RunOutcome::Failed { error }), ctx);
                        }
                    };
                    let plan = match (saved_plan, inputs.saved_plan) {
                        (false, _) => None,
                        (true, Some(sealed)) => {
                            let key = act.ctx.secret_key.clone();
                            match crate::secrets::open_bytes(key.as_ref().as_ref(), &sealed) {
                                Ok(plan) => Some(plan),
                                Err(e) => {
                                    let error = format!("cannot open the saved plan: {e}");
                                    return act.finish(Some(RunOutcome::Failed { error }), ctx);
                                }
                            }
                        }
                        (true, None) => {
                            let error = "the run's saved plan is missing".to_string();
                            return act.finish(Some(RunOutcome::Failed { error }), ctx);
                        }
                    };
                    act.start_engine(plan, inputs.applied_source, ctx)
                }),
        );
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.supervisor.do_send(RunFinished { run_id: self.id() });
    }
}

impl StreamHandler<RunEvent> for DeploymentActor {
    fn handle(&mut self, event: RunEvent, _: &mut Context<Self>) {
        match event {
            RunEvent::Log { stream, line } => {
                self.buffer.push(NewLogLine {
                    at: chrono::Utc::now(),
                    stream: stream.as_str().into(),
                    line,
                });
                if self.buffer.len() >= FLUSH_LINES {
                    self.flush();
                }
            }
            RunEvent::Progress(p) if p > self.progress && !self.finishing => {
                self.progress = p;
                let msg = SetProgress {
                    run_id: self.id(),
                    node: self.ctx.node.clone(),
                    progress: p,
                };
                let persistence = self.ctx.persistence.clone();
                actix_rt::spawn(async move {
                    let _ = persistence.call(msg).await;
                });
            }
            RunEvent::Progress(_) => {}
            RunEvent::Source(source) => {
                let msg = RecordRunSource {
                    run_id: self.id(),
                    source,
                };
                let persistence = self.ctx.persistence.clone();
                actix_rt::spawn(async move {
                    if let Err(e) = persistence.call(msg).await {
                        tracing::warn!(error = %e, "could not keep the run's template source");
                    }
                });
            }
        }
    }

    /// The engine dropped its sender and every event was handled: if its result is in, the
    /// run ends now.
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.events_done = true;
        if let Some(outcome) = self.awaiting_events.take() {
            self.finish(outcome, ctx);
        }
    }
}

//! The terraform engine (`terraform-aws`, `terraform-gcp`, `terraform-azure`), design.md §5.
//!
//! Workspace `<data_dir>/workspaces/<deployment_id>/`: the template as `main.tf`, parameters
//! in `terraform.tfvars.json` (JSON: no injection), the generated provider/backend file, and
//! `.multicloud/` with each step's raw output. State lives in PostgreSQL (terraform's `pg`
//! backend, one terraform workspace per deployment) unless `terraform.state_backend = "local"`.
//! Steps: `init` once per template version (its result linked into every run's workspace,
//! the deployment's terraform workspace selected by file), then a deploy is one
//! `apply -auto-approve` (it needs no decision between plan and apply: one process, one
//! provider start, one configuration load) whose `-json` stream also carries the outputs;
//! destroy runs `apply -destroy -auto-approve`.
//! `-json` gives progress and clean error text; the log keeps each event's human-readable
//! message.

pub mod plan;
pub mod provider;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use serde_json::Value;
use tokio::time::Instant;

use super::process::{self, Limits, Step};
use super::{
    Engine, EngineError, EngineOutput, EventSender, RunEvent, RunJob, StopSignal, Stream,
    mask_secrets,
};
use crate::config::{Settings, StateBackend};
use crate::domain::{Operation, RunKind, RunPhase};

/// How long a run waits for terraform's state lock (held by an interrupted run of the same
/// deployment that is still finishing) before failing.
const LOCK_TIMEOUT: &str = "-lock-timeout=300s";
/// Tries of a step that failed on contention with another run (see `Run::retrying`).
const STEP_RETRIES: u32 = 40;
const STDERR_TAIL_LINES: usize = 20;
/// In a prepared directory: its init finished (holds the key).
const INIT_READY: &str = ".multicloud-ready";
/// In a workspace's `.terraform`: the key whose initialisation is linked there.
const INIT_LINKED: &str = "multicloud-init";
/// In a prepared directory: the provider packages as its init checked them (see
/// `providers_fingerprint`).
const INIT_PROVIDERS: &str = ".multicloud-providers";

pub struct TerraformEngine {
    settings: Arc<Settings>,
    /// The daemon's database, handed to terraform's `pg` backend as `PG_CONN_STR`.
    database_url: String,
}

/// Where a run keeps its state, for the `terraform_states` table.
#[derive(Debug, Clone)]
pub struct StateInfo {
    pub backend_type: &'static str,
    pub backend_config: Value,
    pub workspace: String,
}

impl TerraformEngine {
    pub fn new(settings: Arc<Settings>, database_url: String) -> TerraformEngine {
        TerraformEngine {
            settings,
            database_url,
        }
    }

    pub fn state_info(&self, job: &RunJob) -> StateInfo {
        match self.settings.terraform.state_backend {
            StateBackend::Pg => StateInfo {
                backend_type: "pg",
                backend_config: serde_json::json!({ "schema_name": provider::PG_SCHEMA }),
                workspace: job.deployment.id.to_string(),
            },
            StateBackend::Local => StateInfo {
                backend_type: "local",
                backend_config: serde_json::json!({
                    "path": job.workspace.join("terraform.tfstate.d")
                        .join(job.deployment.id.as_str()).join("terraform.tfstate")
                }),
                workspace: job.deployment.id.to_string(),
            },
        }
    }

    /// The binary to run: a configured path, or a name looked up on PATH (the child's PATH is
    /// the daemon's, so resolving here gives a clear error before anything starts).
    pub fn binary(&self) -> Option<PathBuf> {
        which(&self.settings.terraform.binary)
    }
}

impl Engine for TerraformEngine {
    fn run(
        &self,
        job: RunJob,
        events: EventSender,
        stop: StopSignal,
    ) -> LocalBoxFuture<'static, Result<EngineOutput, EngineError>> {
        let run = Run {
            settings: self.settings.clone(),
            database_url: self.database_url.clone(),
            binary: self.binary(),
            job,
            events,
            stop,
            secrets: Vec::new(),
            deadline: Instant::now(),
            init_key: String::new(),
        };
        run.execute().boxed_local()
    }
}

/// One run's state while it goes.
struct Run {
    settings: Arc<Settings>,
    database_url: String,
    binary: Option<PathBuf>,
    job: RunJob,
    events: EventSender,
    stop: StopSignal,
    secrets: Vec<String>,
    deadline: Instant,
    /// What `init` depends on (the template, the backend and provider requirements, the CLI
    /// configuration): runs with the same key share one initialised directory.
    init_key: String,
}

/// What one `-json` step reported.
#[derive(Default)]
struct StepReport {
    errors: Vec<String>,
    stderr_tail: Vec<String>,
    planned: u32,
    applied: u32,
    /// A resource change started (`apply_start`): a failure from here on is the apply's.
    /// (terraform prints the plan's summary even when the plan then fails, so that summary
    /// does not tell.)
    applying: bool,
    /// The apply phase ended (its `change_summary`).
    apply_done: bool,
    /// The plan's own description of itself: its `planned_change` and `resource_drift`
    /// messages (`change` objects, no values), complete once `plan_done`.
    planned_changes: Vec<Value>,
    drifted: Vec<Value>,
    plan_done: bool,
    /// The `outputs` message that follows the apply's summary, with the values
    /// (`{name: {sensitive, type, value}}`, no value for sensitive ones). Once the apply
    /// finished without outputs message: `{}` (the template declares none).
    outputs: Option<Value>,
}

impl StepReport {
    /// The phase a failed step was in: `apply -auto-approve` plans first, so a failure before
    /// its first change is a plan failure.
    fn failed_phase<'a>(&self, name: &'a str, args: &[&str]) -> &'a str {
        if name == "apply" && args.contains(&"-auto-approve") && !self.applying && !self.apply_done
        {
            "plan"
        } else {
            name
        }
    }
}

impl Run {
    async fn execute(mut self) -> Result<EngineOutput, EngineError> {
        self.deadline = Instant::now() + self.job.timeout;
        if self.job.run.kind.is_speculative() {
            self.speculative_workspace()?;
        }
        let binary = self.binary.clone().ok_or_else(|| {
            EngineError::Unavailable(format!(
                "terraform binary {:?} not found: install terraform or set terraform.binary",
                self.settings.terraform.binary
            ))
        })?;
        let env = self.prepare_workspace()?;
        let operation = self.job.deployment.operation;
        self.system(format!(
            "{} of {} ({}) in {}",
            operation.as_str(),
            self.job.template.name,
            self.job.template.provider_type,
            self.job.workspace.display()
        ));

        // The instant the first terraform process starts, for dispatch-latency measurements
        // (accepted → running terraform); bench/run.sh reads it from the run's log.
        self.system(format!(
            "spawning terraform at {}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ));
        self.init(&binary, &env).await?;
        self.progress(10);

        match self.job.run.phase() {
            RunPhase::PlanAndApply => match operation {
                Operation::Deploy => {
                    let apply = [
                        "apply",
                        "-auto-approve",
                        "-input=false",
                        "-json",
                        LOCK_TIMEOUT,
                    ];
                    let report = self.changing_step(&binary, &env, "apply", &apply).await?;
                    self.progress(95);
                    let outputs = self.outputs_of(report, &binary, &env).await?;
                    Ok(EngineOutput::Deployed { outputs })
                }
                Operation::Destroy => {
                    let destroy = [
                        "apply",
                        "-destroy",
                        "-auto-approve",
                        "-input=false",
                        "-json",
                        LOCK_TIMEOUT,
                    ];
                    self.changing_step(&binary, &env, "destroy", &destroy)
                        .await?;
                    Ok(EngineOutput::Destroyed)
                }
            },
            RunPhase::Plan => self.plan(&binary, &env, false).await,
            RunPhase::DriftCheck => self.plan(&binary, &env, true).await,
            RunPhase::ApplySaved => {
                let plan = self.job.saved_plan.clone().ok_or_else(|| {
                    EngineError::Failed("the run has no saved plan to apply".into())
                })?;
                let file = self.plan_file();
                write(&file, &plan)?;
                let file_arg = file.display().to_string();
                let apply = ["apply", "-input=false", "-json", LOCK_TIMEOUT, &file_arg];
                let applied = self.changing_step(&binary, &env, "apply", &apply).await;
                let _ = std::fs::remove_file(&file);
                let report = match applied {
                    Ok(report) => report,
                    Err(EngineError::Failed(m)) if m.contains("Saved plan is stale") => {
                        return self.stale_plan(&binary, &env, m).await;
                    }
                    Err(e) => return Err(e),
                };
                self.progress(95);
                match operation {
                    Operation::Deploy => {
                        let outputs = self.outputs_of(report, &binary, &env).await?;
                        Ok(EngineOutput::Deployed { outputs })
                    }
                    Operation::Destroy => Ok(EngineOutput::Destroyed),
                }
            }
        }
    }

    /// The saved plan no longer matches the state. On a first attempt, the state changed after
    /// the plan: the run fails (plan again). On a run taken over after its node died, the
    /// earlier attempt's terraform may have applied the plan to the end (it survives the
    /// daemon): when planning again finds nothing to change, that apply converged and the run
    /// completes; otherwise it fails, and nothing that was not approved is applied.
    async fn stale_plan(
        &mut self,
        binary: &Path,
        env: &[(String, String)],
        message: String,
    ) -> Result<EngineOutput, EngineError> {
        let stale = || {
            EngineError::Failed(format!(
                "the saved plan is stale: the deployment's state changed after it was planned; plan again ({message})"
            ))
        };
        if self.job.run.attempts <= 1 {
            return Err(stale());
        }
        self.system(
            "the saved plan is stale after an interruption: checking whether the earlier attempt applied it"
                .into(),
        );
        let EngineOutput::Planned { summary, .. } = self.plan(binary, env, false).await? else {
            return Err(stale());
        };
        if !summary.is_empty() {
            return Err(stale());
        }
        self.system("the earlier attempt applied the plan: nothing left to change".into());
        self.progress(95);
        match self.job.deployment.operation {
            Operation::Deploy => Ok(EngineOutput::Deployed {
                outputs: self.outputs(binary, env).await?,
            }),
            Operation::Destroy => Ok(EngineOutput::Destroyed),
        }
    }

    /// The outputs an apply's `-json` stream carried (or, from a stream without them,
    /// `terraform output`).
    async fn outputs_of(
        &mut self,
        report: StepReport,
        binary: &Path,
        env: &[(String, String)],
    ) -> Result<Value, EngineError> {
        match report.outputs {
            Some(raw) => Ok(flatten_outputs(&raw)),
            // A stream without its apply summary (another terraform version): ask.
            None => self.outputs(binary, env).await,
        }
    }

    /// `<workspace>/.multicloud/<run id>.tfplan`.
    fn plan_file(&self) -> PathBuf {
        self.job
            .workspace
            .join(".multicloud")
            .join(format!("{}.tfplan", self.job.run.id))
    }

    /// `plan -out`, then its summary from `show -json`. A run that waits for a decision keeps
    /// the plan file; a speculative plan and a drift check (`-refresh-only`: what changed in the
    /// cloud behind terraform's back) never lock the state or change anything.
    async fn plan(
        &mut self,
        binary: &Path,
        env: &[(String, String)],
        drift: bool,
    ) -> Result<EngineOutput, EngineError> {
        let file = self.plan_file();
        let out = format!("-out={}", file.display());
        let speculative = self.job.run.kind.is_speculative();
        let mut args = vec!["plan", "-input=false", "-json", &out];
        if drift {
            args.push("-refresh-only");
        }
        if self.job.deployment.operation == Operation::Destroy {
            args.push("-destroy");
        }
        if speculative {
            args.push("-lock=false");
        } else {
            args.push(LOCK_TIMEOUT);
        }
        let report = self.changing_step(binary, env, "plan", &args).await?;
        self.progress(80);
        // The plan describes itself in its stream; `show -json` (which loads every provider's
        // schema: ~2 s with the AWS provider) only for a stream that does not.
        let streamed = if !report.plan_done {
            None
        } else if drift {
            plan::summarize_stream(&report.drifted).ok()
        } else {
            plan::summarize_stream(&report.planned_changes).ok()
        };
        let summary = match streamed {
            Some(summary) => summary,
            None => self.show_summary(binary, env, &file, drift).await?,
        };
        self.log_plan(&summary, drift);
        let saved = if speculative {
            None
        } else {
            Some(std::fs::read(&file).map_err(|e| io_failed(&file, e))?)
        };
        let _ = std::fs::remove_file(&file);
        self.progress(95);
        Ok(EngineOutput::Planned {
            summary,
            plan: saved,
        })
    }

    /// A saved plan's summary from `terraform show -json <plan file>`.
    async fn show_summary(
        &mut self,
        binary: &Path,
        env: &[(String, String)],
        file: &Path,
        drift: bool,
    ) -> Result<crate::domain::PlanSummary, EngineError> {
        let file_arg = file.display().to_string();
        let show = ["show", "-json", "-no-color", &file_arg];
        let step = Step {
            name: "show".into(),
            program: binary.to_path_buf(),
            args: show.iter().map(|a| a.to_string()).collect(),
            env: env.to_vec(),
            cwd: self.job.workspace.clone(),
            output_dir: self.output_dir(),
        };
        self.system(format!("$ terraform {}", show.join(" ")));
        let mut stop = self.stop.clone();
        let shown =
            process::capture(&step, Limits::for_run(&self.job, self.deadline), &mut stop).await?;
        if !shown.status.success() {
            return Err(EngineError::Failed(mask_secrets(
                &format!("terraform show failed: {}", shown.stderr.join("\n")),
                &self.secrets,
            )));
        }
        let json: Value = serde_json::from_str(&shown.stdout).map_err(|e| {
            EngineError::Failed(format!("terraform show -json gave invalid JSON: {e}"))
        })?;
        if drift {
            plan::summarize_drift(&json)
        } else {
            plan::summarize(&json)
        }
        .map_err(|e| EngineError::Failed(format!("reading the plan: {e}")))
    }

    /// The plan's headline and one line per resource change in the run's log.
    fn log_plan(&self, summary: &crate::domain::PlanSummary, drift: bool) {
        self.system(if drift {
            if summary.is_empty() {
                "Drift: none. The cloud matches the state.".to_string()
            } else {
                format!(
                    "Drift: {} resource(s) changed outside terraform.",
                    summary.resources.len()
                )
            }
        } else {
            summary.headline()
        });
        for r in &summary.resources {
            self.system(format!(
                "  {} {} ({})",
                match r.action {
                    crate::domain::ChangeAction::Create => "+",
                    crate::domain::ChangeAction::Update => "~",
                    crate::domain::ChangeAction::Delete => "-",
                    crate::domain::ChangeAction::Replace => "-/+",
                },
                r.address,
                r.resource_type
            ));
        }
    }

    /// Plans and drift checks run next to the deployment's other runs, so they get a directory
    /// of their own under its workspace (`.runs/<run id>`); with the local backend they read a
    /// copy of its state.
    fn speculative_workspace(&mut self) -> Result<(), EngineError> {
        let main = self.job.workspace.clone();
        let own = main.join(".runs").join(self.job.run.id.as_str());
        std::fs::create_dir_all(&own).map_err(|e| io_failed(&own, e))?;
        if self.settings.terraform.state_backend == StateBackend::Local {
            let states = main.join("terraform.tfstate.d");
            let id = self.job.deployment.id.as_str();
            let from = states.join(id).join("terraform.tfstate");
            if from.exists() {
                let to = own.join("terraform.tfstate.d").join(id);
                std::fs::create_dir_all(&to).map_err(|e| io_failed(&to, e))?;
                std::fs::copy(&from, to.join("terraform.tfstate"))
                    .map_err(|e| io_failed(&from, e))?;
            }
        }
        self.job.workspace = own;
        Ok(())
    }

    /// Makes the workspace an initialised terraform directory with this deployment's
    /// terraform workspace selected, without running terraform in it.
    ///
    /// `terraform init` runs once per template version, backend and provider requirements
    /// (the run's `init_key`), in `<plugin cache>/.multicloud-init/<key>/`; every run of that
    /// version links the result into its workspace (`.terraform/providers` and `modules` as
    /// symlinks, the backend settings and the dependency lock file as copies) in a few
    /// milliseconds. A changed template, backend or provider requirement is another key, so
    /// another init. The deployment's terraform workspace is selected by writing
    /// `.terraform/environment`; the backend creates it on first use (no `workspace` process).
    ///
    /// The workspace's lock file has the prepared one's provider selections without their
    /// checksums: with them, every terraform process hashes each provider package before
    /// starting it (about a second for the 700 MB AWS provider), yet `init` checked the very
    /// same packages against them. Instead each run checks, by size and modification time,
    /// that the packages are still the ones `init` checked, and initializes again (which
    /// verifies the checksums) when they are not.
    async fn init(&mut self, binary: &Path, env: &[(String, String)]) -> Result<(), EngineError> {
        let prepared = self.prepared_dir();
        let ready = prepared.join(INIT_READY).exists();
        if !ready || !providers_unchanged(&prepared) {
            if ready {
                self.system(if prepared.join(INIT_PROVIDERS).exists() {
                    "the provider packages changed since init checked them; initializing again"
                        .into()
                } else {
                    "no record of the provider packages init checked (an earlier version's init); initializing again"
                        .into()
                });
            }
            self.init_prepared(binary, env, ready).await?;
        }
        self.link_initialised(&prepared)
    }

    /// Runs `terraform init` in the prepared directory of this run's key, under the plugin
    /// cache lock (terraform's cache is not safe for parallel inits; runs of every daemon
    /// sharing the cache take turns). `again`: initialise even if it is ready (the provider
    /// plugins changed under it). Two daemons initializing the pg backend on a fresh database
    /// race on its CREATE ... IF NOT EXISTS statements (PostgreSQL reports a duplicate key in
    /// pg_type); init is idempotent, so it is simply run again.
    ///
    /// The dependency lock file of the template's last successful init is put there first:
    /// with its checksums terraform links the cached provider as it is. Without them it
    /// installs the provider into the shared cache again, rewriting files other runs'
    /// terraform are loading at that moment ("Required plugins are not installed").
    async fn init_prepared(
        &mut self,
        binary: &Path,
        env: &[(String, String)],
        again: bool,
    ) -> Result<(), EngineError> {
        let prepared = self.prepared_dir();
        let cache_lock = self.lock_plugin_cache().await?;
        if prepared.join(INIT_READY).exists() && !again {
            // Another run initialised it while this one waited.
            drop(cache_lock);
            return Ok(());
        }
        let ws = self.job.workspace.clone();
        std::fs::create_dir_all(&prepared).map_err(|e| io_failed(&prepared, e))?;
        for file in ["main.tf", provider::FILE_NAME] {
            let to = prepared.join(file);
            std::fs::copy(ws.join(file), &to).map_err(|e| io_failed(&to, e))?;
        }
        let init = ["init", "-input=false", "-no-color"];
        let shared_lock = self.shared_lock_file();
        let lock_file = prepared.join(".terraform.lock.hcl");
        let result = self
            .retrying("init", concurrent_ddl, async |run: &mut Run| {
                let seeded =
                    !lock_file.exists() && std::fs::copy(&shared_lock, &lock_file).is_ok();
                let mut result = run
                    .step_in(&prepared, binary, env, "init", &init, false)
                    .await;
                if seeded && matches!(result, Err(EngineError::Failed(_))) {
                    // The template's providers changed since that lock file: start from none.
                    run.system(
                        "init with the template's previous lock file failed; initializing without it"
                            .into(),
                    );
                    let _ = std::fs::remove_file(&lock_file);
                    let _ = std::fs::remove_file(&shared_lock);
                    result = run
                        .step_in(&prepared, binary, env, "init", &init, false)
                        .await;
                }
                result
            })
            .await;
        if result.is_ok() {
            let tmp = shared_lock.with_extension("hcl.tmp");
            let _ = std::fs::create_dir_all(shared_lock.parent().unwrap_or(Path::new(".")))
                .and_then(|_| std::fs::copy(&lock_file, &tmp))
                .and_then(|_| std::fs::rename(&tmp, &shared_lock));
            write(
                &prepared.join(INIT_PROVIDERS),
                providers_fingerprint(&prepared.join(".terraform/providers")).as_bytes(),
            )?;
            write(&prepared.join(INIT_READY), self.init_key.as_bytes())?;
        }
        drop(cache_lock);
        result.map(|_| ())
    }

    /// Links the prepared directory's initialisation into the workspace (once per key: a
    /// re-run or a destroy of the same version finds it there) and selects the deployment's
    /// terraform workspace.
    fn link_initialised(&self, prepared: &Path) -> Result<(), EngineError> {
        let ws = &self.job.workspace;
        let dot = ws.join(".terraform");
        let marker = dot.join(INIT_LINKED);
        let linked = std::fs::read_to_string(&marker).is_ok_and(|k| k == self.init_key);
        if !linked {
            match std::fs::remove_dir_all(&dot) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_failed(&dot, e)),
            }
            std::fs::create_dir_all(&dot).map_err(|e| io_failed(&dot, e))?;
            let from = prepared.join(".terraform");
            for dir in ["providers", "modules"] {
                if from.join(dir).exists() {
                    std::os::unix::fs::symlink(from.join(dir), dot.join(dir))
                        .map_err(|e| io_failed(&dot.join(dir), e))?;
                }
            }
            // The backend's settings (pg: schema; the connection comes from PG_CONN_STR).
            if from.join("terraform.tfstate").exists() {
                std::fs::copy(
                    from.join("terraform.tfstate"),
                    dot.join("terraform.tfstate"),
                )
                .map_err(|e| io_failed(&dot.join("terraform.tfstate"), e))?;
            }
            let lock_file = ws.join(".terraform.lock.hcl");
            match std::fs::read_to_string(prepared.join(".terraform.lock.hcl")) {
                Ok(lock) => write(&lock_file, without_hashes(&lock).as_bytes())?,
                Err(_) => {
                    let _ = std::fs::remove_file(&lock_file);
                }
            }
            write(&marker, self.init_key.as_bytes())?;
        }
        // One terraform workspace per deployment (pg: a state row of its own; local: its own
        // directory under terraform.tfstate.d).
        write(
            &dot.join("environment"),
            self.job.deployment.id.as_str().as_bytes(),
        )?;
        self.system(format!(
            "using the initialised template {} (workspace {})",
            prepared
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            self.job.deployment.id
        ));
        Ok(())
    }

    /// `<plugin cache>/.multicloud-init/<provider type>-<template>-<key>`.
    fn prepared_dir(&self) -> PathBuf {
        let t = &self.job.template;
        self.plugin_cache_dir()
            .join(".multicloud-init")
            .join(format!(
                "{}-{}-{}",
                t.provider_type,
                t.name,
                &self.init_key[..16.min(self.init_key.len())]
            ))
    }

    /// A step that changes the cloud (apply, destroy). The pg backend creates the deployment's
    /// terraform workspace on its first use under one advisory lock shared by the whole
    /// database, tried once (`-lock-timeout` does not apply to it): a step that meets another
    /// run's creation fails before it changes anything and is tried again.
    async fn changing_step(
        &mut self,
        binary: &Path,
        env: &[(String, String)],
        name: &str,
        args: &[&str],
    ) -> Result<StepReport, EngineError> {
        self.retrying(name, workspace_creation_contended, async |run: &mut Run| {
            run.provider_step(binary, env, name, args, true).await
        })
        .await
    }

    /// `<plugin cache>/.multicloud-locks/<provider type>-<template>.hcl`.
    fn shared_lock_file(&self) -> PathBuf {
        let t = &self.job.template;
        self.plugin_cache_dir()
            .join(".multicloud-locks")
            .join(format!("{}-{}.hcl", t.provider_type, t.name))
    }

    /// A step that loads the provider plugins: if another run's `init` was rewriting them in
    /// the shared cache just then, initialize again and run the step once more (terraform
    /// stops before doing anything when its plugins are incomplete).
    async fn provider_step(
        &mut self,
        binary: &Path,
        env: &[(String, String)],
        name: &str,
        args: &[&str],
        json: bool,
    ) -> Result<StepReport, EngineError> {
        match self.step(binary, env, name, args, json).await {
            Err(EngineError::Failed(msg))
                if plugins_changed(&msg) && self.stop.borrow().is_none() =>
            {
                self.system(format!(
                    "{name}: the provider plugins changed under it (another run's init); initializing again"
                ));
                self.init_prepared(binary, env, true).await?;
                self.step(binary, env, name, args, json).await
            }
            other => other,
        }
    }

    /// Runs `attempt` again while it fails with an error `transient` recognizes, with a short
    /// growing, jittered pause, until `STEP_RETRIES` tries or the run's deadline.
    async fn retrying<T>(
        &mut self,
        name: &str,
        transient: fn(&str) -> bool,
        mut attempt: impl AsyncFnMut(&mut Run) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let mut tries = 0u32;
        loop {
            tries += 1;
            match attempt(self).await {
                Err(EngineError::Failed(msg))
                    if tries < STEP_RETRIES && transient(&msg) && self.stop.borrow().is_none() =>
                {
                    let pause = std::time::Duration::from_millis(
                        (100 * u64::from(tries.min(10))) + u64::from(rand::random::<u8>()),
                    );
                    if Instant::now() + pause >= self.deadline {
                        return Err(EngineError::Failed(msg));
                    }
                    self.system(format!(
                        "{name} met another run's lock or DDL; trying again ({tries}/{STEP_RETRIES})"
                    ));
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    /// Raw step output of this attempt: `.multicloud/<operation>-<attempt>/`. A re-run after a
    /// crash never truncates the files an orphaned terraform of the previous attempt may still
    /// be writing.
    fn output_dir(&self) -> PathBuf {
        let d = &self.job.deployment;
        let run = &self.job.run;
        let name = match (run.kind, run.phase()) {
            // A deploy or destroy that needs no decision: `deploy-1`, `destroy-2`, ...
            (RunKind::Deploy | RunKind::Destroy, RunPhase::PlanAndApply) => {
                format!("{}-{}", d.operation.as_str(), d.attempts)
            }
            (kind, phase) => {
                let phase = match phase {
                    RunPhase::PlanAndApply => "run",
                    RunPhase::Plan | RunPhase::DriftCheck => "plan",
                    RunPhase::ApplySaved => "apply",
                };
                format!("{}-{}-{phase}-{}", kind.as_str(), run.id, d.attempts)
            }
        };
        self.job.workspace.join(".multicloud").join(name)
    }

    /// `terraform.plugin_cache_dir`, by default `<data_dir>/plugin-cache`.
    fn plugin_cache_dir(&self) -> PathBuf {
        let tf = &self.settings.terraform;
        if tf.plugin_cache_dir.is_empty() {
            PathBuf::from(absolute(
                &self
                    .settings
                    .paths
                    .data_dir
                    .join("plugin-cache")
                    .display()
                    .to_string(),
            ))
        } else {
            PathBuf::from(absolute(&tf.plugin_cache_dir))
        }
    }

    /// terraform's plugin cache is not safe when several `init`s write to it at once (it
    /// documents this), so `init` holds an exclusive `flock` on the cache: runs of this process
    /// and of any other daemon sharing the directory take turns. Only `init` touches the cache;
    /// plan and apply run in parallel. The lock is taken on a blocking thread, never on the actor.
    async fn lock_plugin_cache(&self) -> Result<nix::fcntl::Flock<std::fs::File>, EngineError> {
        let path = self.plugin_cache_dir().join(".multicloud-init.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_failed(&path, e))?;
        let started = std::time::Instant::now();
        let lock = tokio::task::spawn_blocking(move || {
            nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        })
        .await
        .map_err(|e| EngineError::Failed(format!("waiting for the plugin cache lock: {e}")))?
        .map_err(|(_, errno)| EngineError::Failed(format!("locking the plugin cache: {errno}")))?;
        let waited = started.elapsed();
        if waited > std::time::Duration::from_millis(100) {
            self.system(format!(
                "waited {:.1} s for the plugin cache (another init)",
                waited.as_secs_f64()
            ));
        }
        Ok(lock)
    }

    /// Writes the workspace files and returns the child environment.
    fn prepare_workspace(&mut self) -> Result<Vec<(String, String)>, EngineError> {
        let ws = self.job.workspace.clone();
        let home = ws.join(".multicloud").join("home");
        std::fs::create_dir_all(&home).map_err(|e| io_failed(&home, e))?;
        let template = &self.job.template;
        let source = match &self.job.source {
            Some(applied) => applied.clone(),
            None => template.content().map_err(|e| {
                EngineError::Failed(format!(
                    "cannot read template {}: {e}",
                    template.path.display()
                ))
            })?,
        };
        let _ = self.events.send(RunEvent::Source(source.clone()));
        write(&ws.join("main.tf"), source.as_bytes())?;
        // Sensitive values go to terraform through its environment (TF_VAR_*), never a file.
        let sensitive: Vec<&str> = template.sensitive_parameters().collect();
        let vars = Value::Object(
            self.job
                .deployment
                .parameters
                .iter()
                .filter(|(k, _)| !sensitive.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        write(
            &ws.join("terraform.tfvars.json"),
            serde_json::to_string_pretty(&vars)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        let providers = provider::config_json(
            &self.settings,
            &self.job.deployment,
            &template.required_providers,
        );
        write(
            &ws.join(provider::FILE_NAME),
            serde_json::to_string_pretty(&providers)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        self.init_key = init_key(
            &source,
            &providers,
            &self.settings.terraform.cli_config_file,
            self.binary.as_deref(),
        );

        let tf = &self.settings.terraform;
        let mut env: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            ),
            ("HOME".into(), home.display().to_string()),
            ("TF_IN_AUTOMATION".into(), "1".into()),
            ("TF_INPUT".into(), "0".into()),
        ];
        // Always set: the environment may preset a file that does not exist.
        let cli_config = if tf.cli_config_file.is_empty() {
            let empty = ws.join(".multicloud").join("terraformrc");
            write(&empty, b"")?;
            empty.display().to_string()
        } else {
            absolute(&tf.cli_config_file)
        };
        env.push(("TF_CLI_CONFIG_FILE".into(), cli_config));
        let cache = self.plugin_cache_dir();
        std::fs::create_dir_all(&cache).map_err(|e| io_failed(&cache, e))?;
        env.push(("TF_PLUGIN_CACHE_DIR".into(), cache.display().to_string()));
        if tf.state_backend == StateBackend::Pg {
            env.push(("PG_CONN_STR".into(), pg_conn_str(&self.database_url)));
        }
        env.extend(provider::credential_env(
            &self.settings,
            &template.required_providers,
        ));
        for name in &sensitive {
            match self.job.deployment.parameters.get(*name) {
                Some(Value::String(s)) => env.push((format!("TF_VAR_{name}"), s.clone())),
                Some(Value::Null) | None => {}
                Some(other) => env.push((format!("TF_VAR_{name}"), other.to_string())),
            }
        }

        self.secrets = provider::secret_values(&env);
        for p in template.sensitive_parameters() {
            if let Some(v) = self.job.deployment.parameters.get(p) {
                match v {
                    Value::String(s) => self.secrets.push(s.clone()),
                    Value::Null => {}
                    other => self.secrets.push(other.to_string()),
                }
            }
        }
        Ok(env)
    }

    async fn step(
        &mut self,
        binary: &Path,
        env: &[(String, String)],
        name: &str,
        args: &[&str],
        json: bool,
    ) -> Result<StepReport, EngineError> {
        let workspace = self.job.workspace.clone();
        self.step_in(&workspace, binary, env, name, args, json)
            .await
    }

    /// A terraform step run in `cwd` (the workspace, or a template's prepared directory).
    async fn step_in(
        &mut self,
        cwd: &Path,
        binary: &Path,
        env: &[(String, String)],
        name: &str,
        args: &[&str],
        json: bool,
    ) -> Result<StepReport, EngineError> {
        let step = Step {
            name: name.to_string(),
            program: binary.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.to_vec(),
            cwd: cwd.to_path_buf(),
            output_dir: self.output_dir(),
        };
        self.system(format!("$ terraform {}", args.join(" ")));
        let limits = Limits::for_run(&self.job, self.deadline);
        let mut report = StepReport::default();
        let events = self.events.clone();
        let secrets = self.secrets.clone();
        let progress_base: (u32, u32) = match self.job.deployment.operation {
            Operation::Deploy => (30, 65),
            Operation::Destroy => (10, 85),
        };
        let mut stop = self.stop.clone();
        let step_started = std::time::Instant::now();
        let result = process::run_step(&step, limits, &mut stop, |stream, line| {
            let text = if json && stream == Stream::Stdout {
                match serde_json::from_str::<Value>(line) {
                    Ok(event) => {
                        let pct = handle_event(&event, &mut report);
                        if let Some(done) = pct {
                            let (base, span) = progress_base;
                            let p = base + span * done / 100;
                            let _ = events.send(RunEvent::Progress(p.min(99) as u8));
                        }
                        event_message(&event)
                    }
                    Err(_) => Some(line.to_string()),
                }
            } else {
                Some(line.to_string())
            };
            if stream == Stream::Stderr {
                report.stderr_tail.push(line.to_string());
                if report.stderr_tail.len() > STDERR_TAIL_LINES {
                    report.stderr_tail.remove(0);
                }
            }
            if let Some(text) = text {
                let _ = events.send(RunEvent::Log {
                    stream,
                    line: mask_secrets(&text, &secrets),
                });
            }
        })
        .await;
        crate::metrics::global().observe_step(name, step_started.elapsed());
        match result {
            Ok(status) if status.success() => {
                if report.apply_done && report.outputs.is_none() {
                    report.outputs = Some(Value::Object(Default::default()));
                }
                Ok(report)
            }
            Ok(status) => {
                let detail = if report.errors.is_empty() {
                    report.stderr_tail.join("\n")
                } else {
                    report.errors.join("\n")
                };
                let code = status
                    .code()
                    .map(|c| format!("exit code {c}"))
                    .unwrap_or_else(|| "killed by a signal".into());
                let phase = report.failed_phase(name, args);
                let message = mask_secrets(
                    &format!("terraform {phase} failed ({code}): {}", detail.trim()),
                    &self.secrets,
                );
                if self.settings.terraform.state_backend == StateBackend::Pg
                    && state_backend_unreachable(&detail)
                {
                    Err(EngineError::Transient(message))
                } else {
                    Err(EngineError::Failed(message))
                }
            }
            Err(e) => Err(match EngineError::from(e) {
                EngineError::Failed(m) => EngineError::Failed(mask_secrets(&m, &self.secrets)),
                other => other,
            }),
        }
    }

    /// `terraform output -json`, flattened to `{name: value}`, sensitive values masked.
    async fn outputs(
        &mut self,
        binary: &Path,
        env: &[(String, String)],
    ) -> Result<Value, EngineError> {
        let step = Step {
            name: "output".into(),
            program: binary.to_path_buf(),
            args: vec!["output".into(), "-json".into(), "-no-color".into()],
            env: env.to_vec(),
            cwd: self.job.workspace.clone(),
            output_dir: self.output_dir(),
        };
        self.system("$ terraform output -json".into());
        let mut stop = self.stop.clone();
        let out =
            process::capture(&step, Limits::for_run(&self.job, self.deadline), &mut stop).await?;
        if !out.status.success() {
            return Err(EngineError::Failed(mask_secrets(
                &format!("terraform output failed: {}", out.stderr.join("\n")),
                &self.secrets,
            )));
        }
        let raw: Value = serde_json::from_str(&out.stdout).map_err(|e| {
            EngineError::Failed(format!("terraform output -json gave invalid JSON: {e}"))
        })?;
        Ok(flatten_outputs(&raw))
    }

    fn system(&self, line: String) {
        let _ = self.events.send(RunEvent::Log {
            stream: Stream::System,
            line: mask_secrets(&line, &self.secrets),
        });
    }

    fn progress(&self, p: u8) {
        let _ = self.events.send(RunEvent::Progress(p));
    }
}

/// Updates the report from one `-json` event. Returns the percentage of planned resource
/// changes applied so far when it moved.
fn handle_event(event: &Value, report: &mut StepReport) -> Option<u32> {
    match event.get("type").and_then(Value::as_str)? {
        "planned_change" => {
            report.planned += 1;
            if let Some(change) = event.get("change") {
                report.planned_changes.push(change.clone());
            }
            None
        }
        "resource_drift" => {
            if let Some(change) = event.get("change") {
                report.drifted.push(change.clone());
            }
            None
        }
        "change_summary" => {
            let c = event.get("changes")?;
            let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0) as u32;
            match c.get("operation").and_then(Value::as_str) {
                Some("plan") => {
                    report.plan_done = true;
                    report.planned = n("add") + n("change") + n("remove");
                    // The plan is the first part of the step's progress.
                    Some(0)
                }
                Some("apply" | "destroy") => {
                    report.apply_done = true;
                    None
                }
                _ => None,
            }
        }
        // The plan phase announces the outputs with their planned action and no values; the
        // one after the apply's summary has the values.
        "outputs" if report.apply_done => {
            report.outputs = event.get("outputs").cloned();
            None
        }
        "apply_start" => {
            report.applying = true;
            None
        }
        "apply_complete" => {
            report.applied += 1;
            let planned = report.planned.max(report.applied).max(1);
            Some(report.applied * 100 / planned)
        }
        "diagnostic" => {
            let d = event.get("diagnostic")?;
            if d.get("severity").and_then(Value::as_str) == Some("error") {
                let summary = d.get("summary").and_then(Value::as_str).unwrap_or_default();
                let detail = d.get("detail").and_then(Value::as_str).unwrap_or_default();
                let text = if detail.is_empty() {
                    summary.to_string()
                } else {
                    format!("{summary}: {detail}")
                };
                report.errors.push(process::strip_ansi(&text));
            }
            None
        }
        _ => None,
    }
}

/// The human-readable line of a `-json` event (with a diagnostic's detail).
fn event_message(event: &Value) -> Option<String> {
    let message = event.get("@message").and_then(Value::as_str)?;
    let mut text = message.to_string();
    if let Some(detail) = event
        .pointer("/diagnostic/detail")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
    {
        text.push_str(": ");
        text.push_str(detail);
    }
    Some(process::strip_ansi(&text))
}

/// The pg backend's table creation lost a race with another node's: a duplicate key in one of
/// PostgreSQL's own catalogs (pg_type, pg_class, pg_namespace...), or an object created meanwhile.
/// terraform found the provider packages in `.terraform/providers` missing or not matching the
/// lock file.
fn plugins_changed(detail: &str) -> bool {
    detail.contains("Required plugins are not installed")
        || detail.contains("cached in .terraform/providers")
}

/// The pg backend's workspace creation lock (advisory lock -1) held by another run.
fn workspace_creation_contended(detail: &str) -> bool {
    detail.contains("locked for workspace creation")
}

fn concurrent_ddl(detail: &str) -> bool {
    detail.contains("duplicate key value violates unique constraint \"pg_")
        || detail.contains("already exists")
}

/// Whether terraform failed because its `pg` state backend could not be reached (errors of
/// Go's lib/pq start with `pq:`; connection failures with `dial`; a connection the server
/// dropped under a query names its unix socket, `.s.PGSQL.<port>`, or is lib/pq's "bad
/// connection").
fn state_backend_unreachable(detail: &str) -> bool {
    [
        "pq: the database system is",
        "dial unix",
        "dial tcp",
        "connection refused",
        "pq: terminating connection",
        "driver: bad connection",
        ".s.PGSQL.",
    ]
    .iter()
    .any(|needle| detail.contains(needle))
}

/// What `terraform init` depends on: the template's source (providers, modules, its own
/// `terraform` block), the backend and provider requirements the daemon adds (the `terraform`
/// part of the generated file, not the provider settings of one deployment), the CLI
/// configuration (provider installation) and the terraform binary. SHA-256, hex.
fn init_key(source: &str, generated: &Value, cli_config: &str, binary: Option<&Path>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        source.as_bytes(),
        generated
            .get("terraform")
            .map(Value::to_string)
            .unwrap_or_default()
            .as_bytes(),
        cli_config.as_bytes(),
        binary
            .map(|b| b.display().to_string())
            .unwrap_or_default()
            .as_bytes(),
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A dependency lock file without its `hashes = [...]` attributes (terraform writes each as
/// its own lines): the same provider versions and constraints, and no per-process checksum of
/// the packages.
fn without_hashes(lock: &str) -> String {
    let mut out = String::with_capacity(lock.len());
    let mut in_hashes = false;
    for line in lock.lines() {
        let t = line.trim();
        let starts = t.starts_with("hashes") && t[6..].trim_start().starts_with('=');
        if in_hashes {
            in_hashes = t != "]";
        } else if starts {
            in_hashes = !t.ends_with(']');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Every file of the provider packages under `providers` (symlinks followed, as terraform
/// follows them): path, size and modification time, one per line. It changes when a package
/// is installed again or replaced.
fn providers_fingerprint(providers: &Path) -> String {
    fn walk(dir: &Path, rel: &str, depth: u32, out: &mut String) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = format!("{rel}/{}", entry.file_name().to_string_lossy());
            match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_dir() && depth < 8 => walk(&entry.path(), &name, depth + 1, out),
                Ok(m) => {
                    let mtime = m
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos());
                    out.push_str(&format!("{name} {} {mtime}\n", m.len()));
                }
                Err(e) => out.push_str(&format!("{name} {e}\n")),
            }
        }
    }
    let mut out = String::new();
    walk(providers, "", 0, &mut out);
    out
}

/// The prepared directory's provider packages are the ones its init checked.
fn providers_unchanged(prepared: &Path) -> bool {
    std::fs::read_to_string(prepared.join(INIT_PROVIDERS)).is_ok_and(|recorded| {
        recorded == providers_fingerprint(&prepared.join(".terraform/providers"))
    })
}

/// `{name: {sensitive, type, value}}` → `{name: value}`, `"(sensitive)"` for sensitive ones.
pub fn flatten_outputs(raw: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(map) = raw.as_object() {
        for (name, o) in map {
            let sensitive = o.get("sensitive").and_then(Value::as_bool).unwrap_or(false);
            let value = if sensitive {
                Value::String("(sensitive)".into())
            } else {
                o.get("value").cloned().unwrap_or(Value::Null)
            };
            out.insert(name.clone(), value);
        }
    }
    Value::Object(out)
}

/// terraform's `pg` backend (Go's lib/pq) defaults to `sslmode=require`; over a unix socket or
/// loopback there is no TLS, so say `disable` there unless the URL chose.
pub fn pg_conn_str(url: &str) -> String {
    if url.contains("sslmode=") {
        return url.to_string();
    }
    let local = url.contains("host=/")
        || url.contains("@localhost")
        || url.contains("@127.0.0.1")
        || url.contains("@[::1]")
        || url.starts_with("postgres:///")
        || url.starts_with("postgresql:///");
    if !local {
        return url.to_string();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode=disable")
}

/// Resolves a program name on PATH, or checks a path.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn absolute(p: &str) -> String {
    std::path::absolute(p)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| p.to_string())
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    std::fs::write(path, bytes).map_err(|e| io_failed(path, e))
}

fn io_failed(path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Failed(format!(
        "cannot write the workspace ({}): {e}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_run_lock_file_keeps_the_selections_without_checksums() {
        let lock = r#"# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.100.0"
  constraints = ">= 5.0"
  hashes = [
    "h1:edXOJWE4ORX8Fm+dpVpICzMZJat4AX0VRCAy/xkcOc0=",
    "zh:0123",
  ]
}

provider "registry.terraform.io/hashicorp/random" {
  version = "3.6.0"
  hashes  = ["h1:abc="]
}
"#;
        assert_eq!(
            without_hashes(lock),
            r#"# This file is maintained automatically by "terraform init".
# Manual edits may be lost in future updates.

provider "registry.terraform.io/hashicorp/aws" {
  version     = "5.100.0"
  constraints = ">= 5.0"
}

provider "registry.terraform.io/hashicorp/random" {
  version = "3.6.0"
}
"#
        );
        assert_eq!(without_hashes(""), "");
    }

    #[test]
    fn the_providers_fingerprint_follows_links_and_sees_a_replaced_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache/aws/5.0/linux_amd64");
        std::fs::create_dir_all(&cache).expect("mkdir");
        std::fs::write(cache.join("terraform-provider-aws"), b"v1").expect("write");
        let providers = dir.path().join("providers/aws/5.0");
        std::fs::create_dir_all(&providers).expect("mkdir");
        std::os::unix::fs::symlink(&cache, providers.join("linux_amd64")).expect("link");
        let root = dir.path().join("providers");
        let first = providers_fingerprint(&root);
        assert!(
            first.contains("/aws/5.0/linux_amd64/terraform-provider-aws 2 "),
            "{first}"
        );
        assert_eq!(providers_fingerprint(&root), first);
        std::fs::write(cache.join("terraform-provider-aws"), b"v2 longer").expect("write");
        assert_ne!(providers_fingerprint(&root), first);
        std::fs::remove_dir_all(&cache).expect("rm");
        assert_ne!(providers_fingerprint(&root), first, "a package gone");
        assert_eq!(providers_fingerprint(&dir.path().join("none")), "");
    }

    #[test]
    fn outputs_are_flattened_and_sensitive_ones_masked() {
        let raw = json!({
            "bucket": {"sensitive": false, "type": "string", "value": "b1"},
            "secret": {"sensitive": true, "type": "string", "value": "pw"}
        });
        assert_eq!(
            flatten_outputs(&raw),
            json!({"bucket": "b1", "secret": "(sensitive)"})
        );
    }

    #[test]
    fn progress_counts_applied_against_planned() {
        let mut r = StepReport::default();
        handle_event(
            &json!({"type": "change_summary", "changes": {"add": 3, "change": 1, "remove": 0, "operation": "plan"}}),
            &mut r,
        );
        assert_eq!(r.planned, 4);
        assert_eq!(
            handle_event(&json!({"type": "apply_complete"}), &mut r),
            Some(25)
        );
        handle_event(
            &json!({"type": "diagnostic", "diagnostic": {"severity": "error", "summary": "Bad", "detail": "very"}}),
            &mut r,
        );
        assert_eq!(r.errors, vec!["Bad: very"]);
    }

    /// What `terraform apply -auto-approve -json` printed for the echo fixture (1.11): the
    /// outputs twice, planned (no values) and applied (values, none for sensitive ones).
    #[test]
    fn outputs_come_from_the_apply_summary_and_failures_name_their_phase() {
        let stream = [
            json!({"type": "planned_change", "change": {"action": "create"}}),
            json!({"type": "change_summary", "changes": {"add": 1, "change": 0, "import": 0, "remove": 0, "operation": "plan"}}),
            json!({"type": "outputs", "outputs": {"message": {"sensitive": false, "action": "create"}, "secret": {"sensitive": true, "action": "create"}}}),
            json!({"type": "apply_start"}),
            json!({"type": "apply_complete"}),
            json!({"type": "change_summary", "changes": {"add": 1, "change": 0, "import": 0, "remove": 0, "operation": "apply"}}),
            json!({"type": "outputs", "outputs": {"message": {"sensitive": false, "type": "string", "value": "hi"}, "secret": {"sensitive": true, "type": "string"}, "n": {"sensitive": false, "type": "number", "value": 6}}}),
        ];
        let mut r = StepReport::default();
        let args = ["apply", "-auto-approve", "-json"];
        assert_eq!(r.failed_phase("apply", &args), "plan");
        for (i, event) in stream.iter().enumerate() {
            let pct = handle_event(event, &mut r);
            if i == 1 {
                assert_eq!(pct, Some(0), "the plan summary starts the apply's progress");
                assert_eq!(
                    r.failed_phase("apply", &args),
                    "plan",
                    "terraform prints the plan summary before a precondition fails the plan"
                );
            }
            if i == 3 {
                assert_eq!(r.failed_phase("apply", &args), "apply");
            }
            if i == 2 {
                assert_eq!(r.outputs, None, "the planned outputs carry no values");
            }
        }
        assert!(r.apply_done);
        assert_eq!(
            flatten_outputs(r.outputs.as_ref().expect("outputs")),
            json!({"message": "hi", "secret": "(sensitive)", "n": 6}),
            "the same as `terraform output -json` flattened"
        );
        assert_eq!(r.failed_phase("destroy", &["apply", "-destroy"]), "destroy");
    }

    #[test]
    fn concurrent_state_table_creation_is_recognised() {
        assert!(concurrent_ddl(
            "Error: pq: duplicate key value violates unique constraint \"pg_class_relname_nsp_index\""
        ));
        assert!(concurrent_ddl(
            "Error: pq: duplicate key value violates unique constraint \"pg_type_typname_nsp_index\""
        ));
        assert!(!concurrent_ddl(
            "Error: pq: duplicate key value violates unique constraint \"states_by_name\""
        ));
    }

    #[test]
    fn backend_outages_are_recognised() {
        assert!(state_backend_unreachable(
            "Error: pq: the database system is shutting down"
        ));
        assert!(state_backend_unreachable(
            "dial unix /tmp/x/.s.PGSQL.5432: connect: no such file or directory"
        ));
        // The server restarted under a running init (seen in CI).
        assert!(state_backend_unreachable(
            "Error: read unix @->/tmp/mc-pgr/postgres/run/.s.PGSQL.5432: read: connection reset by peer"
        ));
        assert!(!state_backend_unreachable(
            "Error: creating S3 Bucket: BucketAlreadyExists"
        ));
        assert!(!state_backend_unreachable(
            "Error: reading S3 Bucket: read tcp 127.0.0.1:1->127.0.0.1:5000: read: connection reset by peer"
        ));
    }

    #[test]
    fn pg_conn_str_disables_ssl_only_locally() {
        assert_eq!(
            pg_conn_str("postgres:///db?host=/tmp/x"),
            "postgres:///db?host=/tmp/x&sslmode=disable"
        );
        assert_eq!(
            pg_conn_str("postgres://u@127.0.0.1/db"),
            "postgres://u@127.0.0.1/db?sslmode=disable"
        );
        assert_eq!(
            pg_conn_str("postgres://u@db.example.com/db"),
            "postgres://u@db.example.com/db"
        );
        assert_eq!(
            pg_conn_str("postgres://u@h/db?sslmode=verify-full"),
            "postgres://u@h/db?sslmode=verify-full"
        );
    }
}

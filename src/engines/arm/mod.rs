//! The native Azure engine (`azure`; aliases `bicep`, `arm`), design.md §5.
//!
//! `.bicep` templates are compiled with `bicep build --stdout` (the official CLI); `.json` ARM
//! templates are used as they are. The deployment is PUT (mode Incremental) under a name derived
//! from the deployment id at the template's target scope: into a resource group that is created
//! when missing, or (with the record's location) at the subscription, a management group or the
//! tenant; and followed to its end (`Azure-AsyncOperation`, `Retry-After`), obeying cancel (ARM's
//! cancel action) and the run timeout. Destroy deletes the resources the deployment reported
//! (`outputResources`), newest first, each with its provider's API version (the subscription's
//! provider metadata, or the tenant's above subscriptions). A run taken over after a crash
//! follows the deployment already in ARM instead of starting another.
//!
//! The phases of a run (`Run::phase`), as terraform's engine has them:
//! - plan (a gated deploy or update, or a speculative plan): ARM's what-if
//!   (`POST .../deployments/{name}/whatIf`, followed through its `Location`) with the run's
//!   parameters, summarized by [`whatif::summarize`]; a gated run keeps exactly what was
//!   previewed (the template JSON and the parameters object, [`plan::SavedPlan`]);
//! - apply saved: the deployment PUT with exactly the saved template and parameters (never a
//!   recompile), followed like any deploy;
//! - drift check: what-if of the applied template (the source kept from the apply, or ARM's
//!   `exportTemplate` of the deployment) with the applied parameters; any change but
//!   `NoChange` and `Ignore` is drift.
//!
//! Every run but a destroy reports the ARM JSON it ran (`RunEvent::Source`); a run given the
//! source its deployment was applied with (`RunJob::source`) runs that instead of the file.
//!
//! The run log gets the plan's headline and one line per resource change (`+ ~ -`, id and
//! type), never a value (what-if's `before`, `after` and `delta` may hold secure ones).

pub mod client;
pub mod plan;
pub mod whatif;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use awc::http::Method;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use serde_json::{Value, json};
use tokio::time::Instant;

pub use client::{ArmClient, ArmConfig, ArmError};
use client::{
    DEPLOYMENTS_API, RESOURCES_API, describe_error, flatten_outputs, is_terminal, parameters_object,
};

use super::process::{self, Limits, Step};
use super::{
    Engine, EngineError, EngineOutput, EventSender, RunEvent, RunJob, StopReason, StopSignal,
    Stream, mask_secrets,
};
use crate::catalog::TargetScope;
use crate::config::{BicepCompilerChoice, Settings};
use crate::domain::{ChangeAction, Operation, PlanSummary, RunPhase};
use plan::{PlannedAction, SavedPlan};

/// How often a deployment's state is read while it runs, unless ARM asks for another pace.
const POLL: Duration = Duration::from_secs(1);

pub struct ArmEngine {
    settings: Arc<Settings>,
    client: ArmClient,
}

/// Which Bicep compiler is used, and why not when none.
#[derive(Debug, Clone, PartialEq)]
pub enum BicepCompiler {
    /// The official CLI at this path.
    External(PathBuf),
    /// The built-in compiler (`crate::bicep`).
    Native,
    Missing(String),
}

impl BicepCompiler {
    /// How `/providers` names it.
    pub fn describe(&self) -> String {
        match self {
            BicepCompiler::External(p) => format!("external ({})", p.display()),
            BicepCompiler::Native => "native".into(),
            BicepCompiler::Missing(_) => "none".into(),
        }
    }
}

impl ArmEngine {
    pub fn new(settings: Arc<Settings>) -> ArmEngine {
        let client = ArmClient::new(ArmConfig::from_settings(&settings.azure));
        ArmEngine { settings, client }
    }

    pub fn client(&self) -> &ArmClient {
        &self.client
    }

    /// `azure.bicep_compiler`: "auto" uses the official CLI (`azure.bicep_binary`) when it is
    /// installed and the built-in compiler otherwise; "external" only the CLI; "native" only
    /// the built-in compiler.
    pub fn bicep_compiler(&self) -> BicepCompiler {
        let az = &self.settings.azure;
        let external = || super::terraform::which(&az.bicep_binary);
        match az.bicep_compiler {
            BicepCompilerChoice::Native => BicepCompiler::Native,
            BicepCompilerChoice::Auto => external()
                .map(BicepCompiler::External)
                .unwrap_or(BicepCompiler::Native),
            BicepCompilerChoice::External => match external() {
                Some(path) => BicepCompiler::External(path),
                None => BicepCompiler::Missing(format!(
                    "azure.bicep_compiler = \"external\" but the Bicep CLI ({:?}) is not installed: install it (https://aka.ms/bicep-install), set azure.bicep_binary, or use \"auto\" or \"native\" for the built-in compiler",
                    az.bicep_binary
                )),
            },
        }
    }

    /// Why Azure deployments can't run here, if they can't.
    pub fn unavailable_reason(&self) -> Option<String> {
        (!self.client.config().has_credentials()).then(|| ArmError::NoCredentials.to_string())
    }
}

impl Engine for ArmEngine {
    fn run(
        &self,
        job: RunJob,
        events: EventSender,
        stop: StopSignal,
    ) -> LocalBoxFuture<'static, Result<EngineOutput, EngineError>> {
        let secrets = job
            .template
            .sensitive_parameters()
            .filter_map(|p| job.deployment.parameters.get(p))
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        let run = ArmRun {
            client: self.client.clone(),
            compiler: self.bicep_compiler(),
            module_cache: self.settings.azure.bicep_module_cache.clone(),
            deadline: Instant::now() + job.timeout,
            job,
            events,
            stop,
            secrets,
            api_versions: HashMap::new(),
        };
        run.execute().boxed_local()
    }
}

struct ArmRun {
    client: ArmClient,
    compiler: BicepCompiler,
    /// `azure.bicep_module_cache`, for the built-in compiler.
    module_cache: Option<PathBuf>,
    job: RunJob,
    events: EventSender,
    stop: StopSignal,
    deadline: Instant,
    secrets: Vec<String>,
    api_versions: HashMap<String, String>,
}

/// Compiles `source` (the file `file_name` in the templates folder `root`) with the built-in
/// compiler: modules and `load*` targets are read from `root`, never outside it; registry and
/// template-spec modules from the local module cache `module_cache`, never outside it.
fn compile_bicep(
    source: &str,
    root: &std::path::Path,
    file_name: &str,
    module_cache: Option<&std::path::Path>,
) -> Result<Value, crate::bicep::CompileError> {
    let files = crate::bicep::Folder::new(root);
    match module_cache {
        None => crate::bicep::compile_with(source, file_name, &files),
        Some(cache) => {
            let cache = crate::bicep::Folder::new(cache);
            let loader = crate::bicep::WithModuleCache {
                files: &files,
                cache: &cache,
            };
            crate::bicep::compile_with(source, file_name, &loader)
        }
    }
}

impl ArmRun {
    fn log(&self, line: impl AsRef<str>) {
        let _ = self.events.send(RunEvent::Log {
            stream: Stream::System,
            line: mask_secrets(line.as_ref(), &self.secrets),
        });
    }

    fn progress(&self, p: u8) {
        let _ = self.events.send(RunEvent::Progress(p));
    }

    fn fail(&self, e: ArmError) -> EngineError {
        let text = mask_secrets(&e.to_string(), &self.secrets);
        match e {
            ArmError::NoCredentials | ArmError::Auth(_) => EngineError::Unavailable(text),
            ArmError::Transport(_) => {
                EngineError::Failed(format!("Azure Resource Manager unreachable: {text}"))
            }
            ArmError::Api { .. } => EngineError::Failed(text),
        }
    }

    /// Where this deployment is made: its resource group, or, for a template that declares
    /// another scope, the subscription (it creates its resource groups itself), the management
    /// group or the tenant; a deployment above a resource group keeps its record in its
    /// location.
    fn target(&self) -> Result<Target, EngineError> {
        let d = &self.job.deployment;
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let required =
            |v: &Option<String>, message: String| given(v).ok_or(EngineError::Failed(message));
        let scope = self.job.template.target_scope;
        let location = || {
            required(
                &d.location,
                format!(
                    "a location is required for a {}-scope deployment",
                    scope.name()
                ),
            )
        };
        let sub = || {
            required(
                &d.subscription_id,
                "subscription_id is required for Azure deployments".into(),
            )
        };
        Ok(match scope {
            TargetScope::ResourceGroup => Target::ResourceGroup {
                sub: sub()?,
                rg: required(
                    &d.resource_group,
                    "resource_group is required for Azure deployments".into(),
                )?,
            },
            TargetScope::Subscription => Target::Subscription {
                sub: sub()?,
                location: location()?,
            },
            TargetScope::ManagementGroup => Target::ManagementGroup {
                group: required(
                    &d.management_group,
                    "management_group is required for a managementGroup-scope deployment".into(),
                )?,
                location: location()?,
            },
            TargetScope::Tenant => Target::Tenant {
                location: location()?,
            },
        })
    }

    /// The ARM deployment's path (without api-version).
    fn deployment_path(&self, target: &Target) -> String {
        format!(
            "{}/providers/Microsoft.Resources/deployments/{}",
            target.scope_path(),
            deployment_name(self.job.deployment.id.as_str())
        )
    }

    async fn execute(mut self) -> Result<EngineOutput, EngineError> {
        let target = self.target()?;
        match (self.job.run.phase(), self.job.deployment.operation) {
            (RunPhase::PlanAndApply, Operation::Deploy) => self.deploy(&target).await,
            (RunPhase::PlanAndApply, Operation::Destroy) => self.destroy(&target).await,
            (RunPhase::Plan, Operation::Deploy) => self.plan(&target, false).await,
            (RunPhase::Plan, Operation::Destroy) => self.plan_destroy(&target).await,
            (RunPhase::DriftCheck, _) => self.plan(&target, true).await,
            (RunPhase::ApplySaved, _) => self.apply_saved(&target).await,
        }
    }

    /// The ARM JSON this run runs: the source the deployment was applied with when the run
    /// is given one (`RunJob::source`), else the template file (a `.bicep` file compiled).
    async fn template(&mut self) -> Result<Value, EngineError> {
        if let Some(source) = &self.job.source {
            return serde_json::from_str(source).map_err(|e| {
                EngineError::Failed(format!(
                    "the template source this deployment was applied with is not valid JSON: {e}"
                ))
            });
        }
        let t = self.job.template.clone();
        if t.format != "bicep" {
            let text = t.content().map_err(|e| {
                EngineError::Failed(format!("cannot read {}: {e}", t.path.display()))
            })?;
            return serde_json::from_str(&text).map_err(|e| {
                EngineError::Failed(format!("{} is not valid JSON: {e}", t.file_name))
            });
        }
        let binary = match &self.compiler {
            BicepCompiler::External(p) => p.clone(),
            BicepCompiler::Native => return self.compile_natively(),
            BicepCompiler::Missing(why) => {
                return Err(EngineError::Unavailable(format!(
                    "cannot compile {}: {why}",
                    t.file_name
                )));
            }
        };
        self.log(format!("$ bicep build --stdout {}", t.file_name));
        std::fs::create_dir_all(&self.job.workspace)
            .map_err(|e| EngineError::Failed(format!("cannot create the workspace: {e}")))?;
        let step = Step {
            name: "bicep-build".into(),
            program: binary,
            args: vec![
                "build".into(),
                "--stdout".into(),
                t.path.display().to_string(),
            ],
            env: vec![
                ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
                ("HOME".into(), self.job.workspace.display().to_string()),
                ("DOTNET_CLI_TELEMETRY_OPTOUT".into(), "1".into()),
            ],
            cwd: self.job.workspace.clone(),
            output_dir: self.job.workspace.join(".multicloud"),
        };
        let mut stop = self.stop.clone();
        let out =
            process::capture(&step, Limits::for_run(&self.job, self.deadline), &mut stop).await?;
        for e in &out.stderr {
            self.log(e);
        }
        if !out.status.success() {
            return Err(EngineError::Failed(format!(
                "bicep build failed: {}",
                out.stderr.join("\n")
            )));
        }
        serde_json::from_str(&out.stdout)
            .map_err(|e| EngineError::Failed(format!("bicep build gave invalid JSON: {e}")))
    }

    /// Compiles the template with the built-in compiler (`crate::bicep`).
    fn compile_natively(&self) -> Result<Value, EngineError> {
        let t = &self.job.template;
        let source = t
            .content()
            .map_err(|e| EngineError::Failed(format!("cannot read {}: {e}", t.path.display())))?;
        let started = std::time::Instant::now();
        let root = t.path.parent().unwrap_or(std::path::Path::new("."));
        let template = compile_bicep(&source, root, &t.file_name, self.module_cache.as_deref())
            .map_err(|e| EngineError::Failed(format!("{} does not compile: {e}", t.file_name)))?;
        self.log(format!(
            "compiled {} with the built-in Bicep compiler in {:.2} ms",
            t.file_name,
            started.elapsed().as_secs_f64() * 1000.0
        ));
        Ok(template)
    }

    /// Creates the resource group when missing (with the request's location).
    async fn ensure_resource_group(&self, sub: &str, rg: &str) -> Result<(), EngineError> {
        let path = format!("/subscriptions/{sub}/resourcegroups/{rg}?api-version={RESOURCES_API}");
        let existing = self
            .client
            .get_optional(&path)
            .await
            .map_err(|e| self.fail(e))?;
        if existing.is_some() {
            return Ok(());
        }
        let location = self
            .job
            .deployment
            .location
            .clone()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                EngineError::Failed(format!(
                    "resource group {rg} does not exist; give a location to create it"
                ))
            })?;
        self.log(format!("creating resource group {rg} in {location}"));
        self.client
            .request(
                Method::PUT,
                &path,
                Some(&json!({ "location": location, "tags": {"managed-by": "multicloud"} })),
            )
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    async fn deploy(&mut self, target: &Target) -> Result<EngineOutput, EngineError> {
        let template = self.template().await?;
        self.ran(&template);
        self.progress(5);
        let parameters = parameters_object(&self.job.deployment.parameters);
        self.put_and_follow(target, template, parameters).await
    }

    /// PUTs the deployment (mode Incremental) with this template and parameters object and
    /// follows it to its end; a deployment ARM is still running (a run taken over after a
    /// crash) is followed instead.
    async fn put_and_follow(
        &mut self,
        target: &Target,
        template: Value,
        parameters: Value,
    ) -> Result<EngineOutput, EngineError> {
        if let Target::ResourceGroup { sub, rg } = target {
            self.ensure_resource_group(sub, rg).await?;
        }
        let path = format!(
            "{}?api-version={DEPLOYMENTS_API}",
            self.deployment_path(target)
        );
        // Taken over after a crash: follow the deployment ARM is still running.
        let existing = self
            .client
            .get_optional(&path)
            .await
            .map_err(|e| self.fail(e))?;
        let running = existing
            .as_ref()
            .and_then(|d| d["properties"]["provisioningState"].as_str())
            .is_some_and(|s| !is_terminal(s));
        if running {
            self.log("following the ARM deployment already under way (taken over)");
        } else {
            let mut body = json!({
                "properties": {
                    "mode": "Incremental",
                    "template": template,
                    "parameters": parameters,
                },
                "tags": {"managed-by": "multicloud", "multicloud-deployment": self.job.deployment.id.as_str()},
            });
            // A deployment above a resource group has a location: where ARM keeps its record.
            if let Some(location) = target.location() {
                body["location"] = json!(location);
            }
            self.log(format!(
                "PUT deployment {} {}",
                deployment_name(self.job.deployment.id.as_str()),
                target.describe()
            ));
            self.client
                .request(Method::PUT, &path, Some(&body))
                .await
                .map_err(|e| self.fail(e))?;
        }
        self.progress(10);
        let final_state = self.follow(&path).await?;
        let d = self.client.get(&path).await.map_err(|e| self.fail(e))?.body;
        match final_state.as_str() {
            "Succeeded" => {
                let outputs = flatten_outputs(&d["properties"]["outputs"]);
                let n = d["properties"]["outputResources"]
                    .as_array()
                    .map(Vec::len)
                    .unwrap_or(0);
                self.log(format!("deployment succeeded: {n} resources"));
                Ok(EngineOutput::Deployed { outputs })
            }
            "Canceled" => Err(EngineError::Stopped(StopReason::Cancel)),
            _ => {
                let (_, message) = describe_error(&d["properties"]["error"]);
                let message = if message.is_empty() {
                    "the ARM deployment failed".to_string()
                } else {
                    message
                };
                Err(EngineError::Failed(mask_secrets(&message, &self.secrets)))
            }
        }
    }

    /// Reads the deployment's state until it ends. A cancel calls ARM's cancel action and waits
    /// for `Canceled`; the run timeout does the same and ends the run as timed out; a shutdown
    /// leaves the ARM deployment running (the next owner follows it).
    async fn follow(&mut self, path: &str) -> Result<String, EngineError> {
        let mut last = String::new();
        let mut cancelling: Option<EngineError> = None;
        loop {
            let d = self.client.get(path).await.map_err(|e| self.fail(e))?;
            let state = d.body["properties"]["provisioningState"]
                .as_str()
                .unwrap_or("Accepted")
                .to_string();
            if state != last {
                self.log(format!("deployment state: {state}"));
                match state.as_str() {
                    "Running" => self.progress(50),
                    "Accepted" => self.progress(15),
                    _ => {}
                }
                last = state.clone();
            }
            if is_terminal(&state) {
                return match cancelling {
                    Some(e) if state == "Canceled" => Err(e),
                    _ => Ok(state),
                };
            }
            let wait = d.retry_after.unwrap_or(POLL);
            let stop_now = *self.stop.borrow();
            if cancelling.is_none() {
                let reason = if let Some(r) = stop_now {
                    Some(r)
                } else if Instant::now() >= self.deadline {
                    None
                } else {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        changed = self.stop.changed() => {
                            if changed.is_err() { continue; }
                            match *self.stop.borrow() { Some(r) => Some(r), None => continue }
                        }
                    }
                };
                match reason {
                    Some(StopReason::Shutdown) => {
                        return Err(EngineError::Stopped(StopReason::Shutdown));
                    }
                    Some(StopReason::Cancel) => {
                        self.log("cancelling the ARM deployment");
                        cancelling = Some(EngineError::Stopped(StopReason::Cancel));
                    }
                    None => {
                        self.log(format!(
                            "timed out after {} s; cancelling the ARM deployment",
                            self.job.timeout.as_secs()
                        ));
                        cancelling = Some(EngineError::TimedOut(self.job.timeout.as_secs()));
                    }
                }
                let cancel = path.replace(
                    &format!("?api-version={DEPLOYMENTS_API}"),
                    &format!("/cancel?api-version={DEPLOYMENTS_API}"),
                );
                if let Err(e) = self.client.request(Method::POST, &cancel, None).await {
                    // 409: it ended meanwhile; the next read tells how.
                    if e.status() != Some(409) {
                        return Err(self.fail(e));
                    }
                }
                // Wait (bounded by the grace) for ARM to report Canceled.
                self.deadline = Instant::now() + self.job.cancel_grace.max(Duration::from_secs(5));
                continue;
            }
            if Instant::now() >= self.deadline {
                // Cancel requested but ARM has not confirmed in time: stop following.
                return Err(cancelling.unwrap_or(EngineError::TimedOut(self.job.timeout.as_secs())));
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn destroy(&mut self, target: &Target) -> Result<EngineOutput, EngineError> {
        let Some(ids) = self.output_resources(target).await? else {
            self.log("the ARM deployment no longer exists: nothing to delete");
            return Ok(EngineOutput::Destroyed);
        };
        self.delete_resources(target, &ids).await
    }

    /// The resources the ARM deployment reported (`outputResources`, oldest first); None when
    /// the deployment no longer exists.
    async fn output_resources(&self, target: &Target) -> Result<Option<Vec<String>>, EngineError> {
        let path = format!(
            "{}?api-version={DEPLOYMENTS_API}",
            self.deployment_path(target)
        );
        let Some(d) = self
            .client
            .get_optional(&path)
            .await
            .map_err(|e| self.fail(e))?
        else {
            return Ok(None);
        };
        Ok(Some(
            d["properties"]["outputResources"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|x| x["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        ))
    }

    /// Deletes these resources newest first (each a long-running operation); one already gone
    /// is skipped.
    async fn delete_resources(
        &mut self,
        target: &Target,
        ids: &[String],
    ) -> Result<EngineOutput, EngineError> {
        self.log(format!("deleting {} resources, newest first", ids.len()));
        let total = ids.len().max(1);
        for (i, id) in ids.iter().rev().enumerate() {
            if let Some(r) = *self.stop.borrow() {
                return Err(EngineError::Stopped(r));
            }
            if Instant::now() >= self.deadline {
                return Err(EngineError::TimedOut(self.job.timeout.as_secs()));
            }
            let api = self.api_version(target, id).await?;
            self.log(format!("DELETE {id}"));
            match self
                .client
                .request(Method::DELETE, &format!("{id}?api-version={api}"), None)
                .await
            {
                Ok(r) => {
                    let (state, body) = self
                        .client
                        .wait_operation(&r, self.deadline)
                        .await
                        .map_err(|e| self.fail(e))?;
                    if state != "Succeeded" {
                        let (_, message) = describe_error(&body["error"]);
                        return Err(EngineError::Failed(format!(
                            "deleting {id} ended {state}: {message}"
                        )));
                    }
                }
                Err(e) if e.status() == Some(404) => self.log(format!("{id} was already gone")),
                Err(e) => return Err(self.fail(e)),
            }
            self.progress((10 + 85 * (i + 1) / total).min(99) as u8);
        }
        Ok(EngineOutput::Destroyed)
    }

    /// A what-if, for a plan or a drift check. A plan previews the template (compiled now) with
    /// the run's parameters; a gated run keeps exactly that as its saved plan (a speculative
    /// plan keeps nothing). A drift check previews the applied template with the applied
    /// parameters: whatever would change is what changed in the cloud since.
    async fn plan(&mut self, target: &Target, drift: bool) -> Result<EngineOutput, EngineError> {
        let speculative = self.job.run.kind.is_speculative();
        let template = if drift {
            self.applied_template(target).await?
        } else {
            self.template().await?
        };
        self.ran(&template);
        self.progress(5);
        let parameters = parameters_object(&self.job.deployment.parameters);
        if let Target::ResourceGroup { sub, rg } = target {
            if !speculative {
                // What-if looks into the resource group: a gated first deploy makes it now
                // (empty; the same group its apply would make).
                self.ensure_resource_group(sub, rg).await?;
            } else if !self.resource_group_exists(sub, rg).await? {
                // A plan or drift check changes nothing: without its group, everything the
                // template declares would be made anew.
                self.log(format!(
                    "resource group {rg} does not exist: the resource group and everything in the template would be created"
                ));
                let mut summary = PlanSummary::default();
                summary.push(
                    format!("/subscriptions/{sub}/resourceGroups/{rg}"),
                    "Microsoft.Resources/resourceGroups".into(),
                    ChangeAction::Create,
                );
                self.log_plan(&summary, drift);
                return Ok(EngineOutput::Planned {
                    summary,
                    plan: None,
                });
            }
        }
        let result = self.what_if(target, &template, &parameters).await?;
        self.progress(80);
        let summary = whatif::summarize(&result)
            .map_err(|e| EngineError::Failed(format!("reading the what-if result: {e}")))?;
        self.log_plan(&summary, drift);
        let plan = (!speculative).then(|| {
            SavedPlan {
                format: plan::FORMAT,
                scope: target.scope_path(),
                deployment_name: deployment_name(self.job.deployment.id.as_str()),
                location: target.location(),
                action: PlannedAction::Deploy {
                    template,
                    parameters,
                },
            }
            .to_bytes()
        });
        self.progress(95);
        Ok(EngineOutput::Planned { summary, plan })
    }

    /// A gated destroy's plan: every resource the deployment reported is deleted.
    async fn plan_destroy(&mut self, target: &Target) -> Result<EngineOutput, EngineError> {
        let ids = self.output_resources(target).await?.unwrap_or_default();
        let mut summary = PlanSummary::default();
        for id in ids.iter().rev() {
            summary.push(id.clone(), whatif::type_of(id), ChangeAction::Delete);
        }
        self.log_plan(&summary, false);
        let plan = SavedPlan {
            format: plan::FORMAT,
            scope: target.scope_path(),
            deployment_name: deployment_name(self.job.deployment.id.as_str()),
            location: target.location(),
            action: PlannedAction::Destroy { resources: ids },
        };
        Ok(EngineOutput::Planned {
            summary,
            plan: Some(plan.to_bytes()),
        })
    }

    /// A confirmed run: exactly its saved plan, for the deployment it was made for.
    async fn apply_saved(&mut self, target: &Target) -> Result<EngineOutput, EngineError> {
        let bytes = self
            .job
            .saved_plan
            .as_deref()
            .ok_or_else(|| EngineError::Failed("the run has no saved plan to apply".into()))?;
        let saved = SavedPlan::from_bytes(bytes).map_err(EngineError::Failed)?;
        let name = deployment_name(self.job.deployment.id.as_str());
        if !saved.scope.eq_ignore_ascii_case(&target.scope_path())
            || saved.deployment_name != name
            || saved.location != target.location()
        {
            return Err(EngineError::Failed(format!(
                "the saved plan is for deployment {} in {}, not {name} in {}: plan again",
                saved.deployment_name,
                saved.scope,
                target.scope_path()
            )));
        }
        match (saved.action, self.job.deployment.operation) {
            (
                PlannedAction::Deploy {
                    template,
                    parameters,
                },
                Operation::Deploy,
            ) => {
                self.log(
                    "applying the saved plan: the template and parameters the what-if previewed",
                );
                self.ran(&template);
                self.progress(5);
                self.put_and_follow(target, template, parameters).await
            }
            (PlannedAction::Destroy { resources }, Operation::Destroy) => {
                self.delete_resources(target, &resources).await
            }
            _ => Err(EngineError::Failed(
                "the saved plan is for another operation: plan again".into(),
            )),
        }
    }

    /// ARM's what-if of this template and parameters object (mode Incremental), followed
    /// through its `Location` to the result (`properties.changes`). Obeys cancel and the run
    /// timeout (a what-if changes nothing: there is nothing to cancel in ARM).
    async fn what_if(
        &mut self,
        target: &Target,
        template: &Value,
        parameters: &Value,
    ) -> Result<Value, EngineError> {
        let path = format!(
            "{}/whatIf?api-version={DEPLOYMENTS_API}",
            self.deployment_path(target)
        );
        let mut body = json!({
            "properties": {"mode": "Incremental", "template": template, "parameters": parameters},
        });
        if let Some(location) = target.location() {
            body["location"] = json!(location);
        }
        self.log(format!(
            "POST what-if of deployment {} {}",
            deployment_name(self.job.deployment.id.as_str()),
            target.describe()
        ));
        let first = self
            .client
            .request(Method::POST, &path, Some(&body))
            .await
            .map_err(|e| self.fail(e))?;
        self.progress(10);
        let client = self.client.clone();
        let deadline = self.deadline;
        let mut stop = self.stop.clone();
        // The run's deadline is watched here; the client's own is only a backstop.
        let waited = tokio::select! {
            r = client.wait_operation(&first, deadline + Duration::from_secs(3600)) => r,
            reason = stop_requested(&mut stop) => return Err(EngineError::Stopped(reason)),
            _ = tokio::time::sleep_until(deadline) => {
                return Err(EngineError::TimedOut(self.job.timeout.as_secs()));
            }
        };
        let (state, result) = waited.map_err(|e| self.fail(e))?;
        let status = result["status"].as_str().unwrap_or(&state);
        if status != "Succeeded" {
            let (_, message) = describe_error(&result["error"]);
            return Err(EngineError::Failed(mask_secrets(
                &format!("what-if ended {status}: {message}"),
                &self.secrets,
            )));
        }
        Ok(result)
    }

    /// The template the deployment was last applied with: the source the daemon kept from its
    /// apply (`RunJob::source`), else as ARM keeps it with its deployment (`exportTemplate`; a
    /// deployment applied before sources were kept). When ARM has no succeeded deployment of it
    /// either (deleted, or its last PUT failed), the template as it is now.
    async fn applied_template(&mut self, target: &Target) -> Result<Value, EngineError> {
        if self.job.source.is_some() {
            return self.template().await;
        }
        let path = self.deployment_path(target);
        let record = self
            .client
            .get_optional(&format!("{path}?api-version={DEPLOYMENTS_API}"))
            .await
            .map_err(|e| self.fail(e))?;
        let state = record
            .as_ref()
            .and_then(|d| d["properties"]["provisioningState"].as_str())
            .unwrap_or_default();
        if state == "Succeeded" {
            let exported = self
                .client
                .request(
                    Method::POST,
                    &format!("{path}/exportTemplate?api-version={DEPLOYMENTS_API}"),
                    None,
                )
                .await
                .map_err(|e| self.fail(e))?;
            if exported.body["template"].is_object() {
                self.log("comparing the cloud with the template of the last ARM deployment");
                return Ok(exported.body["template"].clone());
            }
        }
        self.log("ARM holds no succeeded deployment of it: comparing the cloud with the template as it is now");
        self.template().await
    }

    async fn resource_group_exists(&self, sub: &str, rg: &str) -> Result<bool, EngineError> {
        let path = format!("/subscriptions/{sub}/resourcegroups/{rg}?api-version={RESOURCES_API}");
        self.client
            .get_optional(&path)
            .await
            .map(|g| g.is_some())
            .map_err(|e| self.fail(e))
    }

    /// Reports the exact template this run runs (kept, so later runs of the deployment can run
    /// it again whatever happens to the file).
    fn ran(&self, template: &Value) {
        let source =
            serde_json::to_string_pretty(template).unwrap_or_else(|_| template.to_string());
        let _ = self.events.send(RunEvent::Source(source));
    }

    /// The plan's headline and one line per resource change (never a value).
    fn log_plan(&self, summary: &PlanSummary, drift: bool) {
        for line in plan::log_lines(summary, drift) {
            self.log(line);
        }
    }

    /// The newest API version of a resource's type, from the provider's metadata (cached): the
    /// subscription's view of the provider, or the tenant's for a deployment above
    /// subscriptions (management group or tenant scope).
    async fn api_version(&mut self, target: &Target, id: &str) -> Result<String, EngineError> {
        if is_resource_group_id(id) {
            return Ok(RESOURCES_API.to_string());
        }
        let (namespace, resource_type) = resource_type_of(id)
            .ok_or_else(|| EngineError::Failed(format!("cannot read the resource type of {id}")))?;
        let key = format!("{namespace}/{resource_type}").to_ascii_lowercase();
        if let Some(v) = self.api_versions.get(&key) {
            return Ok(v.clone());
        }
        let provider = match target.subscription() {
            Some(sub) => format!("/subscriptions/{sub}/providers/{namespace}"),
            None => format!("/providers/{namespace}"),
        };
        let meta = self
            .client
            .get(&format!("{provider}?api-version={RESOURCES_API}"))
            .await
            .map_err(|e| self.fail(e))?
            .body;
        let version = meta["resourceTypes"]
            .as_array()
            .and_then(|types| {
                types.iter().find(|t| {
                    t["resourceType"]
                        .as_str()
                        .is_some_and(|r| r.eq_ignore_ascii_case(&resource_type))
                })
            })
            .and_then(|t| {
                let versions: Vec<&str> = t["apiVersions"]
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                // Prefer the newest stable version.
                versions
                    .iter()
                    .find(|v| !v.contains("preview"))
                    .or(versions.first())
                    .map(|v| v.to_string())
            })
            .ok_or_else(|| {
                EngineError::Failed(format!(
                    "no API version known for {namespace}/{resource_type}"
                ))
            })?;
        self.api_versions.insert(key, version.clone());
        Ok(version)
    }
}

/// Where an ARM deployment is made.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    ResourceGroup {
        sub: String,
        rg: String,
    },
    /// A subscription-scope deployment (the template creates its resource groups); its record
    /// is kept in `location`.
    Subscription {
        sub: String,
        location: String,
    },
    /// A management-group-scope deployment (policies, role definitions, ... of the group).
    ManagementGroup {
        group: String,
        location: String,
    },
    /// A tenant-scope deployment (management groups, subscription aliases, ...).
    Tenant {
        location: String,
    },
}

impl Target {
    /// The subscription the deployment is made in; None above subscriptions.
    fn subscription(&self) -> Option<&str> {
        match self {
            Target::ResourceGroup { sub, .. } | Target::Subscription { sub, .. } => Some(sub),
            Target::ManagementGroup { .. } | Target::Tenant { .. } => None,
        }
    }

    /// The scope's resource id: `/subscriptions/s[/resourcegroups/g]`,
    /// `/providers/Microsoft.Management/managementGroups/m`, or the tenant's (empty: its
    /// deployments are `/providers/Microsoft.Resources/deployments/...`).
    fn scope_path(&self) -> String {
        match self {
            Target::ResourceGroup { sub, rg } => {
                format!("/subscriptions/{sub}/resourcegroups/{rg}")
            }
            Target::Subscription { sub, .. } => format!("/subscriptions/{sub}"),
            Target::ManagementGroup { group, .. } => {
                format!("/providers/Microsoft.Management/managementGroups/{group}")
            }
            Target::Tenant { .. } => String::new(),
        }
    }

    /// Where a deployment above a resource group keeps its record.
    fn location(&self) -> Option<String> {
        match self {
            Target::ResourceGroup { .. } => None,
            Target::Subscription { location, .. }
            | Target::ManagementGroup { location, .. }
            | Target::Tenant { location } => Some(location.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::ResourceGroup { rg, .. } => format!("in {rg}"),
            Target::Subscription { sub, location } => {
                format!("at subscription scope ({sub}, record in {location})")
            }
            Target::ManagementGroup { group, location } => {
                format!("at management group scope ({group}, record in {location})")
            }
            Target::Tenant { location } => format!("at tenant scope (record in {location})"),
        }
    }
}

/// Resolves when the run is asked to stop (never, once nobody can ask).
async fn stop_requested(stop: &mut StopSignal) -> StopReason {
    loop {
        if let Some(reason) = *stop.borrow_and_update() {
            return reason;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `/subscriptions/s/resourceGroups/g`: a resource group itself (what a subscription-scope
/// deployment creates), deleted with the resources API.
fn is_resource_group_id(id: &str) -> bool {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    parts.len() == 4
        && parts[0].eq_ignore_ascii_case("subscriptions")
        && parts[2].eq_ignore_ascii_case("resourcegroups")
}

/// The ARM deployment name of a multicloud deployment: unique per deployment, at most 64 chars.
pub fn deployment_name(id: &str) -> String {
    format!("multicloud-{id}").chars().take(64).collect()
}

/// `/subscriptions/s/resourceGroups/g/providers/NS/type/name/sub/name` → (`NS`, `type/sub`).
pub fn resource_type_of(id: &str) -> Option<(String, String)> {
    let lower = id.to_ascii_lowercase();
    let idx = lower.rfind("/providers/")?;
    let rest: Vec<&str> = id[idx + "/providers/".len()..].split('/').collect();
    let namespace = rest.first()?.to_string();
    let types: Vec<&str> = rest[1..].iter().step_by(2).copied().collect();
    if types.is_empty() || rest.len() < 3 {
        return None;
    }
    Some((namespace, types.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The built-in compiler reads registry modules from `azure.bicep_module_cache`, and names
    /// the setting when there is none.
    #[test]
    fn registry_modules_come_from_the_configured_module_cache() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let root = fixtures
            .join("bicep-quickstarts/quickstarts__microsoft.resources__deployment-script-azcli-acr-import");
        let source = std::fs::read_to_string(root.join("main.bicep")).expect("sample");
        let cache = fixtures.join("bicep-module-cache");
        let t = compile_bicep(&source, &root, "main.bicep", Some(&cache)).expect("compiles");
        let import = &t["resources"][1];
        assert_eq!(import["name"], "ImportAcrImages", "{t}");
        assert!(
            import["properties"]["template"]["resources"].is_array(),
            "{import}"
        );
        let e = compile_bicep(&source, &root, "main.bicep", None).expect_err("no cache");
        assert!(
            e.message
                .contains("br/public:deployment-scripts/import-acr:1.0.1")
                && e.message.contains("azure.bicep_module_cache"),
            "{e}"
        );
        let e = compile_bicep(&source, &root, "main.bicep", Some(&root)).expect_err("not cached");
        assert!(
            e.message.contains("is not in the local module cache"),
            "{e}"
        );
    }

    #[test]
    fn resource_types_are_read_from_ids() {
        assert_eq!(
            resource_type_of(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct"
            ),
            Some(("Microsoft.Storage".into(), "storageAccounts".into()))
        );
        assert_eq!(
            resource_type_of(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default"
            ),
            Some((
                "Microsoft.Storage".into(),
                "storageAccounts/blobServices".into()
            ))
        );
        assert_eq!(resource_type_of("/subscriptions/s"), None);
        assert!(is_resource_group_id("/subscriptions/s/resourceGroups/rg-1"));
        assert!(!is_resource_group_id(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a"
        ));
        let sub = Target::Subscription {
            sub: "s".into(),
            location: "westeurope".into(),
        };
        assert_eq!(sub.scope_path(), "/subscriptions/s");
        let rg = Target::ResourceGroup {
            sub: "s".into(),
            rg: "g".into(),
        };
        assert_eq!(rg.scope_path(), "/subscriptions/s/resourcegroups/g");
        let mg = Target::ManagementGroup {
            group: "mg-1".into(),
            location: "westeurope".into(),
        };
        assert_eq!(
            mg.scope_path(),
            "/providers/Microsoft.Management/managementGroups/mg-1"
        );
        assert_eq!(
            (mg.subscription(), mg.location().as_deref()),
            (None, Some("westeurope"))
        );
        let tenant = Target::Tenant {
            location: "westeurope".into(),
        };
        assert_eq!(tenant.scope_path(), "");
        assert_eq!(
            resource_type_of(
                "/providers/Microsoft.Management/managementGroups/mg-1/providers/Microsoft.Authorization/policyDefinitions/p"
            ),
            Some(("Microsoft.Authorization".into(), "policyDefinitions".into()))
        );
        assert_eq!(
            resource_type_of("/providers/Microsoft.Management/managementGroups/mg-2"),
            Some(("Microsoft.Management".into(), "managementGroups".into()))
        );
        assert_eq!(
            deployment_name("deploy-0123456789abcdef"),
            "multicloud-deploy-0123456789abcdef"
        );
    }
}

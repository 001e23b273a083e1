//! The `multicloud` binary: parses the command line, loads the configuration, initialises
//! logging and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use multicloud::config::Settings;
use multicloud::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "multicloud",
    version,
    about = "Deploy infrastructure templates to Azure, AWS and GCP through one REST API"
)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "MULTICLOUD_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// A TOML file layered over config/default.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the merged configuration (secrets masked) and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Apply the database migrations and exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Ask a daemon to deploy a template.
    Deploy {
        template: String,
        /// Provider type: terraform-aws (aws), terraform-gcp (gcp), terraform-azure, azure (bicep, arm).
        #[arg(long)]
        provider: String,
        /// A parameter, key=value (the value is read as JSON when it parses). Repeatable.
        #[arg(short = 'p', long = "param", value_parser = multicloud::cli::parse_param)]
        params: Vec<(String, serde_json::Value)>,
        #[arg(long)]
        subscription_id: Option<String>,
        #[arg(long)]
        resource_group: Option<String>,
        #[arg(long)]
        location: Option<String>,
        /// Wait for the end; the exit code says whether it completed.
        #[arg(long)]
        wait: bool,
        /// Plan only: print the plan and wait for `multicloud apply` (or `discard`).
        #[arg(long)]
        plan: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Preview a change to a deployment (speculative plan; nothing is applied).
    Plan {
        id: String,
        /// A proposed parameter, key=value. Repeatable.
        #[arg(short = 'p', long = "param", value_parser = multicloud::cli::parse_param)]
        params: Vec<(String, serde_json::Value)>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Apply the deployment's planned run (exactly the plan it showed).
    Apply {
        id: String,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Discard the deployment's planned run.
    Discard {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Change a deployment's parameters (the others keep their values).
    Update {
        id: String,
        #[arg(short = 'p', long = "param", value_parser = multicloud::cli::parse_param)]
        params: Vec<(String, serde_json::Value)>,
        /// Plan only: print the plan and wait for `multicloud apply`.
        #[arg(long)]
        plan: bool,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Check a deployment for drift (exit 1 when the cloud changed behind its back).
    Drift {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List a deployment's runs.
    Runs {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show a deployment's status.
    Status {
        id: String,
        /// Follow it to its end.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print a deployment's log.
    Logs {
        id: String,
        /// Stream new lines until the run ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Cancel a pending or running deployment.
    Cancel {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Destroy what a deployment created.
    Destroy {
        id: String,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Ask a daemon whether it is healthy (exit 0) or not (exit 1): for container health checks.
    Health {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show the audit trail (admin): who did what, newest first.
    Audit {
        /// Only this token name.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (deployment.create, run.apply, webhook.delete, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only this outcome (ok, forbidden, unauthorized, conflict, invalid, ...).
        #[arg(long)]
        outcome: Option<String>,
        /// Only this deployment, webhook or resource group.
        #[arg(long)]
        target: Option<String>,
        /// Only at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Manage webhooks (admin).
    Webhooks {
        #[command(subcommand)]
        action: WebhookCommand,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Make a new API token and print the `auth.tokens` entry that holds only its SHA-256.
    Token {
        /// The token's name (in the audit trail and on runs).
        #[arg(long)]
        name: String,
        /// viewer, operator, approver or admin.
        #[arg(long)]
        role: String,
        /// Hash a token read from standard input instead of making one.
        #[arg(long)]
        stdin: bool,
    },
    /// List the daemon's templates.
    Templates {
        #[arg(long)]
        provider: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Subcommand)]
enum WebhookCommand {
    /// List the webhooks.
    List,
    /// Register a webhook.
    Add {
        /// http(s) URL of the receiver.
        #[arg(long)]
        url: String,
        /// An event (run.pending, run.planned, run.completed, run.failed, run.cancelled,
        /// deployment.destroyed, deployment.drifted). Repeatable.
        #[arg(long = "event", required = true)]
        events: Vec<String>,
        /// The signing secret (16+ characters).
        #[arg(long, env = "MULTICLOUD_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Delete a webhook.
    Delete { id: String },
    /// A webhook's deliveries, newest first.
    Deliveries { id: String },
    /// Send a delivery again.
    Redeliver { id: String, delivery_id: String },
}

#[derive(clap::Args, Clone)]
struct RemoteArgs {
    /// The daemon's address.
    #[arg(long, env = "MULTICLOUD_URL", default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Bearer token, when the daemon requires one.
    #[arg(long, env = "MULTICLOUD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl RemoteArgs {
    fn remote(&self) -> multicloud::cli::Remote {
        multicloud::cli::Remote {
            url: self.url.clone(),
            token: self.token.clone(),
        }
    }
}

/// Runs a client command on a small actix system (awc needs one).
fn client(command: Command) -> ExitCode {
    use multicloud::cli;
    let result = actix_rt::System::new().block_on(async move {
        match command {
            Command::Deploy {
                template,
                provider,
                params,
                subscription_id,
                resource_group,
                location,
                wait,
                plan,
                remote,
            } => {
                let args = cli::DeployArgs {
                    template,
                    provider,
                    params,
                    subscription_id,
                    resource_group,
                    location,
                    wait,
                    plan,
                };
                cli::deploy(&remote.remote(), args).await
            }
            Command::Plan { id, params, remote } => cli::plan(&remote.remote(), &id, params).await,
            Command::Apply { id, wait, remote } => cli::apply(&remote.remote(), &id, wait).await,
            Command::Discard { id, remote } => cli::discard(&remote.remote(), &id).await,
            Command::Update {
                id,
                params,
                plan,
                wait,
                remote,
            } => cli::update(&remote.remote(), &id, params, plan, wait).await,
            Command::Drift { id, remote } => cli::drift(&remote.remote(), &id).await,
            Command::Runs { id, remote } => cli::runs(&remote.remote(), &id).await,
            Command::Status { id, watch, remote } => {
                cli::status(&remote.remote(), &id, watch).await
            }
            Command::Logs { id, follow, remote } => cli::logs(&remote.remote(), &id, follow).await,
            Command::Cancel { id, remote } => cli::cancel(&remote.remote(), &id).await,
            Command::Destroy { id, wait, remote } => {
                cli::destroy(&remote.remote(), &id, wait).await
            }
            Command::Templates { provider, remote } => {
                cli::templates(&remote.remote(), provider.as_deref()).await
            }
            Command::Health { remote } => cli::health(&remote.remote()).await,
            Command::Audit {
                actor,
                action,
                outcome,
                target,
                since,
                limit,
                remote,
            } => {
                let filters = [
                    ("actor", actor),
                    ("action", action),
                    ("outcome", outcome),
                    ("target", target),
                    ("since", since),
                    ("limit", Some(limit.to_string())),
                ];
                cli::audit(&remote.remote(), &filters).await
            }
            Command::Webhooks { action, remote } => {
                let remote = remote.remote();
                match action {
                    WebhookCommand::List => cli::webhooks_list(&remote).await,
                    WebhookCommand::Add {
                        url,
                        events,
                        secret,
                    } => cli::webhooks_add(&remote, &url, &events, &secret).await,
                    WebhookCommand::Delete { id } => cli::webhooks_delete(&remote, &id).await,
                    WebhookCommand::Deliveries { id } => {
                        cli::webhooks_deliveries(&remote, &id).await
                    }
                    WebhookCommand::Redeliver { id, delivery_id } => {
                        cli::webhooks_redeliver(&remote, &id, &delivery_id).await
                    }
                }
            }
            Command::Serve { .. } | Command::Migrate { .. } | Command::Token { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("multicloud: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // TLS (Azure Resource Manager, a remote daemon) uses ring as rustls' crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (config, print) = match &cli.command {
        Command::Serve {
            config,
            print_config,
        } => (config.clone(), *print_config),
        Command::Migrate { config } => (config.clone(), false),
        Command::Token { name, role, stdin } => {
            return match multicloud::cli::token(name, role, *stdin) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("multicloud: {e}");
                    ExitCode::from(e.exit_code())
                }
            };
        }
        _ => return client(cli.command),
    };
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("multicloud: {e}");
            return ExitCode::from(2);
        }
    };
    if print {
        print!("{}", settings.to_masked_toml());
        return ExitCode::SUCCESS;
    }
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Migrate { .. } => multicloud::daemon::migrate(&settings),
        _ => multicloud::daemon::serve(settings),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("multicloud: {e:#}");
            ExitCode::FAILURE
        }
    }
}

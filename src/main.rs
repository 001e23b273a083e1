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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, print) = match &cli.command {
        Command::Serve {
            config,
            print_config,
        } => (config.clone(), *print_config),
        Command::Migrate { config } => (config.clone(), false),
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
    // TLS (to Azure Resource Manager) uses ring as rustls' crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let result = match cli.command {
        Command::Serve { .. } => multicloud::daemon::serve(settings),
        Command::Migrate { .. } => multicloud::daemon::migrate(&settings),
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

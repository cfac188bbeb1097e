//! The `broker` command: `serve`, `check-config`, `demo`, `keygen`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use broker::config::{self, Mode};
use broker::keys::{SigningAlg, SigningKey};
use clap::{Parser, Subcommand, ValueEnum};

// The broker allocates many short-lived buffers per request (headers, JSON, pages);
// mimalloc serves them with a fraction of glibc malloc's cost (measured by the benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "broker", version, about = "OpenID Connect federation broker")]
struct Cli {
    /// Log format: `text` (readable) or `json` (production).
    #[arg(long, global = true, env = "BROKER_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker with a configuration file.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
        /// Override the listen address of the configuration.
        #[arg(long, env = "BROKER_LISTEN")]
        listen: Option<String>,
        /// Number of HTTP worker threads (default: one per core).
        #[arg(long, env = "BROKER_WORKERS")]
        workers: Option<usize>,
    },
    /// Validate a configuration file: prints every problem with file, key and reason.
    CheckConfig {
        /// Configuration file (TOML).
        config: PathBuf,
    },
    /// Run a self-contained demo: broker on :8080, demo relying party on :8081.
    Demo {
        /// Folder for the demo's keys, secrets and store.
        #[arg(long, default_value = "demo-data")]
        data: PathBuf,
        /// Port of the demo relying party.
        #[arg(long, default_value_t = 8081)]
        rp_port: u16,
    },
    /// Generate a signing key (PKCS#8 PEM) for the `keys` section.
    Keygen {
        /// Algorithm.
        #[arg(long, value_parser = ["RS256", "PS256", "ES256", "EdDSA"])]
        alg: String,
        /// Output file (created with mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

fn init_logging(
    format: LogFormat,
    audit: Option<&std::path::Path>,
) -> Option<broker::observe::LogGuard> {
    let format = match format {
        LogFormat::Json => broker::observe::LogFormat::Json,
        LogFormat::Text => broker::observe::LogFormat::Text,
    };
    match broker::observe::init_logging(format, audit) {
        Ok(guard) => Some(guard),
        Err(e) => {
            eprintln!("cannot start logging: {e}");
            None
        }
    }
}

fn print_problems(problems: &[config::Problem]) {
    for p in problems {
        eprintln!("{p}");
    }
    eprintln!(
        "{} problem{} found",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match config::load(&config, Mode::Serve) {
            Ok(s) => {
                println!(
                    "{}: configuration is valid ({} connectors, {} clients)",
                    config.display(),
                    s.connectors.len(),
                    s.clients.len()
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                print_problems(&problems);
                ExitCode::from(2)
            }
        },
        Command::Keygen { alg, out } => {
            let Some(alg) = SigningAlg::from_name(&alg) else {
                eprintln!("--alg: `{alg}` is not RS256, PS256, ES256 or EdDSA");
                return ExitCode::from(2);
            };
            if out.exists() {
                eprintln!("{}: already exists, not overwritten", out.display());
                return ExitCode::from(2);
            }
            match SigningKey::generate("new", alg).and_then(|(_, pem)| {
                std::fs::write(&out, pem).map_err(|e| e.to_string())?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}: {e}", out.display());
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            listen,
            workers,
        } => {
            let mut settings = match config::load(&config, Mode::Serve) {
                Ok(s) => s,
                Err(problems) => {
                    print_problems(&problems);
                    return ExitCode::from(2);
                }
            };
            let Some(_log) = init_logging(cli.log_format, settings.audit_log.as_deref()) else {
                return ExitCode::FAILURE;
            };
            if let Some(l) = listen {
                settings.listen = l;
            }
            run(broker::web::run(settings, workers))
        }
        #[cfg(feature = "demo")]
        Command::Demo { data, rp_port } => {
            let Some(_log) = init_logging(cli.log_format, None) else {
                return ExitCode::FAILURE;
            };
            run(broker::demo::run(&data, rp_port))
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => {
            eprintln!(
                "broker demo: the demo is not built into this binary (it was built without the `demo` feature); run it from a default build: cargo run -p broker -- demo"
            );
            ExitCode::FAILURE
        }
    }
}

fn run(fut: impl std::future::Future<Output = std::io::Result<()>>) -> ExitCode {
    let started = std::time::Instant::now();
    match actix_web::rt::System::new().block_on(fut) {
        Ok(()) => {
            // The server returns after a SIGTERM or SIGINT, once requests in flight finished
            // (or its shutdown timeout passed): say so before the log is flushed.
            tracing::info!(
                uptime_seconds = started.elapsed().as_secs(),
                "broker stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "broker stopped");
            eprintln!("broker stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

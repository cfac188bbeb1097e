//! The `broker` command: `serve`, `check-config`, `demo`, `keygen`, `migrate`, `records`.
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
    /// Apply the schema migrations of the records (`[records]`, PostgreSQL).
    Migrate {
        /// Configuration file (TOML).
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
    },
    /// Export or import the durable records (NDJSON; keyed hashes and sealed values only).
    Records {
        #[command(subcommand)]
        action: RecordsAction,
    },
    /// The configuration versions of the console.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
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

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the configuration in force (the bootstrap file with the newest version's
    /// connectors and clients), or one version's document.
    Export {
        /// Configuration file (TOML), with `[console]`.
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
        /// This version instead of the newest.
        #[arg(long)]
        version: Option<u64>,
        /// Only the version's connectors and clients (what `/admin/config` publishes).
        #[arg(long)]
        document: bool,
    },
}

#[derive(Subcommand)]
enum RecordsAction {
    /// Write every record, one JSON line each.
    Export {
        /// Configuration file (TOML).
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Move the records earlier versions kept in the `[store]` (Redis or redb) into the
    /// `[records]`; refuses records that are not empty without `--force`.
    Move {
        /// Configuration file (TOML).
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
        /// Add to records that are not empty (what exists is kept, nothing is duplicated).
        #[arg(long)]
        force: bool,
    },
    /// Add exported records; refuses records that are not empty without `--force`.
    Import {
        /// Configuration file (TOML).
        #[arg(long, short, env = "BROKER_CONFIG")]
        config: PathBuf,
        /// The exported file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Add to records that are not empty (what exists is kept, nothing is duplicated).
        #[arg(long)]
        force: bool,
    },
}

fn load_or_report(config: &std::path::Path) -> Result<config::Settings, ExitCode> {
    config::load(config, Mode::Serve).map_err(|problems| {
        print_problems(&problems);
        ExitCode::from(2)
    })
}

fn records_command(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Migrate { config } => {
                let settings = load_or_report(&config).map_err(Err)?;
                broker::person::transfer::migrate(&settings)
                    .await
                    .map_err(Ok)
            }
            Command::Records {
                action: RecordsAction::Export { config, out },
            } => {
                let settings = load_or_report(&config).map_err(Err)?;
                // Buffered: records are written line by line as they are read.
                let mut sink: Box<dyn std::io::Write + Send> = match &out {
                    Some(path) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .map_err(|e| Ok(format!("{}: {e}", path.display())))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout())),
                };
                let n = broker::person::transfer::export(&settings, &mut sink)
                    .await
                    .map_err(Ok)?;
                Ok(format!("exported {n} records"))
            }
            Command::Records {
                action:
                    RecordsAction::Import {
                        config,
                        input,
                        force,
                    },
            } => {
                let settings = load_or_report(&config).map_err(Err)?;
                let (read, written) = broker::person::transfer::import(&settings, &input, force)
                    .await
                    .map_err(Ok)?;
                Ok(format!(
                    "imported {written} of {read} records ({} already there)",
                    read - written
                ))
            }
            Command::Records {
                action: RecordsAction::Move { config, force },
            } => {
                let settings = load_or_report(&config).map_err(Err)?;
                let m = broker::person::transfer::move_from_store(&settings, force)
                    .await
                    .map_err(Ok)?;
                Ok(format!(
                    "moved {} persons, {} consents, {} settings ({} bindings held by another person kept suspended for review); {} written, {} already there",
                    m.persons,
                    m.consents,
                    m.settings,
                    m.conflicts,
                    m.written,
                    m.persons + m.conflicts + m.consents + m.settings - m.written
                ))
            }
            Command::Config {
                action:
                    ConfigAction::Export {
                        config,
                        version,
                        document,
                    },
            } => {
                let settings = load_or_report(&config).map_err(Err)?;
                if settings.console.is_none() {
                    return Err(Ok(format!(
                        "{}: no [console]: the connectors and clients are this file's own",
                        config.display()
                    )));
                }
                let records = broker::person::records::open(&settings)
                    .await
                    .map_err(|e| Ok(e.to_string()))?;
                let found = records
                    .config_version(version)
                    .await
                    .map_err(|e| Ok(e.to_string()))?
                    .ok_or_else(|| {
                        Ok(match version {
                            Some(v) => format!("no configuration version {v}"),
                            None => "no configuration version yet: `broker serve` seeds version 1 from the file".into(),
                        })
                    })?;
                let text = if document {
                    found.document.clone()
                } else {
                    config::versioned::export(&config, &found.document).map_err(|problems| {
                        print_problems(&problems);
                        Err(ExitCode::from(2))
                    })?
                };
                print!("{text}");
                Ok(format!(
                    "configuration version {} ({} at {} ms, {})",
                    found.version, found.author, found.at, found.note
                ))
            }
            _ => Ok(String::new()),
        }
    });
    match result {
        Ok(message) => {
            eprintln!("{message}");
            ExitCode::SUCCESS
        }
        Err(Ok(message)) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
        Err(Err(code)) => code,
    }
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
        command @ (Command::Migrate { .. } | Command::Records { .. } | Command::Config { .. }) => {
            records_command(command)
        }
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

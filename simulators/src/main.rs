//! The `simulators` command: runs a simulated identity source alone.
//!
//! ```sh
//! VNEID_SIM_CLIENT_SECRET=... simulators vneid --listen 127.0.0.1:8082 \
//!     --public-url http://localhost:8082 --client-id broker \
//!     --redirect-uri http://localhost:8080/callback/vneid
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "simulators",
    version,
    about = "Simulated identity sources for demos and tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A VNeID-like OpenID Provider with test citizens (password `demo`).
    Vneid {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8082")]
        listen: String,
        /// Public base URL, which is also the issuer.
        #[arg(long, default_value = "http://localhost:8082")]
        public_url: String,
        /// The client id of the broker.
        #[arg(long, default_value = "broker")]
        client_id: String,
        /// The broker's client secret (from the environment, never on the command line).
        #[arg(long = "client-secret-env", default_value = "VNEID_SIM_CLIENT_SECRET")]
        client_secret_env: String,
        /// The broker's redirect URIs (repeat for several).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Vneid {
            listen,
            public_url,
            client_id,
            client_secret_env,
            redirect_uris,
        } => {
            let secret = match std::env::var(&client_secret_env) {
                Ok(s) if !s.is_empty() => s,
                _ => {
                    eprintln!(
                        "environment variable {client_secret_env} (the client secret) is not set"
                    );
                    return ExitCode::from(2);
                }
            };
            let clients = vec![simulators::vneid::Client {
                id: client_id,
                secret,
                redirect_uris,
            }];
            let result = actix_web::rt::System::new().block_on(async move {
                let server = simulators::vneid::serve(&listen, &public_url, clients)?;
                println!("simulated VNeID listening on {listen} as {public_url}");
                server.await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("simulator stopped: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

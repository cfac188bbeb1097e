//! Logs, the audit trail and Prometheus metrics.
//!
//! Logs never hold personal data: handlers log ids of clients, connectors and sessions,
//! never citizen ID numbers, phone numbers, card numbers, codes or tokens. Security events
//! are logged with `target: "audit"`; with `audit_log` configured they also go, as JSON
//! lines, to that append-only file.

use std::path::Path;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Readable lines (demo, development).
    Text,
    /// One JSON object per line (production).
    Json,
}

/// Keeps the log writer thread running; dropping it writes out what is buffered.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the process-wide logger. `BROKER_LOG` sets the filter (default `info`).
///
/// Lines go to standard output through a writer thread that batches them: under load one
/// `write` carries many lines instead of one system call per request line. A line reaches
/// the output as soon as the thread finds its queue empty; when a slow reader lets the
/// queue fill up (128k lines), loggers wait rather than drop lines. Keep the guard until
/// the process ends: dropping it writes out the queue (tracing-appender gives that at most
/// a second). The audit file is written synchronously.
pub fn init_logging(format: LogFormat, audit_log: Option<&Path>) -> Result<LogGuard, String> {
    let filter = || {
        EnvFilter::try_from_env("BROKER_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"))
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("broker-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let stdout = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_target(true)
            .with_current_span(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            // Colours for a person at a terminal, not escape codes in a pipe or a file.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_writer(writer)
            .boxed(),
    };
    let audit = match audit_log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("audit_log {}: {e}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(filter_fn(|meta| meta.target() == "audit")),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stdout.with_filter(filter()))
        .with(audit)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(guard)
}

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process.
pub fn install_metrics() {
    METRICS.get_or_init(|| match PrometheusBuilder::new().install_recorder() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    });
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics_endpoint() -> HttpResponse {
    match METRICS.get().and_then(Option::as_ref) {
        Some(handle) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(handle.render()),
        None => HttpResponse::ServiceUnavailable().body("metrics are not enabled"),
    }
}

//! Logs, the audit trail and Prometheus metrics.
//!
//! Logs never hold personal data: handlers log ids of clients, connectors and sessions,
//! never citizen ID numbers, phone numbers, card numbers, codes or tokens. Security events
//! are logged with `target: "audit"`; with `audit_log` configured they also go, as JSON
//! lines, to that append-only file.

use std::path::Path;
use std::sync::OnceLock;

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

/// Upper bounds (seconds) of the latency histograms: buckets, not quantiles, so that the
/// series of several instances add up (`histogram_quantile(…, sum by (le) (rate(…)))`).
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric the broker and its connectors record, with its `# HELP` text.
const COUNTERS: &[(&str, &str)] = &[
    (
        "broker_http_requests_total",
        "HTTP requests answered, by route and status.",
    ),
    (
        "broker_logins_started_total",
        "Logins started at /authorize, by client.",
    ),
    (
        "broker_logins_total",
        "Logins finished at an identity source, by connector and outcome.",
    ),
    (
        "broker_connector_errors_total",
        "Errors of identity sources (not the citizen's mistakes), by connector.",
    ),
    (
        "broker_rate_limited_total",
        "Requests refused by a rate limit, by scope.",
    ),
    (
        "broker_tokens_issued_total",
        "Tokens issued at /token, by grant.",
    ),
    (
        "broker_store_errors_total",
        "Failed store operations, by operation.",
    ),
    (
        "broker_sms_total",
        "SMS codes handed to the gateway, by outcome.",
    ),
    (
        "broker_config_reloads_total",
        "Configuration reloads, by outcome (applied, rejected).",
    ),
    (
        "broker_client_jwks_fetches_total",
        "Fetches of clients' jwks_uri, by client and outcome (fetched, failed).",
    ),
];
const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "broker_http_request_seconds",
        "Time to answer an HTTP request, by route, in seconds.",
    ),
    (
        "broker_connector_seconds",
        "Time an identity source took for one step, by connector, in seconds.",
    ),
    (
        "broker_store_seconds",
        "Time of one store operation, by operation, in seconds.",
    ),
];
const GAUGES: &[(&str, &str)] = &[
    (
        "broker_build_info",
        "The running build: always 1, with its version.",
    ),
    (
        "broker_config_generation",
        "How many configurations this process has run with (1 at start, +1 per applied reload).",
    ),
    (
        "broker_config_info",
        "The configuration running: 1 for the SHA-256 prefix of its file (0 for earlier ones).",
    ),
    (
        "broker_config_loaded_timestamp_seconds",
        "When the running configuration was loaded (Unix time).",
    ),
    (
        "broker_config_last_reload_ok",
        "1 when the last reload was applied (or none was tried), 0 when it was rejected.",
    ),
];

/// Installs the Prometheus recorder once per process, with the descriptions of every
/// metric and the build information.
pub fn install_metrics() {
    METRICS.get_or_init(|| {
        let builder = match PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                return None;
            }
        };
        match builder.install_recorder() {
            Ok(handle) => {
                for (name, help) in COUNTERS {
                    metrics::describe_counter!(*name, *help);
                }
                for (name, help) in HISTOGRAMS {
                    metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
                }
                for (name, help) in GAUGES {
                    metrics::describe_gauge!(*name, *help);
                }
                metrics::gauge!("broker_build_info", "version" => env!("CARGO_PKG_VERSION"))
                    .set(1.0);
                metrics::gauge!("broker_config_last_reload_ok").set(1.0);
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

/// The digest label of the configuration running now.
static CONFIG_DIGEST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Records that the configuration in `path` now runs (at start and after each applied
/// reload): its generation, its digest and when.
pub fn config_applied(path: &Path, reload: bool) {
    use sha2::{Digest, Sha256};
    let digest = std::fs::read(path)
        .map(|bytes| {
            Sha256::digest(bytes)
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        })
        .unwrap_or_default();
    if let Ok(mut last) = CONFIG_DIGEST.lock() {
        if let Some(old) = last.replace(digest.clone()) {
            if old != digest {
                metrics::gauge!("broker_config_info", "sha256" => old).set(0.0);
            }
        }
    }
    metrics::gauge!("broker_config_info", "sha256" => digest).set(1.0);
    metrics::gauge!("broker_config_generation").increment(1.0);
    metrics::gauge!("broker_config_loaded_timestamp_seconds").set(crate::util::now_secs() as f64);
    if reload {
        metrics::counter!("broker_config_reloads_total", "outcome" => "applied").increment(1);
        metrics::gauge!("broker_config_last_reload_ok").set(1.0);
    }
}

/// Records a rejected reload (the last good configuration keeps running).
pub fn config_rejected() {
    metrics::counter!("broker_config_reloads_total", "outcome" => "rejected").increment(1);
    metrics::gauge!("broker_config_last_reload_ok").set(0.0);
}

/// The metrics in Prometheus text format, when they are installed.
pub fn render_metrics() -> Option<String> {
    METRICS.get().and_then(Option::as_ref).map(|h| h.render())
}

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

/// Lines the log queue holds before loggers wait. tracing-appender's default (128k) let a
/// reader that falls behind under load (a pipe to a busy collector) grow the broker by tens
/// of MiB (issue #17: the benchmark's peak memory doubled with the run's length); 8k lines
/// are still most of a second of the broker's lines at full load.
const LOG_QUEUE_LINES: usize = 8 * 1024;

/// Installs the process-wide logger. `BROKER_LOG` sets the filter (default `info`).
///
/// Lines go to standard output through a writer thread that batches them: under load one
/// `write` carries many lines instead of one system call per request line. A line reaches
/// the output as soon as the thread finds its queue empty; when a slow reader lets the
/// queue fill up ([`LOG_QUEUE_LINES`]), loggers wait rather than drop lines. Keep the guard until
/// the process ends: dropping it writes out the queue (tracing-appender gives that at most
/// a second). The audit file is written synchronously.
pub fn init_logging(format: LogFormat, audit_log: Option<&Path>) -> Result<LogGuard, String> {
    let filter = || {
        EnvFilter::try_from_env("BROKER_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"))
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("broker-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    // Colours for a person at a terminal, not escape codes in a pipe or a file.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let stdout = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_target(true)
            .with_current_span(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text if terminal => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(true)
            .with_writer(writer)
            .boxed(),
        // The same lines as the stock format without colours, made with less work.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(PlainFields)
            .event_format(PlainLine)
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

/// The text line of an event without colours, as tracing-subscriber's full format writes it
/// with the target off (`2026-12-02T05:00:00.123456Z  INFO request{id=…}: request
/// method=GET …`): a timestamp with microseconds, the level, the spans with their fields,
/// then the event's fields by the layer's field formatter. Written directly, with the
/// date and time of the current second made once per thread, where the stock format goes
/// through a styling layer for every piece even when it has no colours: this line is
/// written for every request.
struct PlainLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for PlainLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::FormatFields as _;
        write_timestamp(&mut writer, std::time::SystemTime::now())?;
        writer.write_str(match *event.metadata().level() {
            tracing::Level::TRACE => "TRACE ",
            tracing::Level::DEBUG => "DEBUG ",
            tracing::Level::INFO => " INFO ",
            tracing::Level::WARN => " WARN ",
            tracing::Level::ERROR => "ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<tracing_subscriber::fmt::FormattedFields<N>>() {
                    if !fields.is_empty() {
                        writer.write_char('{')?;
                        writer.write_str(fields)?;
                        writer.write_char('}')?;
                    }
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The fields of [`PlainLine`]s (and of their spans): what tracing-subscriber's default
/// field formatter writes without colours, `name=value` with a space between, but numbers,
/// booleans and `%`/`?` values written straight to the line instead of through its styling
/// layer. Messages and errors (escaped, with their sources) are left to the default
/// formatter.
struct PlainFields;

struct PlainVisitor<'a> {
    writer: tracing_subscriber::fmt::format::Writer<'a>,
    is_empty: bool,
    result: std::fmt::Result,
}

impl<'a> tracing_subscriber::field::MakeVisitor<tracing_subscriber::fmt::format::Writer<'a>>
    for PlainFields
{
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(
        &self,
        writer: tracing_subscriber::fmt::format::Writer<'a>,
    ) -> PlainVisitor<'a> {
        PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

impl PlainVisitor<'_> {
    /// `name=value` (after a space unless first), as the default formatter writes a field
    /// that is not the message; `None` for what it must write itself.
    fn plain(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            // Skipped, as the default formatter skips log metadata.
            return true;
        }
        if name == "message" {
            return false;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        if !self.is_empty {
            self.result = self.writer.write_char(' ');
        }
        self.is_empty = false;
        if self.result.is_ok() {
            self.result = write!(self.writer, "{name}={value:?}");
        }
        true
    }

    /// The default formatter's own handling of one field.
    fn by_default(
        &mut self,
        record: impl FnOnce(&mut tracing_subscriber::fmt::format::DefaultVisitor<'_>),
    ) {
        use tracing_subscriber::field::VisitOutput as _;
        if self.result.is_err() {
            return;
        }
        let mut visitor = tracing_subscriber::fmt::format::DefaultVisitor::new(
            self.writer.by_ref(),
            self.is_empty,
        );
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }
}

impl tracing::field::Visit for PlainVisitor<'_> {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if !self.plain(field, &value) {
            self.by_default(|v| v.record_u64(field, value));
        }
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        if !self.plain(field, &value) {
            self.by_default(|v| v.record_i64(field, value));
        }
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        if !self.plain(field, &value) {
            self.by_default(|v| v.record_bool(field, value));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if !self.plain(field, &value) {
            self.by_default(|v| v.record_str(field, value));
        }
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        if !field.name().starts_with("log.") {
            self.by_default(|v| v.record_error(field, value));
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if !self.plain(field, value) {
            self.by_default(|v| v.record_debug(field, value));
        }
    }
}

impl tracing_subscriber::field::VisitOutput<std::fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> std::fmt::Result {
        self.result
    }
}

impl tracing_subscriber::field::VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        &mut self.writer
    }
}

thread_local! {
    /// The Unix second last written by this thread and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: std::cell::RefCell<(u64, String)> =
        const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ ` (UTC, microseconds, then a space), as
/// tracing-subscriber's `SystemTime` timer writes it.
fn write_timestamp(w: &mut impl std::fmt::Write, now: std::time::SystemTime) -> std::fmt::Result {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = civil_time(secs);
            *cached = (secs, text);
        }
        w.write_str(&cached.1)
    })?;
    let micros = since.subsec_micros();
    let mut frac = *b".000000Z ";
    let mut n = micros;
    for digit in frac[1..7].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    w.write_str(std::str::from_utf8(&frac).unwrap_or(".000000Z "))
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second (UTC; the proleptic Gregorian calendar).
fn civil_time(secs: u64) -> String {
    // Days to civil date: Howard Hinnant's algorithm (days_from_civil inverse).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

/// How often histogram samples are folded into their buckets (the exporter's own default).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

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
                // The recorder keeps each histogram sample until upkeep folds it into the
                // buckets (`install_recorder` leaves upkeep to its caller); without a scrape
                // they piled up, 8 bytes each and several per request.
                let upkeep = handle.clone();
                let spawned = std::thread::Builder::new()
                    .name("broker-metrics".into())
                    .spawn(move || loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    });
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "metrics upkeep thread not started");
                }
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        }
    });
}

/// The metrics of one route: its latency histogram and its counters by status.
struct RouteMetrics {
    seconds: metrics::Histogram,
    by_status: Vec<(u16, metrics::Counter)>,
}

thread_local! {
    /// Request metrics registered by this thread, by route pattern (a bounded set).
    static REQUEST_METRICS: std::cell::RefCell<std::collections::HashMap<String, RouteMetrics>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Counts an answered request (`broker_http_requests_total{route,status}`) and records its
/// time (`broker_http_request_seconds{route}`). The handles are registered once per thread,
/// route and status; after that a request costs two atomic updates instead of building two
/// labelled keys and looking them up in the registry.
pub fn record_request(route: &str, status: u16, seconds: f64) {
    REQUEST_METRICS.with(|cell| {
        let mut map = cell.borrow_mut();
        if !map.contains_key(route) {
            let seconds =
                metrics::histogram!("broker_http_request_seconds", "route" => route.to_string());
            map.insert(
                route.to_string(),
                RouteMetrics {
                    seconds,
                    by_status: Vec::new(),
                },
            );
        }
        let Some(m) = map.get_mut(route) else { return };
        m.seconds.record(seconds);
        match m.by_status.iter().find(|(s, _)| *s == status) {
            Some((_, counter)) => counter.increment(1),
            None => {
                let counter = metrics::counter!("broker_http_requests_total", "route" => route.to_string(), "status" => status.to_string());
                counter.increment(1);
                m.by_status.push((status, counter));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_as_the_stock_timer_writes_them() {
        use std::time::{Duration, UNIX_EPOCH};
        for (secs, micros, want) in [
            (0, 0, "1970-01-01T00:00:00.000000Z "),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z "),
            (1_795_000_000, 123_456, "2026-11-18T11:06:40.123456Z "),
            (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z "),
        ] {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            let mut out = String::new();
            write_timestamp(&mut out, t).expect("written");
            assert_eq!(out, want);
            // The same second again comes from the cache.
            let mut again = String::new();
            write_timestamp(&mut again, t).expect("written");
            assert_eq!(again, want);
        }
    }

    /// Lines written by a layer into a buffer.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(
        layer_of: impl FnOnce(Buffer) -> Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>,
    ) -> String {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(layer_of(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", id = %"abc-1");
            span.in_scope(|| {
                tracing::info!(method = %"POST", route = %"/token", status = 200u16, ms = 3u64, "request");
                let e = std::io::Error::other("disk \x1b[31mred");
                tracing::warn!(
                    ok = true,
                    delta = -4i64,
                    r#type = "kind \"q\"",
                    ratio = 0.5f64,
                    error = &e as &(dyn std::error::Error + 'static),
                    "a \x1b[2J message"
                );
                tracing::info!(first = 1u64);
                tracing::warn!(target: "audit", event = "refresh.reused", client = %"rp", "refresh token reused; \"quoted\"");
            });
            tracing::error!(detail = ?"x\ny", "outside any span");
        });
        let bytes = buffer.0.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn plain_lines_are_the_stock_format_s_lines() {
        let stock = lines_of(|b| {
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(false)
                .with_writer(move || b.clone())
                .boxed()
        });
        let plain = lines_of(|b| {
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .fmt_fields(PlainFields)
                .event_format(PlainLine)
                .with_writer(move || b.clone())
                .boxed()
        });
        // Timestamps differ (27 characters and a space); the rest is the same.
        let strip = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| l.get(28..).unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(strip(&plain), strip(&stock));
        assert_eq!(plain.lines().count(), 5);
        assert!(plain.lines().all(|l| l.as_bytes().get(26) == Some(&b'Z')));
    }
}

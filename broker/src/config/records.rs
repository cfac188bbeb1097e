//! `[records]`: where the durable records live (persons, bindings, ways in, consents,
//! maintenance, audit, activity, reviews): `kind = "embedded"` (one redb file, a single
//! node; the default) or `kind = "postgres"` (several instances).

use std::path::PathBuf;
use std::time::Duration;

use records::postgres::{PgOptions, TlsMode};
use serde::Deserialize;

use super::file::SecretRef;

/// `[records]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsConfig {
    /// `embedded` or `postgres`.
    #[serde(default)]
    pub kind: RecordsKind,
    /// Embedded: the file (relative to the configuration), default `data/records.redb`.
    pub path: Option<String>,
    /// PostgreSQL: `postgres://host:port/database`, without credentials.
    pub url: Option<String>,
    /// PostgreSQL: user name (default `broker`).
    pub user: Option<String>,
    /// PostgreSQL: password, from an environment variable or a file.
    pub password: Option<SecretRef>,
    /// PostgreSQL: most connections per broker instance (default 16).
    pub pool_size: Option<usize>,
    /// PostgreSQL: longest a statement may run, in milliseconds (default 2000).
    pub statement_timeout_ms: Option<u64>,
    /// PostgreSQL: longest to wait for a connection, in milliseconds (default 2000).
    pub acquire_timeout_ms: Option<u64>,
    /// PostgreSQL: `disable` or `verify-full` (default: `disable` on a loopback host,
    /// `verify-full` elsewhere).
    pub tls: Option<TlsSetting>,
    /// PostgreSQL: extra CA certificates (PEM) to verify the server with.
    pub ca_file: Option<String>,
    /// How long sign-ins are kept for the citizen's recent activity, in days (default 365).
    pub activity_retention_days: Option<u64>,
}

/// Which backend.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordsKind {
    /// One redb file.
    #[default]
    Embedded,
    /// PostgreSQL.
    Postgres,
}

/// `tls` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsSetting {
    /// Plain TCP.
    Disable,
    /// TLS with the certificate and host name verified.
    VerifyFull,
}

/// The validated `[records]`.
#[derive(Debug, Clone)]
pub struct RecordsSettings {
    /// The backend.
    pub backend: RecordsBackend,
    /// How long sign-ins are kept.
    pub activity_retention: Duration,
}

/// The validated backend.
#[derive(Debug, Clone)]
pub enum RecordsBackend {
    /// The redb file (absolute, or relative to the working directory).
    Embedded(PathBuf),
    /// PostgreSQL.
    Postgres(PgOptions),
}

impl Default for RecordsSettings {
    fn default() -> Self {
        RecordsSettings {
            backend: RecordsBackend::Embedded(PathBuf::from("data/records.redb")),
            activity_retention: Duration::from_secs(365 * 86_400),
        }
    }
}

impl super::Validator {
    /// Checks `[records]`, reporting every problem with its key.
    pub(super) fn records(&mut self, raw: &RecordsConfig) -> RecordsSettings {
        let days = raw.activity_retention_days.unwrap_or(365);
        if days == 0 {
            self.report("records.activity_retention_days", "must be at least 1 day");
        }
        let activity_retention = Duration::from_secs(days.max(1) * 86_400);
        let backend = match raw.kind {
            RecordsKind::Embedded => {
                for (key, set) in [
                    ("url", raw.url.is_some()),
                    ("user", raw.user.is_some()),
                    ("password", raw.password.is_some()),
                    ("pool_size", raw.pool_size.is_some()),
                    ("statement_timeout_ms", raw.statement_timeout_ms.is_some()),
                    ("acquire_timeout_ms", raw.acquire_timeout_ms.is_some()),
                    ("tls", raw.tls.is_some()),
                    ("ca_file", raw.ca_file.is_some()),
                ] {
                    if set {
                        self.report(
                            &format!("records.{key}"),
                            "is only for `kind = \"postgres\"`",
                        );
                    }
                }
                let path = raw.path.as_deref().unwrap_or("data/records.redb");
                RecordsBackend::Embedded(self.resolve_path(path))
            }
            RecordsKind::Postgres => RecordsBackend::Postgres(self.postgres(raw)),
        };
        RecordsSettings {
            backend,
            activity_retention,
        }
    }

    fn postgres(&mut self, raw: &RecordsConfig) -> PgOptions {
        if raw.path.is_some() {
            self.report("records.path", "is only for `kind = \"embedded\"`");
        }
        let url = raw.url.clone().unwrap_or_default();
        let mut loopback = false;
        if raw.url.is_none() {
            self.report(
                "records.url",
                "is missing (`postgres://host:5432/database`)",
            );
        } else {
            match check_postgres_url(&url) {
                Ok(is_loopback) => loopback = is_loopback,
                Err(reason) => self.report("records.url", reason),
            }
        }
        let password = raw.password.as_ref().and_then(|r| {
            let bytes = self.secret("records.password", r)?;
            match String::from_utf8(bytes) {
                Ok(p) => Some(p),
                Err(_) => {
                    self.report("records.password", "is not UTF-8 text");
                    None
                }
            }
        });
        if raw.user.as_deref().is_some_and(str::is_empty) {
            self.report("records.user", "must not be empty");
        }
        let pool_size = raw.pool_size.unwrap_or(16);
        if pool_size == 0 || pool_size > 1000 {
            self.report("records.pool_size", "must be between 1 and 1000");
        }
        let mut millis = |key: &str, value: Option<u64>| {
            let ms = value.unwrap_or(2000);
            if ms == 0 || ms > 60_000 {
                self.report(
                    &format!("records.{key}"),
                    "must be between 1 and 60000 milliseconds",
                );
            }
            Duration::from_millis(ms.clamp(1, 60_000))
        };
        let statement_timeout = millis("statement_timeout_ms", raw.statement_timeout_ms);
        let acquire_timeout = millis("acquire_timeout_ms", raw.acquire_timeout_ms);
        let tls = match raw.tls {
            Some(TlsSetting::Disable) => TlsMode::Disable,
            Some(TlsSetting::VerifyFull) => TlsMode::VerifyFull,
            None if loopback => TlsMode::Disable,
            None => TlsMode::VerifyFull,
        };
        let ca_file = raw.ca_file.as_deref().map(|f| self.resolve_path(f));
        if let Some(path) = &ca_file {
            if tls == TlsMode::Disable {
                self.report("records.ca_file", "needs `tls = \"verify-full\"`");
            } else if let Err(e) = std::fs::metadata(path) {
                self.report(
                    "records.ca_file",
                    format!("cannot read `{}`: {e}", path.display()),
                );
            }
        }
        PgOptions {
            url,
            user: Some(raw.user.clone().unwrap_or_else(|| "broker".into())),
            password,
            pool_size: pool_size.clamp(1, 1000),
            statement_timeout,
            acquire_timeout,
            tls,
            ca_file,
        }
    }
}

/// Checks `postgres://host:port/database` (no credentials, no parameters); returns whether
/// the host is a loopback address.
fn check_postgres_url(address: &str) -> Result<bool, String> {
    let example = "postgres://host:5432/database";
    let u = url::Url::parse(address).map_err(|e| format!("is not a URL like `{example}`: {e}"))?;
    // Checked first, and the address not quoted: it may hold a password.
    if !u.username().is_empty() || u.password().is_some() {
        return Err(
            "must not carry credentials; use `records.user` and `records.password` (from an environment variable or a file)"
                .into(),
        );
    }
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "`{address}` has scheme `{}`; use `{example}`",
            u.scheme()
        ));
    }
    let host = u.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("`{address}` names no host"));
    }
    let database = u.path().trim_start_matches('/');
    if database.is_empty() || database.contains('/') {
        return Err(format!("`{address}` names no database (`{example}`)"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "`{address}` must be `{example}` alone (TLS, timeouts and the pool are keys of `[records]`)"
        ));
    }
    Ok(matches!(host, "localhost" | "127.0.0.1" | "[::1]"))
}

#[cfg(test)]
mod tests {
    use super::check_postgres_url;

    #[test]
    fn postgres_urls_carry_no_credentials_and_name_a_database() {
        assert_eq!(
            check_postgres_url("postgres://127.0.0.1:5432/broker"),
            Ok(true)
        );
        assert_eq!(
            check_postgres_url("postgresql://db.internal/broker"),
            Ok(false)
        );
        let secret = check_postgres_url("postgres://u:hunter2@db/broker").unwrap_err();
        assert!(!secret.contains("hunter2"), "{secret}");
        assert!(check_postgres_url("postgres://db:5432/").is_err());
        assert!(check_postgres_url("postgres://db/broker?sslmode=disable").is_err());
        assert!(check_postgres_url("mysql://db/broker").is_err());
    }
}

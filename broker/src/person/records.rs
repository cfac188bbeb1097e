//! Opening the records the configuration names, and what the rest of the broker needs of
//! them (their errors become store errors in the `records` crate, so they end on the same
//! 503 page).

use std::sync::Arc;

use records::embedded::EmbeddedRecords;
use records::postgres::PgRecords;
use records::{RecordsError, RecordsResult, SharedRecords};

use crate::config::records::RecordsBackend;
use crate::config::Settings;

/// Opens the records; PostgreSQL must be reachable and at the schema this binary knows.
pub async fn open(settings: &Settings) -> RecordsResult<SharedRecords> {
    match &settings.records.backend {
        RecordsBackend::Embedded(path) => {
            let path = path.clone();
            let records = tokio::task::spawn_blocking(move || EmbeddedRecords::open(&path))
                .await
                .map_err(|e| RecordsError::Unavailable(format!("open records: {e}")))??;
            Ok(Arc::new(records))
        }
        RecordsBackend::Postgres(options) => Ok(Arc::new(PgRecords::connect(options).await?)),
    }
}

/// Applies the schema migrations PostgreSQL lacks (`broker migrate`); returns what it did,
/// in words.
pub async fn migrate(settings: &Settings) -> RecordsResult<String> {
    match &settings.records.backend {
        RecordsBackend::Embedded(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || EmbeddedRecords::open(&path))
                .await
                .map_err(|e| RecordsError::Unavailable(format!("open records: {e}")))??;
            Ok("embedded records: nothing to migrate".into())
        }
        RecordsBackend::Postgres(options) => {
            let pg = PgRecords::connect_unchecked(options)?;
            let applied = pg.migrate().await?;
            let now = records::postgres::schema_version();
            Ok(if applied.is_empty() {
                format!("PostgreSQL records: schema already at version {now}")
            } else {
                let list: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
                format!(
                    "PostgreSQL records: applied migration {}; schema now at version {now}",
                    list.join(", ")
                )
            })
        }
    }
}

/// Deletes sign-ins older than the retention, once an hour (and once at start).
pub async fn purge_activity(records: SharedRecords, retention: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let before = crate::util::now_millis()
            .saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        match records.purge_activity(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "old sign-ins deleted"),
            Err(e) => tracing::warn!(error = %e, "sign-ins could not be purged"),
        }
    }
}

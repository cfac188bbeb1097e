//! Maintenance set by operators at run time through the admin API, on top of the
//! configuration: a connector (or one bank of a connector) is shown greyed with a message
//! per language. Kept in the records so every broker instance sees it: the instance that
//! took the change at once, the others within [`CACHE_MS`] (a login reads the settings on
//! two or three of its pages; each instance reuses what it read for that long). Changes
//! are compare-and-set, so two operators changing two connectors at once both win.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use records::Records;

use crate::config::{ConnectorEntry, ConnectorStatus, LocalizedText};
use store::{StoreError, StoreResult};

/// Name of the setting in the records (and key in the store of earlier versions).
pub const KEY: &str = "maintenance";

/// Maintenance messages by connector id.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Maintenance {
    /// Connector id → message per language.
    pub connectors: BTreeMap<String, LocalizedText>,
}

impl Maintenance {
    /// The status and message a connector has now.
    pub fn effective<'a>(
        &'a self,
        entry: &'a ConnectorEntry,
    ) -> (ConnectorStatus, &'a LocalizedText) {
        match self.connectors.get(&entry.id) {
            Some(msg) if entry.status != ConnectorStatus::Disabled => {
                (ConnectorStatus::Maintenance, msg)
            }
            _ => (entry.status, &entry.maintenance_message),
        }
    }
}

impl Maintenance {
    /// The parts of `connector` in maintenance (keys `{connector}/{part}`), by part.
    pub fn parts_of(&self, connector: &str) -> BTreeMap<String, LocalizedText> {
        let prefix = format!("{connector}/");
        self.connectors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|p| (p.to_string(), v.clone())))
            .collect()
    }
}

/// How long an instance reuses the maintenance settings it read, in milliseconds.
pub const CACHE_MS: u64 = 1000;

/// The maintenance settings an instance read last, and when (Unix ms), with a generation
/// that [`Cache::clear`] raises so a read that started before a change never stores its
/// older answer after it.
#[derive(Default)]
pub struct Cache(std::sync::Mutex<(u64, Option<(u64, Maintenance)>)>);

impl Cache {
    fn held(&self) -> std::sync::MutexGuard<'_, (u64, Option<(u64, Maintenance)>)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The settings as read at most [`CACHE_MS`] before `now`, else read now.
    pub async fn load(&self, records: &dyn Records, now: u64) -> StoreResult<Maintenance> {
        let generation = {
            let held = self.held();
            if let Some((at, m)) = held.1.as_ref() {
                if now >= *at && now - *at < CACHE_MS {
                    return Ok(m.clone());
                }
            }
            held.0
        };
        let m = load(records).await?;
        let mut held = self.held();
        if held.0 == generation {
            held.1 = Some((now, m.clone()));
        }
        Ok(m)
    }

    /// [`Cache::load`], with unreadable records meaning none (logged).
    pub async fn load_or_none(&self, records: &dyn Records, now: u64) -> Maintenance {
        self.load(records, now).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "maintenance settings unreadable");
            Maintenance::default()
        })
    }

    /// Forgets what was read: this instance changed the settings.
    pub fn clear(&self) {
        let mut held = self.held();
        held.0 += 1;
        held.1 = None;
    }
}

/// Loads the current maintenance settings; unreadable records mean none (logged), for
/// callers that can go on without them.
pub async fn load_or_none(records: &dyn Records) -> Maintenance {
    load(records).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "maintenance settings unreadable");
        Maintenance::default()
    })
}

/// Loads the current maintenance settings.
pub async fn load(records: &dyn Records) -> StoreResult<Maintenance> {
    Ok(load_versioned(records).await?.1)
}

async fn load_versioned(records: &dyn Records) -> StoreResult<(u64, Maintenance)> {
    let setting = records.setting(KEY).await?;
    let m = if setting.value.is_null() {
        Maintenance::default()
    } else {
        serde_json::from_value(setting.value)
            .map_err(|e| StoreError::Corrupt(format!("maintenance settings: {e}")))?
    };
    Ok((setting.version, m))
}

/// Who changes records from the outside, as their audit rows say.
#[derive(Debug, Clone, Copy)]
pub struct By<'a> {
    /// The operator's name (`admin` for the admin API's token).
    pub actor: &'a str,
    /// `console` or `admin-api`.
    pub source: &'a str,
}

impl By<'static> {
    /// The admin API's token.
    pub const ADMIN_API: By<'static> = By {
        actor: "admin",
        source: "admin-api",
    };
}

/// Puts a connector into maintenance (`Some(message)`) or takes it out (`None`), with an
/// audit row naming `by` and the message.
pub async fn set(
    records: &dyn Records,
    connector: &str,
    message: Option<LocalizedText>,
    by: By<'_>,
    now: u64,
) -> StoreResult<()> {
    for attempt in 0..crate::util::ATTEMPTS {
        if attempt > 0 {
            crate::util::backoff(attempt).await;
        }
        let (version, mut m) = load_versioned(records).await?;
        match &message {
            Some(msg) => m.connectors.insert(connector.to_string(), msg.clone()),
            None => m.connectors.remove(connector),
        };
        let value = serde_json::to_value(&m)
            .map_err(|e| store::StoreError::Corrupt(format!("cannot encode maintenance: {e}")))?;
        if records.set_setting(KEY, version, &value).await? {
            let event = if message.is_some() {
                "admin.maintenance_on"
            } else {
                "admin.maintenance_off"
            };
            let row = records::AuditRow::new(
                now,
                by.actor,
                event,
                by.source,
                connector,
                serde_json::json!({"version": version + 1, "message": message}),
            );
            records.audit(&[row]).await?;
            return Ok(());
        }
    }
    Err(StoreError::Unavailable(
        "maintenance settings changed concurrently too often".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    #[tokio::test]
    async fn an_instance_reuses_what_it_read_for_a_second_and_forgets_it_when_it_changes_it() {
        let dir = tempfile::tempdir().expect("dir");
        let records =
            records::embedded::EmbeddedRecords::open(&dir.path().join("r.redb")).expect("records");
        let message = || LocalizedText::from([("en".to_string(), "Upgrading".to_string())]);
        let cache = Cache::default();
        assert!(cache
            .load(&records, T)
            .await
            .expect("read")
            .connectors
            .is_empty());
        // Another instance puts a connector into maintenance.
        set(&records, "tc", Some(message()), By::ADMIN_API, T)
            .await
            .expect("set");
        let within = cache.load(&records, T + CACHE_MS - 1).await.expect("read");
        assert!(within.connectors.is_empty(), "reused within the second");
        let after = cache.load(&records, T + CACHE_MS).await.expect("read");
        assert!(after.connectors.contains_key("tc"), "read again after it");
        // This instance takes it out of maintenance: it sees that at once.
        set(&records, "tc", None, By::ADMIN_API, T + CACHE_MS + 1)
            .await
            .expect("set");
        cache.clear();
        let now = cache.load(&records, T + CACHE_MS + 2).await.expect("read");
        assert!(now.connectors.is_empty());
    }
}

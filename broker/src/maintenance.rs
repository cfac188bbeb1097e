//! Maintenance set by operators at run time through the admin API, on top of the
//! configuration: a connector (or, later, one bank of a connector) is shown greyed with a
//! message per language. Kept in the store so every broker instance sees it at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{ConnectorEntry, ConnectorStatus, LocalizedText};
use crate::util::now_millis;
use store::{Store, StoreResult};

const KEY: &str = "maintenance";

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

/// Loads the current maintenance settings; an unreadable store means none (logged), for
/// callers that can go on without them.
pub async fn load_or_none(store: &dyn Store) -> Maintenance {
    load(store).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "maintenance settings unreadable");
        Maintenance::default()
    })
}

/// Loads the current maintenance settings.
pub async fn load(store: &dyn Store) -> StoreResult<Maintenance> {
    Ok(store
        .get(KEY, now_millis())
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// Puts a connector into maintenance (`Some(message)`) or takes it out (`None`).
pub async fn set(
    store: &dyn Store,
    connector: &str,
    message: Option<LocalizedText>,
) -> StoreResult<()> {
    let mut m = load(store).await?;
    match message {
        Some(msg) => m.connectors.insert(connector.to_string(), msg),
        None => m.connectors.remove(connector),
    };
    let bytes = serde_json::to_vec(&m).unwrap_or_default();
    store.put(KEY, &bytes, None, now_millis()).await
}

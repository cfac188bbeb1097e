//! What every request handler shares: the configuration and the store.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Live, Settings, StoreConfig};
use store::embedded::EmbeddedStore;
use store::redis::{ClusterOptions, RedisStore, SentinelOptions};
use store::{SharedStore, StoreError};

/// Shared state of the running broker.
#[derive(Clone)]
pub struct AppState {
    /// The configuration in force (live reload swaps it atomically; requests in flight keep
    /// the one they started with).
    pub live: Arc<arc_swap::ArcSwap<Live>>,
    /// The store (everything with a lifetime).
    pub store: SharedStore,
    /// The durable records (persons, bindings, consents, maintenance, audit, activity).
    pub records: records::SharedRecords,
    /// Outgoing HTTP (back-channel logout); redirects off.
    pub http: reqwest::Client,
    /// The clock every flow reads.
    pub clock: crate::clock::SharedClock,
}

impl AppState {
    /// The configuration in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.live.load().settings.clone()
    }

    /// Now, in Unix milliseconds.
    pub fn now(&self) -> u64 {
        self.clock.now_millis()
    }
}

/// The client for calls the broker makes to relying parties: no redirects (SSRF), short
/// timeouts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// Opens the store the configuration names; the embedded one is also returned as itself so
/// its sweeping job can run.
pub async fn open_store(
    settings: &Settings,
) -> Result<(SharedStore, Option<Arc<EmbeddedStore>>), StoreError> {
    match &settings.store {
        StoreConfig::Embedded { path } => {
            let path = settings
                .source
                .parent()
                .map(|dir| dir.join(path))
                .unwrap_or_else(|| path.into());
            let db = Arc::new(EmbeddedStore::open(&path)?);
            Ok((db.clone(), Some(db)))
        }
        StoreConfig::Redis {
            prefix, timeout_ms, ..
        } => {
            let url = settings.redis_url.as_deref().unwrap_or_default();
            let store =
                RedisStore::connect(url, prefix, Duration::from_millis(*timeout_ms)).await?;
            Ok((Arc::new(store), None))
        }
        StoreConfig::RedisSentinel {
            sentinels,
            master_name,
            username,
            db,
            prefix,
            timeout_ms,
            ..
        } => {
            let options = SentinelOptions {
                sentinels: sentinels.clone(),
                master_name: master_name.clone(),
                username: username.clone(),
                password: settings.redis_password.clone(),
                sentinel_password: settings.redis_sentinel_password.clone(),
                db: *db,
            };
            let store =
                RedisStore::connect_sentinel(&options, prefix, Duration::from_millis(*timeout_ms))
                    .await?;
            Ok((Arc::new(store), None))
        }
        StoreConfig::RedisCluster {
            nodes,
            username,
            prefix,
            timeout_ms,
            ..
        } => {
            let options = ClusterOptions {
                nodes: nodes.clone(),
                username: username.clone(),
                password: settings.redis_password.clone(),
            };
            let store =
                RedisStore::connect_cluster(&options, prefix, Duration::from_millis(*timeout_ms))
                    .await?;
            Ok((Arc::new(store), None))
        }
    }
}

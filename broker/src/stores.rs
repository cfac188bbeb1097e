//! Opening the store the configuration names (embedded, Redis single, Sentinel or Cluster).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Settings, StoreConfig};
use store::embedded::EmbeddedStore;
use store::redis::{ClusterOptions, RedisStore, SentinelOptions};
use store::{SharedStore, StoreError};

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

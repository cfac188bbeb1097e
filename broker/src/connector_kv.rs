//! The store as the connectors' shared state ([`connectors::kv::KeyValue`]): one-time codes,
//! attempt counters and rate limits of identity sources live in the same store as logins,
//! so every broker instance sees them. Keys get a `cx:` prefix of their own.

use std::time::Duration;

use connectors::kv::{Hit, KeyValue, KvError};

use store::{SharedStore, StoreError};

/// The broker's store, seen by connectors.
pub struct StoreKv(pub SharedStore);

fn key(k: &str) -> String {
    crate::keyspace::connector(k)
}

fn err(e: StoreError) -> KvError {
    KvError(e.to_string())
}

#[async_trait::async_trait]
impl KeyValue for StoreKv {
    async fn put(&self, k: &str, value: &[u8], ttl: Duration, now: u64) -> Result<(), KvError> {
        self.0
            .put(&key(k), value, Some(ttl), now)
            .await
            .map_err(err)
    }

    async fn put_new(
        &self,
        k: &str,
        value: &[u8],
        ttl: Duration,
        now: u64,
    ) -> Result<bool, KvError> {
        self.0
            .put_new(&key(k), value, Some(ttl), now)
            .await
            .map_err(err)
    }

    async fn get(&self, k: &str, now: u64) -> Result<Option<Vec<u8>>, KvError> {
        self.0.get(&key(k), now).await.map_err(err)
    }

    async fn get_many(&self, keys: &[&str], now: u64) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let keys: Vec<String> = keys.iter().map(|k| key(k)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.0.get_many(&keys, now).await.map_err(err)
    }

    async fn take(&self, k: &str, now: u64) -> Result<Option<Vec<u8>>, KvError> {
        self.0.take(&key(k), now).await.map_err(err)
    }

    async fn delete(&self, k: &str, now: u64) -> Result<bool, KvError> {
        self.0.delete(&key(k), now).await.map_err(err)
    }

    async fn hit(&self, k: &str, limit: u64, window: Duration, now: u64) -> Result<Hit, KvError> {
        let d = self
            .0
            .hit_rate_limit(&key(k), limit, window, now)
            .await
            .map_err(err)?;
        Ok(Hit {
            allowed: d.allowed,
            count: d.count,
            retry_after: d.retry_after,
        })
    }

    async fn hits(&self, k: &str, window: Duration, now: u64) -> Result<u64, KvError> {
        self.0.rate_count(&key(k), window, now).await.map_err(err)
    }
}

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use common::hash::KeyedHash;
    use connectors::otp::{Guard, PerDimension};

    use super::StoreKv;

    const MINUTE: u64 = 60_000;

    fn id_only(per_id: u64) -> PerDimension {
        PerDimension {
            per_id,
            per_phone: 0,
            per_address: 0,
        }
    }

    /// The guard on the broker's store, whose windows are aligned: a right answer is given
    /// back in the window its attempt was counted in, never in the next one.
    #[tokio::test]
    async fn a_success_is_given_back_in_its_attempts_window_only() {
        let dir = tempfile::tempdir().expect("dir");
        let store =
            store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).expect("store");
        let kv = StoreKv(Arc::new(store));
        let h = KeyedHash::new(b"k");
        let w = Duration::from_secs(60);
        let t0 = 1_000 * MINUTE; // the start of a window
        let g = Guard::new(&h, "t", &[("id", "ID1")]);
        for t in 0..4 {
            let right = g.attempt(&kv, "failed", id_only(2), w, t0 + t).await;
            right
                .expect("store")
                .expect("right answers never reach the limit")
                .succeeded(&kv)
                .await
                .expect("store");
        }
        for t in 4..6 {
            let wrong = g.attempt(&kv, "failed", id_only(2), w, t0 + t).await;
            assert!(wrong.expect("store").is_ok(), "two failures are allowed");
        }
        let third = g.attempt(&kv, "failed", id_only(2), w, t0 + 6).await;
        assert!(third.expect("store").is_err(), "the third failure is over");
        assert!(g.locked(&kv, t0 + 7).await.expect("store").is_some());

        // Counted in the last millisecond of a window, found right after it ended.
        let g = Guard::new(&h, "t", &[("id", "ID2")]);
        let late = g
            .attempt(&kv, "failed", id_only(2), w, t0 + MINUTE - 1)
            .await;
        late.expect("store")
            .expect("within the limit")
            .succeeded(&kv)
            .await
            .expect("store");
        // The next window starts from nothing: two failures, and the third is over.
        for t in 0..2 {
            let wrong = g
                .attempt(&kv, "failed", id_only(2), w, t0 + MINUTE + t)
                .await;
            assert!(wrong.expect("store").is_ok(), "failure {} of 2", t + 1);
        }
        let third = g
            .attempt(&kv, "failed", id_only(2), w, t0 + MINUTE + 2)
            .await;
        assert!(
            third.expect("store").is_err(),
            "the success of the last window is not given back in this one"
        );
    }
}

//! A store decorator that records the latency and failures of every operation
//! (`broker_store_seconds{op}`, `broker_store_errors_total{op}`).

use std::time::{Duration, Instant};

use super::{Claimed, Millis, RateDecision, Rotation, SharedStore, SingleUse, Store, StoreResult};

/// Wraps a store with metrics.
pub struct MeteredStore {
    inner: SharedStore,
}

impl MeteredStore {
    /// Wraps `inner`.
    pub fn new(inner: SharedStore) -> Self {
        MeteredStore { inner }
    }
}

thread_local! {
    /// `broker_store_seconds{op}` handles registered by this thread, by operation.
    static SECONDS: std::cell::RefCell<Vec<(&'static str, metrics::Histogram)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Records the time of one operation; the histogram of each operation is registered once
/// per thread, not looked up in the registry at every call.
fn record(op: &'static str, seconds: f64) {
    SECONDS.with(|cell| {
        let mut handles = cell.borrow_mut();
        match handles.iter().find(|(name, _)| *name == op) {
            Some((_, h)) => h.record(seconds),
            None => {
                let h = metrics::histogram!("broker_store_seconds", "op" => op);
                h.record(seconds);
                handles.push((op, h));
            }
        }
    });
}

async fn timed<T>(
    op: &'static str,
    fut: impl std::future::Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let started = Instant::now();
    let out = fut.await;
    record(op, started.elapsed().as_secs_f64());
    if out.is_err() {
        metrics::counter!("broker_store_errors_total", "op" => op).increment(1);
    }
    out
}

#[async_trait::async_trait]
impl Store for MeteredStore {
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<()> {
        timed("put", self.inner.put(key, value, ttl, now)).await
    }

    async fn put_many(
        &self,
        keys: &[&str],
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<()> {
        timed("put_many", self.inner.put_many(keys, value, ttl, now)).await
    }

    async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<bool> {
        timed("put_new", self.inner.put_new(key, value, ttl, now)).await
    }

    async fn get(&self, key: &str, now: Millis) -> StoreResult<Option<Vec<u8>>> {
        timed("get", self.inner.get(key, now)).await
    }

    async fn get_many(&self, keys: &[&str], now: Millis) -> StoreResult<Vec<Option<Vec<u8>>>> {
        timed("get_many", self.inner.get_many(keys, now)).await
    }

    async fn take(&self, key: &str, now: Millis) -> StoreResult<Option<Vec<u8>>> {
        timed("take", self.inner.take(key, now)).await
    }

    async fn swap(&self, key: &str, tombstone: &[u8], now: Millis) -> StoreResult<Option<Vec<u8>>> {
        timed("swap", self.inner.swap(key, tombstone, now)).await
    }

    async fn delete(&self, key: &str, now: Millis) -> StoreResult<bool> {
        timed("delete", self.inner.delete(key, now)).await
    }

    async fn rotate(
        &self,
        guard: &str,
        old: &str,
        tombstone: &[u8],
        new: &str,
        now: Millis,
    ) -> StoreResult<Rotation> {
        timed("rotate", self.inner.rotate(guard, old, tombstone, new, now)).await
    }

    async fn rotate_single_use(
        &self,
        guard: &str,
        old: &str,
        tombstone: &[u8],
        new: &str,
        once: SingleUse<'_>,
        now: Millis,
    ) -> StoreResult<Rotation> {
        timed(
            "rotate_single_use",
            self.inner
                .rotate_single_use(guard, old, tombstone, new, once, now),
        )
        .await
    }

    async fn hit_rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        timed(
            "hit_rate_limit",
            self.inner.hit_rate_limit(key, limit, window, now),
        )
        .await
    }

    async fn rate_count(&self, key: &str, window: Duration, now: Millis) -> StoreResult<u64> {
        timed("rate_count", self.inner.rate_count(key, window, now)).await
    }

    async fn add_member(
        &self,
        key: &str,
        member: &str,
        ttl: Duration,
        now: Millis,
    ) -> StoreResult<()> {
        timed("add_member", self.inner.add_member(key, member, ttl, now)).await
    }

    async fn members(&self, key: &str, now: Millis) -> StoreResult<Vec<String>> {
        timed("members", self.inner.members(key, now)).await
    }

    async fn enqueue(&self, queue: &str, id: &str, value: &[u8], due: Millis) -> StoreResult<()> {
        timed("enqueue", self.inner.enqueue(queue, id, value, due)).await
    }

    async fn claim_due(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
        now: Millis,
    ) -> StoreResult<Vec<Claimed>> {
        timed("claim_due", self.inner.claim_due(queue, max, lease, now)).await
    }

    async fn settle(
        &self,
        queue: &str,
        id: &str,
        lease_until: Millis,
        next: Option<(&[u8], Millis)>,
    ) -> StoreResult<bool> {
        timed("settle", self.inner.settle(queue, id, lease_until, next)).await
    }

    async fn keys_with_prefix(&self, prefix: &str, now: Millis) -> StoreResult<Vec<String>> {
        timed("keys_with_prefix", self.inner.keys_with_prefix(prefix, now)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        timed("ping", self.inner.ping()).await
    }
}

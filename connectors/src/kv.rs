//! Short-lived shared state for connectors: one-time codes, attempt counters, cooldowns and
//! rate limits. The broker hands every connector call a [`KeyValue`] backed by its store,
//! so every broker instance sees the same codes and counters (a code sent by one instance
//! is checked by another; a rate limit cannot be dodged by landing on another instance).
//!
//! Keys are plain strings made by the connectors; they must never hold personal data in
//! clear (use [`common::hash::KeyedHash`] of ID numbers, phone numbers and usernames).
//! Every check-and-set is one atomic method, never a read followed by a write. Time is a
//! parameter (Unix milliseconds), so expiry is testable without sleeping.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

/// Why the shared state cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("shared state unavailable: {0}")]
pub struct KvError(pub String);

/// What [`KeyValue::hit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Whether this hit is within the limit.
    pub allowed: bool,
    /// Hits counted in the current window, this one included.
    pub count: u64,
    /// When the current window ends, from `now`.
    pub retry_after: Duration,
}

/// Shared short-lived state, the same for every broker instance.
#[async_trait::async_trait]
pub trait KeyValue: Send + Sync {
    /// Writes a value with a lifetime, replacing any previous one.
    async fn put(&self, key: &str, value: &[u8], ttl: Duration, now: u64) -> Result<(), KvError>;

    /// Writes a value only if the key holds nothing live. Returns whether it was written.
    async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        now: u64,
    ) -> Result<bool, KvError>;

    /// Reads a live value.
    async fn get(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, KvError>;

    /// Reads several live values with one call of the store (one round trip), in the order
    /// of `keys`.
    async fn get_many(&self, keys: &[&str], now: u64) -> Result<Vec<Option<Vec<u8>>>, KvError>;

    /// Reads and deletes a live value in one atomic step.
    async fn take(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, KvError>;

    /// Deletes a key. Returns whether something live was deleted.
    async fn delete(&self, key: &str, now: u64) -> Result<bool, KvError>;

    /// Counts a hit against `key` in a fixed window and tells whether it is within `limit`.
    async fn hit(&self, key: &str, limit: u64, window: Duration, now: u64) -> Result<Hit, KvError>;

    /// The hits [`KeyValue::hit`] counted against `key` in the window that holds `now`,
    /// without counting one (0 when there were none).
    async fn hits(&self, key: &str, window: Duration, now: u64) -> Result<u64, KvError>;
}

impl fmt::Debug for dyn KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyValue")
    }
}

/// An in-memory [`KeyValue`] for unit tests and single-process tools. Not shared between
/// processes: the broker never uses it for citizens. Its [`KeyValue::hit`] window starts at
/// the first hit, where the broker's store aligns windows to multiples of their length
/// (the guard's behaviour at a window's end is tested on the store, in the broker).
#[derive(Default)]
pub struct MemoryKv {
    // key -> (value, expiry in Unix ms)
    entries: Mutex<HashMap<String, (Vec<u8>, u64)>>,
}

impl MemoryKv {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (Vec<u8>, u64)>) -> T) -> T {
        let mut guard = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }
}

fn until(ttl: Duration, now: u64) -> u64 {
    now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

#[async_trait::async_trait]
impl KeyValue for MemoryKv {
    async fn put(&self, key: &str, value: &[u8], ttl: Duration, now: u64) -> Result<(), KvError> {
        self.with(|m| m.insert(key.into(), (value.to_vec(), until(ttl, now))));
        Ok(())
    }

    async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        now: u64,
    ) -> Result<bool, KvError> {
        Ok(self.with(|m| match m.get(key) {
            Some((_, exp)) if *exp > now => false,
            _ => {
                m.insert(key.into(), (value.to_vec(), until(ttl, now)));
                true
            }
        }))
    }

    async fn get(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.with(|m| {
            m.get(key)
                .filter(|(_, exp)| *exp > now)
                .map(|(v, _)| v.clone())
        }))
    }

    async fn get_many(&self, keys: &[&str], now: u64) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key, now).await?);
        }
        Ok(values)
    }

    async fn take(&self, key: &str, now: u64) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.with(|m| m.remove(key).filter(|(_, exp)| *exp > now).map(|(v, _)| v)))
    }

    async fn delete(&self, key: &str, now: u64) -> Result<bool, KvError> {
        Ok(self.with(|m| m.remove(key).is_some_and(|(_, exp)| exp > now)))
    }

    async fn hit(&self, key: &str, limit: u64, window: Duration, now: u64) -> Result<Hit, KvError> {
        Ok(self.with(|m| {
            let entry = m
                .entry(key.into())
                .or_insert_with(|| (0u64.to_be_bytes().to_vec(), until(window, now)));
            if entry.1 <= now {
                *entry = (0u64.to_be_bytes().to_vec(), until(window, now));
            }
            let count = <[u8; 8]>::try_from(entry.0.as_slice())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
                .saturating_add(1);
            entry.0 = count.to_be_bytes().to_vec();
            Hit {
                allowed: count <= limit,
                count,
                retry_after: Duration::from_millis(entry.1.saturating_sub(now)),
            }
        }))
    }

    async fn hits(&self, key: &str, _window: Duration, now: u64) -> Result<u64, KvError> {
        Ok(self.with(|m| {
            m.get(key)
                .filter(|(_, exp)| *exp > now)
                .and_then(|(v, _)| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map_or(0, u64::from_be_bytes)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_kv_expires_and_counts() {
        let kv = MemoryKv::default();
        let ttl = Duration::from_secs(10);
        assert!(kv.put_new("a", b"1", ttl, 0).await.unwrap_or(false));
        assert!(!kv.put_new("a", b"2", ttl, 5_000).await.unwrap_or(true));
        assert!(kv.put_new("a", b"3", ttl, 10_000).await.unwrap_or(false));
        assert_eq!(
            kv.take("a", 10_001).await.ok().flatten(),
            Some(b"3".to_vec())
        );
        assert_eq!(kv.get("a", 10_001).await.ok().flatten(), None);
        for i in 1..=3 {
            let h = kv.hit("r", 2, ttl, 1_000).await.expect("hit");
            assert_eq!((h.count, h.allowed), (i, i <= 2));
            assert_eq!(h.retry_after, Duration::from_secs(10));
        }
        assert_eq!(
            kv.hits("r", ttl, 2_000).await.ok(),
            Some(3),
            "read, not counted"
        );
        assert_eq!(kv.hits("r", ttl, 2_000).await.ok(), Some(3));
        assert_eq!(kv.hits("never", ttl, 2_000).await.ok(), Some(0));
        let h = kv.hit("r", 2, ttl, 11_000).await.expect("hit");
        assert_eq!((h.count, h.allowed), (1, true), "a new window");
    }
}

//! One store for everything with a lifetime (login transactions, codes, sessions, refresh
//! tokens, replay caches, rate-limit counters). Durable records (persons, bindings, consents,
//! maintenance) live in the `records` crate.
//!
//! Two implementations pass the same conformance suite ([`conformance`]): [`embedded`]
//! (redb, a single node, survives restarts) and [`redis`] (several broker instances).
//! Every single-use or check-and-set operation is one atomic method here, never a read
//! followed by a write in the caller. Time is a parameter (`now`, Unix milliseconds) so
//! expiry is testable without sleeping.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod embedded;
pub mod metered;
pub mod redis;
pub mod writer_thread;

use std::sync::Arc;
use std::time::Duration;

/// Unix time in milliseconds.
pub type Millis = u64;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or timed out; the request gets a 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered something this code cannot read.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Result of [`Store::rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The old value was live; it is now replaced by the tombstone and the new key holds the
    /// old value with the old key's expiry. Carries the old value.
    Rotated(Vec<u8>),
    /// The old key held a tombstone already: the token was used before (replay).
    Reused(Vec<u8>),
    /// The old key does not exist or expired, or the guard key is gone (family revoked).
    Missing,
    /// [`Store::rotate_single_use`] only: its single-use marker was written before (a
    /// replayed request); nothing was written.
    Replayed,
}

/// The single-use marker of [`Store::rotate_single_use`].
#[derive(Debug, Clone, Copy)]
pub struct SingleUse<'a> {
    /// Its key.
    pub key: &'a str,
    /// How long it is kept.
    pub ttl: Duration,
}

/// What [`Store::hit_rate_limit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether this hit is within the limit.
    pub allowed: bool,
    /// Hits counted in the current window, this one included.
    pub count: u64,
    /// When the current window ends, from `now`.
    pub retry_after: Duration,
}

/// An item of a durable queue, claimed by [`Store::claim_due`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The item's id in its queue.
    pub id: String,
    /// The item as enqueued (or as last settled).
    pub value: Vec<u8>,
    /// When the claim ends (Unix ms): the item is due again then, for whoever claims it,
    /// should this claimer stop before settling it. It also identifies the claim for
    /// [`Store::settle`].
    pub lease_until: Millis,
}

/// The store interface. Keys are plain strings made by the callers; values are bytes
/// (JSON in practice). A `ttl` of `None` means the record is durable.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Writes a value, replacing any previous one.
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<()>;

    /// Writes the same value under each of `keys` with one lifetime, in one atomic step (a
    /// record and its index, say). On Redis Cluster the keys must share a `{hash-tag}`.
    async fn put_many(
        &self,
        keys: &[&str],
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<()>;

    /// Writes a value only if the key holds nothing live. Returns whether it was written.
    async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<bool>;

    /// Reads a live value.
    async fn get(&self, key: &str, now: Millis) -> StoreResult<Option<Vec<u8>>>;

    /// Reads several live values with one call (one round trip; on Redis Cluster one per
    /// node, and not atomic across them), in the order of `keys`. The keys need not share a
    /// hash tag.
    async fn get_many(&self, keys: &[&str], now: Millis) -> StoreResult<Vec<Option<Vec<u8>>>>;

    /// Reads and deletes a live value in one atomic step (single-use records).
    async fn take(&self, key: &str, now: Millis) -> StoreResult<Option<Vec<u8>>>;

    /// Replaces a live value with `tombstone`, keeping its expiry, and returns the old value
    /// in one atomic step. A missing or expired key stays missing and gives `None`.
    /// Used for authorization codes: the tombstone lets a second redemption be detected.
    async fn swap(&self, key: &str, tombstone: &[u8], now: Millis) -> StoreResult<Option<Vec<u8>>>;

    /// Deletes a key. Returns whether something live was deleted.
    async fn delete(&self, key: &str, now: Millis) -> StoreResult<bool>;

    /// Refresh-token rotation in one atomic step.
    ///
    /// - If `guard` holds a live value and `old` holds a live value that is not `tombstone`:
    ///   `old` becomes `tombstone` (keeping its expiry), and `new` is written with the old
    ///   value and the old key's expiry (the same absolute expiry; none if `old` had none),
    ///   so a refresh-token family keeps its absolute lifetime and the caller needs no extra
    ///   read. Returns [`Rotation::Rotated`] with the old value.
    /// - If `old` holds `tombstone`: returns [`Rotation::Reused`] with the tombstone and
    ///   changes nothing.
    /// - Otherwise (`guard` or `old` missing or expired): returns [`Rotation::Missing`] and
    ///   writes nothing.
    async fn rotate(
        &self,
        guard: &str,
        old: &str,
        tombstone: &[u8],
        new: &str,
        now: Millis,
    ) -> StoreResult<Rotation>;

    /// [`Store::rotate`] behind a single-use marker: `once` (a DPoP proof's `jti`, say) is
    /// written with its `ttl` if it holds nothing live, then the rotation runs; if it holds
    /// something already, returns [`Rotation::Replayed`] and writes nothing. The marker is
    /// used up whatever the rotation's outcome, as a separate `put_new` before it would.
    ///
    /// This default takes two steps (what a store whose keys live apart must do); a store
    /// that can, does both in one atomic step, and a request's round trip.
    async fn rotate_single_use(
        &self,
        guard: &str,
        old: &str,
        tombstone: &[u8],
        new: &str,
        once: SingleUse<'_>,
        now: Millis,
    ) -> StoreResult<Rotation> {
        rotate_in_two_steps(self, guard, old, tombstone, new, once, now).await
    }

    /// Counts a hit against `key` in a fixed window of `window` and tells whether it is
    /// within `limit` hits.
    async fn hit_rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        now: Millis,
    ) -> StoreResult<RateDecision>;

    /// The hits [`Store::hit_rate_limit`] counted against `key` in the window of `window`
    /// that holds `now`, without counting one (0 when there were none).
    async fn rate_count(&self, key: &str, window: Duration, now: Millis) -> StoreResult<u64>;

    /// Adds `member` to the set at `key` (created if missing) and sets the set's expiry to
    /// `now + ttl`, in one atomic step. Used to index what a session must revoke at logout.
    async fn add_member(
        &self,
        key: &str,
        member: &str,
        ttl: Duration,
        now: Millis,
    ) -> StoreResult<()>;

    /// The members of a live set (empty when missing).
    async fn members(&self, key: &str, now: Millis) -> StoreResult<Vec<String>>;

    /// Adds an item to the durable queue `queue`, due at `due` (Unix ms), replacing an item
    /// of the same id. Queue items have no expiry: they stay until [`Store::settle`]d.
    /// `queue` must not contain `{` or `}` (Redis keeps a queue under one hash tag).
    async fn enqueue(&self, queue: &str, id: &str, value: &[u8], due: Millis) -> StoreResult<()>;

    /// Claims up to `max` items of `queue` that are due at `now`, in one atomic step: each
    /// becomes due again only at `now + lease`, so of several claimers (several broker
    /// instances) only one holds an item at a time, and an item whose claimer stopped
    /// comes back once its lease ends.
    async fn claim_due(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
        now: Millis,
    ) -> StoreResult<Vec<Claimed>>;

    /// Ends a claim, if it still holds (the item's due time is still `lease_until`): with
    /// `next = Some((value, due))` the item is kept with a new value and due time (a retry),
    /// with `None` it is removed (done, or given up). Returns whether the claim held; a
    /// claim that lapsed and was taken by another claimer changes nothing.
    async fn settle(
        &self,
        queue: &str,
        id: &str,
        lease_until: Millis,
        next: Option<(&[u8], Millis)>,
    ) -> StoreResult<bool>;

    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// The live keys that start with `prefix`, for moving the durable records that earlier
    /// versions kept here into the records (`broker records move`). Not a snapshot; refused
    /// on Redis Cluster.
    async fn keys_with_prefix(&self, prefix: &str, now: Millis) -> StoreResult<Vec<String>>;
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// The counter of `key` in the fixed window of `window` that holds `now` (a stored format:
/// `{key}:{index of the window}`), and when that window ends (Unix ms).
pub fn rate_window(key: &str, window: Duration, now: Millis) -> (String, Millis) {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
    let index = now / window_ms;
    (
        format!("{key}:{index}"),
        index.saturating_add(1).saturating_mul(window_ms),
    )
}

/// Expiry time for a TTL, in Unix milliseconds.
pub fn expiry(ttl: Option<Duration>, now: Millis) -> Option<Millis> {
    ttl.map(|t| now.saturating_add(t.as_millis() as u64))
}

/// [`Store::rotate_single_use`] as two operations: the marker's `put_new`, then the rotation
/// (the default, and what a store does whose marker and family live apart).
pub async fn rotate_in_two_steps<S: Store + ?Sized>(
    store: &S,
    guard: &str,
    old: &str,
    tombstone: &[u8],
    new: &str,
    once: SingleUse<'_>,
    now: Millis,
) -> StoreResult<Rotation> {
    if !store.put_new(once.key, b"1", Some(once.ttl), now).await? {
        return Ok(Rotation::Replayed);
    }
    store.rotate(guard, old, tombstone, new, now).await
}

//! Single-node store on an embedded redb file.
//!
//! One table maps the key to `expiry (u64 big-endian, Unix millis, 0 = durable) ++ value`.
//! Durable queues live in a second table, keyed `queue \x1f id`, valued `due (u64
//! big-endian, Unix millis) ++ value`; every queue change commits durably.
//! Expired records stay in the file until [`EmbeddedStore::sweep`] removes them; every read
//! compares the expiry with `now`, so they are never returned meanwhile.
//!
//! Durability: a commit that only adds records with a TTL (or counts a rate-limit hit) uses
//! [`Durability::None`]: it is visible at once, survives a clean shutdown, and is only lost
//! on a crash before the next durable commit, which costs a re-login at worst. Everything
//! else commits with [`Durability::Immediate`]: durable records, and every commit that
//! consumes or revokes a live record (`take`, `swap`, `delete`, `rotate`), since losing
//! those on a crash would re-arm a used code or token. [`EmbeddedStore::sweep`] commits
//! durably too, which bounds how much a crash can lose to one sweep interval.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition};

use crate::writer_thread::WriterThread;

use super::{
    expiry, Claimed, Millis, RateDecision, Rotation, SingleUse, Store, StoreError, StoreResult,
};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const QUEUES: TableDefinition<&str, &[u8]> = TableDefinition::new("queues");

/// redb's page cache for the store file. Its default (1 GiB) let the cache grow with the file
/// under load (most of the broker's memory in the benchmark); the operating system's page
/// cache keeps the file's pages too, so a small one costs few reads.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Separates a queue's name from an item's id in [`QUEUES`] keys.
const QUEUE_SEP: char = '\u{1f}';

/// Length of the expiry prefix of every stored value.
const PREFIX: usize = 8;

/// The redb-backed store. Cheap to clone; all clones share one open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    /// The thread every write transaction runs on (see [`WriterThread`]).
    writer: WriterThread,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

/// How a write transaction ends.
enum Commit {
    /// Nothing changed: roll back, no disk write.
    Abort,
    /// Only TTL records were added: may be lost on a crash.
    Fast,
    /// Must be on disk before the caller sees the result.
    Durable,
}

/// Failure inside a blocking closure, turned into a [`StoreError`] with the operation name.
enum Fail {
    Db(redb::Error),
    Corrupt(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Fail {
            fn from(e: $t) -> Self {
                Fail::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl Fail {
    fn into_store_error(self, op: &str) -> StoreError {
        match self {
            Fail::Corrupt(msg) => StoreError::Corrupt(format!("redb {op}: {msg}")),
            Fail::Db(e) => match e {
                redb::Error::Corrupted(_)
                | redb::Error::UpgradeRequired(_)
                | redb::Error::TableTypeMismatch { .. }
                | redb::Error::TypeDefinitionChanged { .. }
                | redb::Error::TableIsMultimap(_)
                | redb::Error::TableIsNotMultimap(_) => {
                    StoreError::Corrupt(format!("redb {op}: {e}"))
                }
                // How redb reports a file that is not a redb database.
                redb::Error::Io(ref io) if io.kind() == std::io::ErrorKind::InvalidData => {
                    StoreError::Corrupt(format!("redb {op}: {e}"))
                }
                redb::Error::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                    "redb {op}: the database file is locked by another process"
                )),
                // I/O errors, a failed commit (the database then refuses writes until it is
                // reopened), closed database, poisoned lock, ...
                _ => StoreError::Unavailable(format!("redb {op}: {e}")),
            },
        }
    }
}

/// Splits a stored value into its expiry and payload.
fn decode(raw: &[u8]) -> Result<(Millis, &[u8]), Fail> {
    match raw.split_first_chunk::<PREFIX>() {
        Some((exp, value)) => Ok((u64::from_be_bytes(*exp), value)),
        None => Err(Fail::Corrupt(format!(
            "record of {} bytes is shorter than its expiry prefix",
            raw.len()
        ))),
    }
}

fn encode(expires: Millis, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX + value.len());
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn is_live(expires: Millis, now: Millis) -> bool {
    expires == 0 || now < expires
}

/// Stored expiry for a TTL; never 0, which would mean durable.
fn stored_expiry(ttl: Option<Duration>, now: Millis) -> Millis {
    expiry(ttl, now).map_or(0, |e| e.max(1))
}

/// The live payload of `key`, if any.
fn live_value(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    now: Millis,
) -> Result<Option<(Millis, Vec<u8>)>, Fail> {
    match table.get(key)? {
        Some(guard) => {
            let (expires, value) = decode(guard.value())?;
            Ok(is_live(expires, now).then(|| (expires, value.to_vec())))
        }
        None => Ok(None),
    }
}

/// A rate counter's value: its count, big-endian.
fn rate_counter(raw: &[u8]) -> Result<u64, Fail> {
    let bytes: [u8; 8] = raw
        .try_into()
        .map_err(|_| Fail::Corrupt(format!("rate counter of {} bytes", raw.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

impl EmbeddedStore {
    /// Opens (or creates) the database file, creating its parent directory if missing.
    /// Blocking; call it at startup, before serving.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create store directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let open = || -> Result<Database, Fail> {
            let db = redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(path)?;
            // Create the table up front so read transactions can always open it.
            let txn = db.begin_write()?;
            txn.open_table(RECORDS)?;
            txn.open_table(QUEUES)?;
            txn.commit()?;
            Ok(db)
        };
        let db = open().map_err(|f| f.into_store_error(&format!("open {}", path.display())))?;
        let writer = WriterThread::start("store-writer")
            .map_err(|e| StoreError::Unavailable(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            db: Arc::new(db),
            writer,
        })
    }

    /// Deletes every expired record and returns how many. The commit is durable, which also
    /// makes earlier fast commits durable, so run it periodically.
    ///
    /// Blocking (it scans the whole table): from async code use [`Self::sweep_async`].
    pub fn sweep(&self, now: Millis) -> StoreResult<usize> {
        sweep_db(&self.db, now).map_err(|f| f.into_store_error("sweep"))
    }

    /// [`Self::sweep`] on the writer thread.
    pub async fn sweep_async(&self, now: Millis) -> StoreResult<usize> {
        let db = Arc::clone(&self.db);
        self.writer
            .run(move || sweep_db(&db, now))
            .await
            .ok_or_else(|| writer_gone("sweep"))?
            .map_err(|f| f.into_store_error("sweep"))
    }

    /// Runs `f` in one read transaction on the blocking pool.
    async fn read<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, Fail>
            + Send
            + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || -> Result<T, Fail> {
            let txn = db.begin_read()?;
            let table = txn.open_table(RECORDS)?;
            f(&table)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("redb {op} task failed: {e}")))?
        .map_err(|f| f.into_store_error(op))
    }

    /// Runs `f` in one write transaction on the writer thread and ends it as `f` says.
    async fn write<T, F>(&self, op: &'static str, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Table<&'static str, &'static [u8]>) -> Result<(T, Commit), Fail>
            + Send
            + 'static,
    {
        self.write_in(RECORDS, op, f).await
    }

    /// [`Self::write`] on another table.
    async fn write_in<T, F>(
        &self,
        table: TableDefinition<'static, &'static str, &'static [u8]>,
        op: &'static str,
        f: F,
    ) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Table<&'static str, &'static [u8]>) -> Result<(T, Commit), Fail>
            + Send
            + 'static,
    {
        let db = Arc::clone(&self.db);
        let run = move || -> Result<T, Fail> {
            let mut txn = db.begin_write()?;
            let (out, commit) = {
                let mut table = txn.open_table(table)?;
                f(&mut table)?
            };
            match commit {
                Commit::Abort => txn.abort()?,
                Commit::Fast => {
                    txn.set_durability(Durability::None)?;
                    txn.commit()?;
                }
                Commit::Durable => txn.commit()?,
            }
            Ok(out)
        };
        self.writer
            .run(run)
            .await
            .ok_or_else(|| writer_gone(op))?
            .map_err(|f| f.into_store_error(op))
    }
}

/// The error of a write whose job panicked or whose thread is gone.
fn writer_gone(op: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "redb {op}: the write panicked or the writer thread ended"
    ))
}

fn sweep_db(db: &Database, now: Millis) -> Result<usize, Fail> {
    let txn = db.begin_write()?;
    let mut removed = 0usize;
    {
        let mut table = txn.open_table(RECORDS)?;
        table.retain(|_, raw| {
            // Keep undecodable records: reads report them as corrupt instead of losing them.
            let keep = decode(raw).map_or(true, |(expires, _)| is_live(expires, now));
            if !keep {
                removed += 1;
            }
            keep
        })?;
    }
    txn.commit()?;
    Ok(removed)
}

/// The [`QUEUES`] key of an item (with an empty id: the start of the queue's range).
fn queue_key(queue: &str, id: &str) -> String {
    format!("{queue}{QUEUE_SEP}{id}")
}

/// [`Store::rotate`] inside a write transaction; `keys`: guard, old, new. Writes only when
/// it answers [`Rotation::Rotated`].
fn rotate_in(
    t: &mut Table<&'static str, &'static [u8]>,
    [guard, old, new]: &[String; 3],
    tombstone: &[u8],
    now: Millis,
) -> Result<Rotation, Fail> {
    if live_value(t, guard, now)?.is_none() {
        return Ok(Rotation::Missing);
    }
    let Some((expires, value)) = live_value(t, old, now)? else {
        return Ok(Rotation::Missing);
    };
    if value == tombstone {
        return Ok(Rotation::Reused(value));
    }
    t.insert(old.as_str(), encode(expires, tombstone).as_slice())?;
    // The new key inherits the old value and its absolute expiry (0 stays durable).
    t.insert(new.as_str(), encode(expires, &value).as_slice())?;
    Ok(Rotation::Rotated(value))
}

/// Commit level for writing a record with this TTL.
fn commit_for(ttl: Option<Duration>) -> Commit {
    if ttl.is_some() {
        Commit::Fast
    } else {
        Commit::Durable
    }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<()> {
        let key = key.to_owned();
        let raw = encode(stored_expiry(ttl, now), value);
        self.write("put", move |t| {
            t.insert(key.as_str(), raw.as_slice())?;
            Ok(((), commit_for(ttl)))
        })
        .await
    }

    async fn put_many(
        &self,
        keys: &[&str],
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<()> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        let raw = encode(stored_expiry(ttl, now), value);
        self.write("put_many", move |t| {
            for key in &keys {
                t.insert(key.as_str(), raw.as_slice())?;
            }
            Ok(((), commit_for(ttl)))
        })
        .await
    }

    async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        now: Millis,
    ) -> StoreResult<bool> {
        let key = key.to_owned();
        let raw = encode(stored_expiry(ttl, now), value);
        self.write("put_new", move |t| {
            if live_value(t, &key, now)?.is_some() {
                return Ok((false, Commit::Abort));
            }
            t.insert(key.as_str(), raw.as_slice())?;
            Ok((true, commit_for(ttl)))
        })
        .await
    }

    async fn get(&self, key: &str, now: Millis) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(
            "get",
            move |t| Ok(live_value(t, &key, now)?.map(|(_, v)| v)),
        )
        .await
    }

    async fn get_many(&self, keys: &[&str], now: Millis) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        self.read("get_many", move |t| {
            keys.iter()
                .map(|key| Ok(live_value(t, key, now)?.map(|(_, v)| v)))
                .collect()
        })
        .await
    }

    async fn take(&self, key: &str, now: Millis) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.write("take", move |t| match live_value(t, &key, now)? {
            Some((_, value)) => {
                t.remove(key.as_str())?;
                Ok((Some(value), Commit::Durable))
            }
            None => Ok((None, Commit::Abort)),
        })
        .await
    }

    async fn swap(&self, key: &str, tombstone: &[u8], now: Millis) -> StoreResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        let tombstone = tombstone.to_vec();
        self.write("swap", move |t| match live_value(t, &key, now)? {
            Some((expires, old)) => {
                t.insert(key.as_str(), encode(expires, &tombstone).as_slice())?;
                Ok((Some(old), Commit::Durable))
            }
            None => Ok((None, Commit::Abort)),
        })
        .await
    }

    async fn delete(&self, key: &str, now: Millis) -> StoreResult<bool> {
        let key = key.to_owned();
        self.write("delete", move |t| {
            let was_live = match t.remove(key.as_str())? {
                Some(guard) => {
                    let (expires, _) = decode(guard.value())?;
                    Some(is_live(expires, now))
                }
                None => None,
            };
            Ok(match was_live {
                Some(true) => (true, Commit::Durable),
                // Dropping an already expired record: losing that on a crash is harmless.
                Some(false) => (false, Commit::Fast),
                None => (false, Commit::Abort),
            })
        })
        .await
    }

    async fn rotate(
        &self,
        guard: &str,
        old: &str,
        tombstone: &[u8],
        new: &str,
        now: Millis,
    ) -> StoreResult<Rotation> {
        let keys = [guard.to_owned(), old.to_owned(), new.to_owned()];
        let tombstone = tombstone.to_vec();
        self.write("rotate", move |t| {
            let rotation = rotate_in(t, &keys, &tombstone, now)?;
            let commit = match rotation {
                Rotation::Rotated(_) => Commit::Durable,
                _ => Commit::Abort,
            };
            Ok((rotation, commit))
        })
        .await
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
        let keys = [guard.to_owned(), old.to_owned(), new.to_owned()];
        let once_ttl = once.ttl;
        let once = once.key.to_owned();
        let once_raw = encode(stored_expiry(Some(once_ttl), now), b"1");
        let tombstone = tombstone.to_vec();
        self.write("rotate_single_use", move |t| {
            if live_value(t, &once, now)?.is_some() {
                return Ok((Rotation::Replayed, Commit::Abort));
            }
            t.insert(once.as_str(), once_raw.as_slice())?;
            let rotation = rotate_in(t, &keys, &tombstone, now)?;
            // The marker is used up whatever follows; only a rotation needs the durable commit.
            let commit = match rotation {
                Rotation::Rotated(_) => Commit::Durable,
                _ => commit_for(Some(once_ttl)),
            };
            Ok((rotation, commit))
        })
        .await
    }

    async fn hit_rate_limit(
        &self,
        key: &str,
        limit: u64,
        window: Duration,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        let (key, window_end) = crate::rate_window(key, window, now);
        self.write("hit_rate_limit", move |t| {
            let previous = match live_value(t, &key, now)? {
                Some((_, raw)) => rate_counter(&raw)?,
                None => 0,
            };
            let count = previous.saturating_add(1);
            t.insert(
                key.as_str(),
                encode(window_end, &count.to_be_bytes()).as_slice(),
            )?;
            let decision = RateDecision {
                allowed: count <= limit,
                count,
                retry_after: Duration::from_millis(window_end.saturating_sub(now)),
            };
            Ok((decision, Commit::Fast))
        })
        .await
    }

    async fn rate_count(&self, key: &str, window: Duration, now: Millis) -> StoreResult<u64> {
        let (key, _) = crate::rate_window(key, window, now);
        self.read("rate_count", move |t| match live_value(t, &key, now)? {
            Some((_, raw)) => rate_counter(&raw),
            None => Ok(0),
        })
        .await
    }

    async fn add_member(
        &self,
        key: &str,
        member: &str,
        ttl: Duration,
        now: Millis,
    ) -> StoreResult<()> {
        let key = key.to_owned();
        let member = member.to_owned();
        let expires = stored_expiry(Some(ttl), now);
        self.write("add_member", move |t| {
            let mut set: Vec<String> = match live_value(t, &key, now)? {
                Some((_, raw)) => serde_json::from_slice(&raw)
                    .map_err(|e| Fail::Corrupt(format!("set is not a JSON list: {e}")))?,
                None => Vec::new(),
            };
            if !set.contains(&member) {
                set.push(member);
            }
            let raw = serde_json::to_vec(&set).map_err(|e| Fail::Corrupt(e.to_string()))?;
            t.insert(key.as_str(), encode(expires, &raw).as_slice())?;
            // What a logout must revoke is worth an fsync.
            Ok(((), Commit::Durable))
        })
        .await
    }

    async fn members(&self, key: &str, now: Millis) -> StoreResult<Vec<String>> {
        let key = key.to_owned();
        self.read("members", move |t| match live_value(t, &key, now)? {
            Some((_, raw)) => serde_json::from_slice(&raw)
                .map_err(|e| Fail::Corrupt(format!("set is not a JSON list: {e}"))),
            None => Ok(Vec::new()),
        })
        .await
    }

    async fn enqueue(&self, queue: &str, id: &str, value: &[u8], due: Millis) -> StoreResult<()> {
        let key = queue_key(queue, id);
        let raw = encode(due, value);
        self.write_in(QUEUES, "enqueue", move |t| {
            t.insert(key.as_str(), raw.as_slice())?;
            Ok(((), Commit::Durable))
        })
        .await
    }

    async fn claim_due(
        &self,
        queue: &str,
        max: usize,
        lease: Duration,
        now: Millis,
    ) -> StoreResult<Vec<Claimed>> {
        let start = queue_key(queue, "");
        let lease_until = expiry(Some(lease), now).unwrap_or(now);
        self.write_in(QUEUES, "claim_due", move |t| {
            let mut due = Vec::new();
            for entry in t.range(start.as_str()..)? {
                let (key, raw) = entry?;
                let Some(id) = key.value().strip_prefix(start.as_str()) else {
                    break;
                };
                if due.len() >= max {
                    break;
                }
                let (at, value) = decode(raw.value())?;
                if at <= now {
                    due.push((id.to_owned(), value.to_vec()));
                }
            }
            if due.is_empty() {
                return Ok((Vec::new(), Commit::Abort));
            }
            let mut claimed = Vec::with_capacity(due.len());
            for (id, value) in due {
                let key = format!("{start}{id}");
                t.insert(key.as_str(), encode(lease_until, &value).as_slice())?;
                claimed.push(Claimed {
                    id,
                    value,
                    lease_until,
                });
            }
            Ok((claimed, Commit::Durable))
        })
        .await
    }

    async fn settle(
        &self,
        queue: &str,
        id: &str,
        lease_until: Millis,
        next: Option<(&[u8], Millis)>,
    ) -> StoreResult<bool> {
        let key = queue_key(queue, id);
        let next = next.map(|(value, due)| encode(due, value));
        self.write_in(QUEUES, "settle", move |t| {
            let held = match t.get(key.as_str())? {
                Some(raw) => decode(raw.value())?.0 == lease_until,
                None => false,
            };
            if !held {
                return Ok((false, Commit::Abort));
            }
            match next {
                Some(raw) => t.insert(key.as_str(), raw.as_slice())?,
                None => t.remove(key.as_str())?,
            };
            Ok((true, Commit::Durable))
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read("ping", |_| Ok(())).await
    }

    async fn keys_with_prefix(&self, prefix: &str, now: Millis) -> StoreResult<Vec<String>> {
        let prefix = prefix.to_owned();
        self.read("keys_with_prefix", move |t| {
            let mut out = Vec::new();
            for item in t.range(prefix.as_str()..)? {
                let (k, v) = item?;
                if !k.value().starts_with(prefix.as_str()) {
                    break;
                }
                let (expires, _) = decode(v.value())?;
                if is_live(expires, now) {
                    out.push(k.value().to_string());
                }
            }
            Ok(out)
        })
        .await
    }
}

//! The records in one redb file (a single node). Every change set is one write transaction,
//! committed durably, so it holds the same guarantees as PostgreSQL's transactions: the
//! index tables (`bindings`, `ways_in`) say which person holds a number or a way in, and a
//! commit that would give one to a second person, or write a person at a stale version, is
//! rolled back whole.
//!
//! Sign-ins ([`Records::record_activity`], one per code issued, so one per login) are
//! committed in groups ([`crate::group_commit`]): redb has one writer at a time and each
//! durable commit waits for `fdatasync`, so concurrent logins share one.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use store::writer_thread::WriterThread;

use crate::group_commit::GroupCommit;
use crate::{
    Activity, AuditQuery, AuditRow, Binding, Changes, Commit, ConfigVersion, Consent, Entry,
    ExportSink, IdStatus, InstanceReport, Millis, Person, Records, RecordsError, RecordsResult,
    ReviewItem, Versioned, INSTANCE_FORGOTTEN_AFTER_MS,
};

/// redb's page cache for the records file. Its default (1 GiB) let the cache grow with the file
/// under load (most of the broker's memory in the benchmark); the operating system's page
/// cache keeps the file's pages too, so a small one costs few reads.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The schema version of the file this code writes.
pub const SCHEMA_VERSION: u64 = 1;

const PERSONS: TableDefinition<&str, &[u8]> = TableDefinition::new("persons");
const BINDINGS: TableDefinition<&str, &str> = TableDefinition::new("bindings");
const WAYS: TableDefinition<&str, &str> = TableDefinition::new("ways_in");
const CONSENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("consents");
const SETTINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("settings");
const AUDIT: TableDefinition<(&str, u64, &str), &[u8]> = TableDefinition::new("audit");
/// The audit rows newest last: (`at`, `id`, `reference`) -> (`actor`, `event`), so the
/// console's recent audit reads from the end instead of walking every row, and skips rows of
/// other actors or events without reading them.
const AUDIT_RECENT: TableDefinition<(u64, &str, &str), (&str, &str)> =
    TableDefinition::new("audit_recent");
const ACTIVITY: TableDefinition<(&str, u64, &str), &[u8]> = TableDefinition::new("activity");
const REVIEWS: TableDefinition<&str, &[u8]> = TableDefinition::new("reviews");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CONFIG: TableDefinition<u64, &[u8]> = TableDefinition::new("config_versions");
const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("config_instances");

/// Failure inside a blocking closure.
enum Fail {
    Db(redb::Error),
    Corrupt(String),
    /// The receiver of an export went away (its sink failed; that error is the answer).
    Stopped,
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
    redb::CommitError
);

impl From<serde_json::Error> for Fail {
    fn from(e: serde_json::Error) -> Self {
        Fail::Corrupt(e.to_string())
    }
}

impl Fail {
    fn into_error(self, op: &str) -> RecordsError {
        match self {
            Fail::Corrupt(msg) => RecordsError::Corrupt(format!("redb {op}: {msg}")),
            Fail::Stopped => RecordsError::Unavailable(format!("redb {op}: stopped")),
            Fail::Db(e @ (redb::Error::Corrupted(_) | redb::Error::UpgradeRequired(_))) => {
                RecordsError::Corrupt(format!("redb {op}: {e}"))
            }
            Fail::Db(redb::Error::DatabaseAlreadyOpen) => RecordsError::Unavailable(format!(
                "redb {op}: the records file is locked by another process"
            )),
            Fail::Db(e) => RecordsError::Unavailable(format!("redb {op}: {e}")),
        }
    }
}

/// The redb-backed records. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedRecords {
    db: Arc<Database>,
    /// Sign-ins waiting for the next group commit.
    sign_ins: GroupCommit<Activity>,
    /// Write transactions committed since the file was opened.
    commits: Arc<AtomicU64>,
    /// The thread every write transaction runs on (see [`WriterThread`]).
    writer: WriterThread,
}

impl std::fmt::Debug for EmbeddedRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedRecords").finish_non_exhaustive()
    }
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Fail> {
    Ok(serde_json::from_slice(bytes)?)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Fail> {
    Ok(serde_json::to_vec(value)?)
}

impl EmbeddedRecords {
    /// Opens (or creates) the records file, creating its directory if missing. Refuses a file
    /// written by a newer schema. Blocking; call it at startup.
    pub fn open(path: &Path) -> RecordsResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                RecordsError::Unavailable(format!(
                    "cannot create records directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let open = || -> Result<Result<Database, u64>, Fail> {
            let db = redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(path)?;
            let txn = db.begin_write()?;
            let found = {
                let mut meta = txn.open_table(META)?;
                let found = meta.get("schema")?.map(|v| v.value());
                if found.is_none() {
                    meta.insert("schema", SCHEMA_VERSION)?;
                }
                found
            };
            txn.open_table(PERSONS)?;
            txn.open_table(BINDINGS)?;
            txn.open_table(WAYS)?;
            txn.open_table(CONSENTS)?;
            txn.open_table(SETTINGS)?;
            txn.open_table(AUDIT)?;
            txn.open_table(ACTIVITY)?;
            txn.open_table(REVIEWS)?;
            // Tables added later are created when missing: they change no earlier one.
            txn.open_table(CONFIG)?;
            txn.open_table(INSTANCES)?;
            // Only in a file of this schema (a newer one is refused below, untouched).
            if found.is_none_or(|v| v == SCHEMA_VERSION) {
                index_audit_rows(&txn)?;
            }
            txn.commit()?;
            Ok(match found {
                Some(v) if v != SCHEMA_VERSION => Err(v),
                _ => Ok(db),
            })
        };
        match open().map_err(|f| f.into_error(&format!("open {}", path.display())))? {
            Ok(db) => Ok(Self {
                db: Arc::new(db),
                sign_ins: GroupCommit::default(),
                commits: Arc::default(),
                writer: WriterThread::start("records-writer").map_err(|e| {
                    RecordsError::Unavailable(format!("cannot start the records writer: {e}"))
                })?,
            }),
            Err(found) => Err(RecordsError::Schema(format!(
                "{} has schema version {found}; this broker knows version {SCHEMA_VERSION}",
                path.display()
            ))),
        }
    }

    /// Write transactions committed through this handle (and its clones) since the file was
    /// opened: what a login costs in durable commits (tests and the benchmark count them).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// A point read (a few B-tree lookups, mostly in redb's cache) on the caller's thread:
    /// cheaper than the hand-off to a blocking thread and back, and it starts none of the
    /// blocking pool's threads (each with an allocator heap of its own) that a burst of
    /// logins would otherwise start (issue #17: 40 of them doubled the benchmark's peak
    /// memory). Scans ([`Self::read`]) stay on blocking threads, and commits
    /// ([`Self::write`], `fdatasync`) run on the writer thread.
    fn lookup<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, Fail>,
    ) -> RecordsResult<T> {
        self.db
            .begin_read()
            .map_err(Fail::from)
            .and_then(|txn| f(&txn))
            .map_err(|f| f.into_error(op))
    }

    /// A read that may walk a table, on a blocking thread.
    async fn read<T, F>(&self, op: &'static str, f: F) -> RecordsResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&redb::ReadTransaction) -> Result<T, Fail> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || -> Result<T, Fail> {
            let txn = db.begin_read()?;
            f(&txn)
        })
        .await
        .map_err(|e| RecordsError::Unavailable(format!("redb {op} task failed: {e}")))?
        .map_err(|f| f.into_error(op))
    }

    /// Runs `f` in one write transaction on the writer thread, committed (durably) when it
    /// returns `Ok((true, _))` and rolled back otherwise.
    async fn write<T, F>(&self, op: &'static str, f: F) -> RecordsResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<(bool, T), Fail> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let commits = Arc::clone(&self.commits);
        let run = move || -> Result<T, Fail> {
            let txn = db.begin_write()?;
            let (keep, out) = f(&txn)?;
            if keep {
                txn.commit()?;
                commits.fetch_add(1, Ordering::Relaxed);
            } else {
                txn.abort()?;
            }
            Ok(out)
        };
        match self.writer.run(run).await {
            Some(result) => result.map_err(|f| f.into_error(op)),
            None => Err(RecordsError::Unavailable(format!(
                "redb {op}: the write panicked or the writer thread ended"
            ))),
        }
    }
}

fn read_person(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &str,
) -> Result<Option<Person>, Fail> {
    match table.get(id)? {
        Some(v) => Ok(Some(json(v.value())?)),
        None => Ok(None),
    }
}

/// Applies a change set inside `txn`; `false` when a precondition fails.
fn apply(txn: &WriteTransaction, changes: &Changes) -> Result<bool, Fail> {
    let mut persons = txn.open_table(PERSONS)?;
    let mut bindings = txn.open_table(BINDINGS)?;
    let mut ways = txn.open_table(WAYS)?;
    // First every version is checked and every old index entry of the persons written is
    // removed, so a number moving between two persons of one change set does not conflict
    // with itself.
    for p in &changes.persons {
        let current = read_person(&persons, &p.id)?;
        if current.as_ref().map_or(0, |c| c.version) != p.version {
            return Ok(false);
        }
        if let Some(old) = current {
            for c in old
                .citizen_ids
                .iter()
                .filter(|c| c.status == IdStatus::Active)
            {
                let owned = bindings.get(c.key.as_str())?.map(|v| v.value() == old.id);
                if owned == Some(true) {
                    bindings.remove(c.key.as_str())?;
                }
            }
            for w in &old.ways_in {
                let owned = ways.get(w.key.as_str())?.map(|v| v.value() == old.id);
                if owned == Some(true) {
                    ways.remove(w.key.as_str())?;
                }
            }
        }
    }
    for p in &changes.persons {
        for c in p
            .citizen_ids
            .iter()
            .filter(|c| c.status == IdStatus::Active)
        {
            if bindings
                .get(c.key.as_str())?
                .is_some_and(|v| v.value() != p.id)
            {
                return Ok(false);
            }
            bindings.insert(c.key.as_str(), p.id.as_str())?;
        }
        for w in &p.ways_in {
            if ways.get(w.key.as_str())?.is_some_and(|v| v.value() != p.id) {
                return Ok(false);
            }
            ways.insert(w.key.as_str(), p.id.as_str())?;
        }
        let mut stored = p.clone();
        stored.version = p.version + 1;
        persons.insert(p.id.as_str(), to_json(&stored)?.as_slice())?;
    }
    let mut reviews = txn.open_table(REVIEWS)?;
    for item in &changes.open_reviews {
        let existing: Option<ReviewItem> = match reviews.get(item.id.as_str())? {
            Some(v) => Some(json(v.value())?),
            None => None,
        };
        if existing.is_none_or(|e| e.closed.is_some()) {
            reviews.insert(item.id.as_str(), to_json(item)?.as_slice())?;
        }
    }
    for (id, closed) in &changes.close_reviews {
        let existing: Option<ReviewItem> = match reviews.get(id.as_str())? {
            Some(v) => Some(json(v.value())?),
            None => None,
        };
        match existing {
            Some(mut item) if item.closed.is_none() => {
                item.closed = Some(closed.clone());
                reviews.insert(id.as_str(), to_json(&item)?.as_slice())?;
            }
            _ => return Ok(false),
        }
    }
    insert_audit(txn, &changes.audit)?;
    Ok(true)
}

fn insert_audit(txn: &WriteTransaction, rows: &[AuditRow]) -> Result<(), Fail> {
    let mut audit = txn.open_table(AUDIT)?;
    let mut recent = txn.open_table(AUDIT_RECENT)?;
    for row in rows {
        audit.insert(
            (row.reference.as_str(), row.at, row.id.as_str()),
            to_json(row)?.as_slice(),
        )?;
        recent.insert(
            (row.at, row.id.as_str(), row.reference.as_str()),
            (row.actor.as_str(), row.event.as_str()),
        )?;
    }
    Ok(())
}

/// Fills [`AUDIT_RECENT`] in a file written before it existed (once: afterwards every
/// audit row is written to both tables in one transaction, so their sizes agree).
fn index_audit_rows(txn: &WriteTransaction) -> Result<(), Fail> {
    let audit = txn.open_table(AUDIT)?;
    let mut recent = txn.open_table(AUDIT_RECENT)?;
    if recent.len()? == audit.len()? {
        return Ok(());
    }
    for item in audit.iter()? {
        let (key, v) = item?;
        let (reference, at, id) = key.value();
        let row: AuditRow = json(v.value())?;
        recent.insert(
            (at, id, reference),
            (row.actor.as_str(), row.event.as_str()),
        )?;
    }
    Ok(())
}

/// Whether any durable record exists (import refuses such a target unless forced).
fn holds_records(txn: &WriteTransaction) -> Result<bool, Fail> {
    Ok(!txn.open_table(PERSONS)?.is_empty()?
        || !txn.open_table(CONSENTS)?.is_empty()?
        || !txn.open_table(SETTINGS)?.is_empty()?
        || !txn.open_table(AUDIT)?.is_empty()?
        || !txn.open_table(CONFIG)?.is_empty()?)
}

#[async_trait::async_trait]
impl Records for EmbeddedRecords {
    async fn person(&self, id: &str) -> RecordsResult<Option<Person>> {
        let id = id.to_string();
        self.lookup("person", |txn| read_person(&txn.open_table(PERSONS)?, &id))
    }

    async fn binding(&self, key: &str) -> RecordsResult<Option<Binding>> {
        let key = key.to_string();
        self.lookup("binding", |txn| {
            let Some(owner) = txn.open_table(BINDINGS)?.get(key.as_str())? else {
                return Ok(None);
            };
            let person = read_person(&txn.open_table(PERSONS)?, owner.value())?;
            Ok(person.and_then(|p| p.binding(&key)))
        })
    }

    async fn way_in(&self, key: &str) -> RecordsResult<Option<String>> {
        let key = key.to_string();
        self.lookup("way_in", |txn| {
            Ok(txn
                .open_table(WAYS)?
                .get(key.as_str())?
                .map(|v| v.value().to_string()))
        })
    }

    async fn person_by_way_in(&self, key: &str) -> RecordsResult<Option<Person>> {
        let key = key.to_string();
        self.lookup("person_by_way_in", |txn| {
            match txn.open_table(WAYS)?.get(key.as_str())? {
                Some(id) => read_person(&txn.open_table(PERSONS)?, id.value()),
                None => Ok(None),
            }
        })
    }

    async fn commit(&self, changes: Changes) -> RecordsResult<Commit> {
        if changes.is_empty() {
            return Ok(Commit::Done);
        }
        self.write("commit", move |txn| {
            let done = apply(txn, &changes)?;
            Ok((done, if done { Commit::Done } else { Commit::Conflict }))
        })
        .await
    }

    async fn consent(&self, person: &str, client: &str) -> RecordsResult<Option<Vec<String>>> {
        let (person, client) = (person.to_string(), client.to_string());
        self.lookup("consent", |txn| {
            match txn
                .open_table(CONSENTS)?
                .get((person.as_str(), client.as_str()))?
            {
                Some(v) => Ok(Some(json::<Consent>(v.value())?.scopes)),
                None => Ok(None),
            }
        })
    }

    async fn put_consent(
        &self,
        person: &str,
        client: &str,
        scopes: &[String],
        now: Millis,
    ) -> RecordsResult<()> {
        let consent = Consent {
            person: person.into(),
            client: client.into(),
            scopes: scopes.to_vec(),
            at: now,
        };
        self.write("put_consent", move |txn| {
            txn.open_table(CONSENTS)?.insert(
                (consent.person.as_str(), consent.client.as_str()),
                to_json(&consent)?.as_slice(),
            )?;
            Ok((true, ()))
        })
        .await
    }

    async fn setting(&self, name: &str) -> RecordsResult<Versioned> {
        let name = name.to_string();
        self.lookup("setting", |txn| {
            match txn.open_table(SETTINGS)?.get(name.as_str())? {
                Some(v) => json(v.value()),
                None => Ok(Versioned {
                    version: 0,
                    value: serde_json::Value::Null,
                }),
            }
        })
    }

    async fn set_setting(
        &self,
        name: &str,
        expected: u64,
        value: &serde_json::Value,
    ) -> RecordsResult<bool> {
        let (name, value) = (name.to_string(), value.clone());
        self.write("set_setting", move |txn| {
            let mut table = txn.open_table(SETTINGS)?;
            let current = match table.get(name.as_str())? {
                Some(v) => json::<Versioned>(v.value())?.version,
                None => 0,
            };
            if current != expected {
                return Ok((false, false));
            }
            let next = Versioned {
                version: expected + 1,
                value,
            };
            table.insert(name.as_str(), to_json(&next)?.as_slice())?;
            Ok((true, true))
        })
        .await
    }

    async fn audit(&self, rows: &[AuditRow]) -> RecordsResult<()> {
        let rows = rows.to_vec();
        self.write("audit", move |txn| {
            insert_audit(txn, &rows)?;
            Ok((true, ()))
        })
        .await
    }

    async fn audit_of(&self, reference: &str) -> RecordsResult<Vec<AuditRow>> {
        let reference = reference.to_string();
        self.read("audit_of", move |txn| {
            let table = txn.open_table(AUDIT)?;
            let r = reference.as_str();
            let mut out = Vec::new();
            for item in table.range((r, 0, "")..=(r, u64::MAX, "\u{10ffff}"))? {
                let (_, v) = item?;
                out.push(json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn record_activity(&self, activity: &Activity) -> RecordsResult<()> {
        let this = self.clone();
        let write = move |rows: Vec<Activity>| {
            let this = this.clone();
            async move {
                this.write("record_activity", move |txn| {
                    let mut table = txn.open_table(ACTIVITY)?;
                    for a in &rows {
                        table.insert(
                            (a.person.as_str(), a.at, a.id.as_str()),
                            to_json(a)?.as_slice(),
                        )?;
                    }
                    Ok((true, ()))
                })
                .await
            }
        };
        self.sign_ins
            .submit(activity.clone(), "redb record_activity", write)
            .await
    }

    async fn activity(&self, person: &str, limit: usize) -> RecordsResult<Vec<Activity>> {
        let person = person.to_string();
        self.read("activity", move |txn| {
            let table = txn.open_table(ACTIVITY)?;
            let p = person.as_str();
            let mut out = Vec::new();
            for item in table
                .range((p, 0, "")..=(p, u64::MAX, "\u{10ffff}"))?
                .rev()
                .take(limit)
            {
                let (_, v) = item?;
                out.push(json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn purge_activity(&self, before: Millis) -> RecordsResult<u64> {
        self.write("purge_activity", move |txn| {
            let mut table = txn.open_table(ACTIVITY)?;
            let mut old = Vec::new();
            for item in table.iter()? {
                let (k, _) = item?;
                let (person, at, id) = k.value();
                if at < before {
                    old.push((person.to_string(), at, id.to_string()));
                }
            }
            for (person, at, id) in &old {
                table.remove((person.as_str(), *at, id.as_str()))?;
            }
            Ok((!old.is_empty(), old.len() as u64))
        })
        .await
    }

    async fn reviews(&self, all: bool) -> RecordsResult<Vec<ReviewItem>> {
        self.read("reviews", move |txn| {
            let mut out: Vec<ReviewItem> = Vec::new();
            for item in txn.open_table(REVIEWS)?.iter()? {
                let (_, v) = item?;
                let item: ReviewItem = json(v.value())?;
                if all || item.closed.is_none() {
                    out.push(item);
                }
            }
            out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
            Ok(out)
        })
        .await
    }

    async fn review(&self, id: &str) -> RecordsResult<Option<ReviewItem>> {
        let id = id.to_string();
        self.lookup("review", |txn| {
            match txn.open_table(REVIEWS)?.get(id.as_str())? {
                Some(v) => Ok(Some(json(v.value())?)),
                None => Ok(None),
            }
        })
    }

    async fn recent_audit(&self, query: &AuditQuery) -> RecordsResult<Vec<AuditRow>> {
        let query = query.clone();
        self.read("recent_audit", move |txn| {
            let audit = txn.open_table(AUDIT)?;
            let mut out: Vec<AuditRow> = Vec::new();
            if let Some(r) = query.reference.as_deref() {
                // One reference's rows are few: read them all, newest first.
                for item in audit.range((r, 0, "")..=(r, u64::MAX, "\u{10ffff}"))? {
                    let row: AuditRow = json(item?.1.value())?;
                    if query.matches(&row) {
                        out.push(row);
                    }
                }
                out.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
                out.truncate(query.limit);
                return Ok(out);
            }
            // Newest first from the time index, until `limit` rows match.
            for item in txn.open_table(AUDIT_RECENT)?.iter()?.rev() {
                if out.len() >= query.limit {
                    break;
                }
                let (key, who) = item?;
                let (at, id, reference) = key.value();
                let (actor, event) = who.value();
                let wanted = query.actor.as_deref().is_none_or(|a| actor == a)
                    && query
                        .event_prefix
                        .as_deref()
                        .is_none_or(|p| event.starts_with(p));
                if !wanted {
                    continue;
                }
                let Some(v) = audit.get((reference, at, id))? else {
                    return Err(Fail::Corrupt(format!("audit row {id} is missing")));
                };
                let row: AuditRow = json(v.value())?;
                if query.matches(&row) {
                    out.push(row);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn config_head(&self) -> RecordsResult<u64> {
        self.lookup("config_head", |txn| {
            Ok(txn
                .open_table(CONFIG)?
                .last()?
                .map(|(k, _)| k.value())
                .unwrap_or(0))
        })
    }

    async fn config_version(&self, version: Option<u64>) -> RecordsResult<Option<ConfigVersion>> {
        self.lookup("config_version", |txn| {
            let table = txn.open_table(CONFIG)?;
            let found = match version {
                Some(n) => table.get(n)?.map(|v| json(v.value())).transpose()?,
                None => table.last()?.map(|(_, v)| json(v.value())).transpose()?,
            };
            Ok(found)
        })
    }

    async fn config_history(&self, limit: usize) -> RecordsResult<Vec<ConfigVersion>> {
        self.read("config_history", move |txn| {
            let mut out = Vec::new();
            for item in txn.open_table(CONFIG)?.iter()?.rev().take(limit) {
                let (_, v) = item?;
                out.push(json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn publish_config(
        &self,
        expected: u64,
        document: &str,
        author: &str,
        note: &str,
        now: Millis,
        audit: &[AuditRow],
    ) -> RecordsResult<Option<u64>> {
        let next = ConfigVersion {
            version: expected.saturating_add(1),
            document: document.to_string(),
            author: author.to_string(),
            note: note.to_string(),
            at: now,
        };
        let rows = audit.to_vec();
        self.write("publish_config", move |txn| {
            let mut table = txn.open_table(CONFIG)?;
            let head = table.last()?.map(|(k, _)| k.value()).unwrap_or(0);
            if head != expected {
                return Ok((false, None));
            }
            table.insert(next.version, to_json(&next)?.as_slice())?;
            drop(table);
            insert_audit(txn, &rows)?;
            Ok((true, Some(next.version)))
        })
        .await
    }

    async fn report_instance(&self, report: &InstanceReport) -> RecordsResult<()> {
        let report = report.clone();
        self.write("report_instance", move |txn| {
            let mut table = txn.open_table(INSTANCES)?;
            let oldest = report.seen.saturating_sub(INSTANCE_FORGOTTEN_AFTER_MS);
            // A report that does not parse is kept: the listing says it is corrupt.
            table.retain(|_, v| {
                serde_json::from_slice::<InstanceReport>(v).map_or(true, |r| r.seen >= oldest)
            })?;
            table.insert(report.instance.as_str(), to_json(&report)?.as_slice())?;
            Ok((true, ()))
        })
        .await
    }

    async fn instances(&self) -> RecordsResult<Vec<InstanceReport>> {
        self.read("instances", |txn| {
            let mut out = Vec::new();
            for item in txn.open_table(INSTANCES)?.iter()? {
                let (_, v) = item?;
                out.push(json(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> RecordsResult<()> {
        self.lookup("ping", |txn| {
            txn.open_table(META)?;
            Ok(())
        })
    }

    async fn export_each(&self, sink: &mut ExportSink<'_>) -> RecordsResult<u64> {
        // A read transaction is a snapshot; a blocking task walks it and hands the records
        // over a bounded channel, so only a few are in memory at a time.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Entry>(256);
        let db = Arc::clone(&self.db);
        let producer = tokio::task::spawn_blocking(move || -> Result<(), Fail> {
            let txn = db.begin_read()?;
            let send = |e: Entry| tx.blocking_send(e).map_err(|_| Fail::Stopped);
            for item in txn.open_table(PERSONS)?.iter()? {
                send(Entry::Person(json(item?.1.value())?))?;
            }
            for item in txn.open_table(CONSENTS)?.iter()? {
                send(Entry::Consent(json(item?.1.value())?))?;
            }
            for item in txn.open_table(SETTINGS)?.iter()? {
                let (k, v) = item?;
                let setting: Versioned = json(v.value())?;
                send(Entry::Setting {
                    name: k.value().to_string(),
                    value: setting.value,
                })?;
            }
            for item in txn.open_table(REVIEWS)?.iter()? {
                send(Entry::Review(json(item?.1.value())?))?;
            }
            for item in txn.open_table(AUDIT)?.iter()? {
                send(Entry::Audit(json(item?.1.value())?))?;
            }
            for item in txn.open_table(ACTIVITY)?.iter()? {
                send(Entry::Activity(json(item?.1.value())?))?;
            }
            for item in txn.open_table(CONFIG)?.iter()? {
                send(Entry::ConfigVersion(json(item?.1.value())?))?;
            }
            Ok(())
        });
        let mut n = 0u64;
        while let Some(entry) = rx.recv().await {
            if let Err(e) = sink(entry) {
                // The producer sees the channel closed and stops.
                drop(rx);
                let _ = producer.await;
                return Err(e);
            }
            n += 1;
        }
        producer
            .await
            .map_err(|e| RecordsError::Unavailable(format!("redb export task failed: {e}")))?
            .map_err(|f| f.into_error("export"))?;
        Ok(n)
    }

    async fn import(&self, entries: Vec<Entry>, force: bool) -> RecordsResult<u64> {
        let outcome = self
            .write("import", move |txn| {
                if !force && holds_records(txn)? {
                    return Ok((false, None));
                }
                let mut written = 0u64;
                for entry in &entries {
                    if import_one(txn, entry)? {
                        written += 1;
                    }
                }
                Ok((true, Some(written)))
            })
            .await?;
        outcome.ok_or_else(|| {
            RecordsError::NotEmpty(
                "the target already holds records (use --force to add to them)".into(),
            )
        })
    }
}

/// Imports one entry unless it is there already; `Ok(false)` when skipped.
fn import_one(txn: &WriteTransaction, entry: &Entry) -> Result<bool, Fail> {
    match entry {
        Entry::Person(p) => {
            if read_person(&txn.open_table(PERSONS)?, &p.id)?.is_some() {
                return Ok(false);
            }
            let mut fresh = p.clone();
            fresh.version = 0;
            let changes = Changes {
                persons: vec![fresh],
                ..Changes::default()
            };
            if !apply(txn, &changes)? {
                return Err(Fail::Corrupt(format!(
                    "person {} holds a number or a way in of another person",
                    p.id
                )));
            }
            Ok(true)
        }
        Entry::Consent(c) => {
            let mut table = txn.open_table(CONSENTS)?;
            let key = (c.person.as_str(), c.client.as_str());
            if table.get(key)?.is_some() {
                return Ok(false);
            }
            table.insert(key, to_json(c)?.as_slice())?;
            Ok(true)
        }
        Entry::Setting { name, value } => {
            let mut table = txn.open_table(SETTINGS)?;
            if table.get(name.as_str())?.is_some() {
                return Ok(false);
            }
            let v = Versioned {
                version: 1,
                value: value.clone(),
            };
            table.insert(name.as_str(), to_json(&v)?.as_slice())?;
            Ok(true)
        }
        Entry::Audit(row) => {
            let key = (row.reference.as_str(), row.at, row.id.as_str());
            if txn.open_table(AUDIT)?.get(key)?.is_some() {
                return Ok(false);
            }
            insert_audit(txn, std::slice::from_ref(row))?;
            Ok(true)
        }
        Entry::Activity(a) => {
            let mut table = txn.open_table(ACTIVITY)?;
            let key = (a.person.as_str(), a.at, a.id.as_str());
            if table.get(key)?.is_some() {
                return Ok(false);
            }
            table.insert(key, to_json(a)?.as_slice())?;
            Ok(true)
        }
        Entry::Review(item) => {
            let mut table = txn.open_table(REVIEWS)?;
            if table.get(item.id.as_str())?.is_some() {
                return Ok(false);
            }
            table.insert(item.id.as_str(), to_json(item)?.as_slice())?;
            Ok(true)
        }
        Entry::ConfigVersion(v) => {
            let mut table = txn.open_table(CONFIG)?;
            if table.get(v.version)?.is_some() {
                return Ok(false);
            }
            table.insert(v.version, to_json(v)?.as_slice())?;
            Ok(true)
        }
    }
}

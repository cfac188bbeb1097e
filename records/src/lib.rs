//! The broker's durable records: persons, the citizen-ID bindings and ways in that lead to
//! them, consents, maintenance settings, audit rows, sign-in activity and the operators'
//! review queue.
//!
//! Typed records behind one interface, [`Records`], with two backends that pass the same
//! conformance suite (feature `conformance`): [`embedded`] (one redb file, a single node) and
//! [`postgres`] (several broker instances). The invariants live in the backend itself:
//!
//! * a citizen-ID number (known here only by its keyed hash) is actively bound to at most one
//!   person, and a way in (connector + subject, also a keyed hash) leads to one person;
//! * a person is written only at the version it was read at ([`Changes`] are committed
//!   whole or not at all, with their audit rows and review items), so two writers never
//!   lose each other's changes: the loser gets [`Commit::Conflict`], reads again and retries.
//!
//! This crate never sees an ID number in clear: callers pass the keyed hash, and the number
//! itself sealed (encrypted) by them.

pub mod embedded;
mod group_commit;
mod model;
pub mod postgres;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "conformance")]
pub mod testing;

pub use model::*;

/// Unix time in milliseconds.
pub type Millis = u64;

/// Why an operation on the records failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// The backend cannot be reached, timed out or has no free connection: try again later.
    #[error("records unavailable: {0}")]
    Unavailable(String),
    /// The backend holds something this code cannot read.
    #[error("records corrupt: {0}")]
    Corrupt(String),
    /// The schema is not the one this binary knows (run `broker migrate`, or a newer binary).
    #[error("records schema: {0}")]
    Schema(String),
    /// An import over records that are not empty, without being forced.
    #[error("records not empty: {0}")]
    NotEmpty(String),
}

/// Result of an operation on the records.
pub type RecordsResult<T> = Result<T, RecordsError>;

/// The durable records.
#[async_trait::async_trait]
pub trait Records: Send + Sync {
    /// A person, at its current version.
    async fn person(&self, id: &str) -> RecordsResult<Option<Person>>;

    /// The active binding of a citizen-ID number, by its keyed hash.
    async fn binding(&self, key: &str) -> RecordsResult<Option<Binding>>;

    /// The person a way in leads to, by its keyed hash.
    async fn way_in(&self, key: &str) -> RecordsResult<Option<String>>;

    /// The person a way in leads to, whole: [`Records::way_in`] and [`Records::person`] in
    /// one read (one statement on PostgreSQL, where this is the returning citizen's login).
    async fn person_by_way_in(&self, key: &str) -> RecordsResult<Option<Person>> {
        match self.way_in(key).await? {
            Some(id) => self.person(&id).await,
            None => Ok(None),
        }
    }

    /// Commits a change set atomically: every person at the version it was read at (0: it
    /// must not exist yet), no active binding or way in of another person taken, every
    /// review closed still open. Anything else is [`Commit::Conflict`] and changes nothing.
    async fn commit(&self, changes: Changes) -> RecordsResult<Commit>;

    /// The scopes a person consented to for a client.
    async fn consent(&self, person: &str, client: &str) -> RecordsResult<Option<Vec<String>>>;

    /// Records a person's consent to scopes for a client (replacing an earlier one).
    async fn put_consent(
        &self,
        person: &str,
        client: &str,
        scopes: &[String],
        now: Millis,
    ) -> RecordsResult<()>;

    /// A named setting (such as the maintenance messages) and its version (0: never set).
    async fn setting(&self, name: &str) -> RecordsResult<Versioned>;

    /// Writes a setting if it is still at `expected` version; returns whether it was written.
    async fn set_setting(
        &self,
        name: &str,
        expected: u64,
        value: &serde_json::Value,
    ) -> RecordsResult<bool>;

    /// Appends audit rows on their own (admin actions without other changes).
    async fn audit(&self, rows: &[AuditRow]) -> RecordsResult<()>;

    /// The audit rows of a reference (a person id, a review id), oldest first.
    async fn audit_of(&self, reference: &str) -> RecordsResult<Vec<AuditRow>>;

    /// Records a sign-in.
    async fn record_activity(&self, activity: &Activity) -> RecordsResult<()>;

    /// A person's most recent sign-ins, newest first.
    async fn activity(&self, person: &str, limit: usize) -> RecordsResult<Vec<Activity>>;

    /// Deletes sign-ins older than `before`; returns how many.
    async fn purge_activity(&self, before: Millis) -> RecordsResult<u64>;

    /// Review items, oldest first; only the open ones unless `all`.
    async fn reviews(&self, all: bool) -> RecordsResult<Vec<ReviewItem>>;

    /// One review item.
    async fn review(&self, id: &str) -> RecordsResult<Option<ReviewItem>>;

    /// Audit rows, newest first, filtered (the console's audit view).
    async fn recent_audit(&self, query: &AuditQuery) -> RecordsResult<Vec<AuditRow>>;

    /// The newest configuration version's number (0: none published yet). Cheap: every
    /// instance asks it every second.
    async fn config_head(&self) -> RecordsResult<u64>;

    /// One configuration version, or the newest (`None`).
    async fn config_version(&self, version: Option<u64>) -> RecordsResult<Option<ConfigVersion>>;

    /// The newest configuration versions, newest first.
    async fn config_history(&self, limit: usize) -> RecordsResult<Vec<ConfigVersion>>;

    /// Publishes `document` as version `expected + 1` if the newest version is still
    /// `expected` (compare-and-set: of two operators who read the same version, one wins),
    /// with its audit rows in the same transaction. Returns the new version, or `None` when
    /// another was published meanwhile (nothing written). Retrying after a timeout is safe:
    /// a publication that did land makes the retry's `expected` stale.
    async fn publish_config(
        &self,
        expected: u64,
        document: &str,
        author: &str,
        note: &str,
        now: Millis,
        audit: &[AuditRow],
    ) -> RecordsResult<Option<u64>>;

    /// Records what an instance runs (replacing its earlier report), and deletes the reports
    /// [`INSTANCE_FORGOTTEN_AFTER_MS`] older than this one.
    async fn report_instance(&self, report: &InstanceReport) -> RecordsResult<()>;

    /// Every instance's last report.
    async fn instances(&self) -> RecordsResult<Vec<InstanceReport>>;

    /// Whether the backend answers (and its schema is the one this binary knows).
    async fn ping(&self) -> RecordsResult<()>;

    /// Every record, one at a time, to `sink` (`broker records export`): read from one
    /// consistent snapshot and handed on as it is read, never all in memory. Stops at the
    /// first error of the sink, and returns it. Returns how many records were handed on.
    async fn export_each(&self, sink: &mut ExportSink<'_>) -> RecordsResult<u64>;

    /// Every record, in memory (tests and small records; [`Records::export_each`] streams).
    async fn export(&self) -> RecordsResult<Vec<Entry>> {
        let mut out = Vec::new();
        self.export_each(&mut |e| {
            out.push(e);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Adds exported records; refuses ([`RecordsError::NotEmpty`]) records that are not
    /// empty unless `force`, and then keeps what exists (a person, consent or setting already
    /// present is left as it is). Returns how many entries were written.
    async fn import(&self, entries: Vec<Entry>, force: bool) -> RecordsResult<u64>;
}

/// Where [`Records::export_each`] hands each record.
pub type ExportSink<'a> = dyn FnMut(Entry) -> RecordsResult<()> + Send + 'a;

/// Shared records handle.
pub type SharedRecords = std::sync::Arc<dyn Records>;

/// Records errors end where store errors do: on the "try again later" page and in 503s.
impl From<RecordsError> for store::StoreError {
    fn from(e: RecordsError) -> Self {
        match e {
            RecordsError::Corrupt(m) => store::StoreError::Corrupt(m),
            other => store::StoreError::Unavailable(other.to_string()),
        }
    }
}

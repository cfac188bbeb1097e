//! A change set in the making: what one resolution read and what it will write.
//!
//! Reads go to the records once and are remembered; writes are staged, and reads of a
//! binding see the staged persons first, so the binding rules can be written as a sequence
//! of steps. [`Draft::commit`] hands everything to the records at once: persons at the
//! versions they were read at, bindings and ways in that must not belong to anyone else,
//! audit rows and review items. A [`records::Commit::Conflict`] means another instance won a
//! race: decide again from a new draft, at most [`ATTEMPTS`] times. Audit log lines are
//! written only once their change set is committed, so a race lost is never audited.

use std::collections::BTreeMap;

use records::{AuditRow, Changes, Commit, Records, ReviewItem};

use super::{binding, from_record, link_hash, load, to_record, Binding, IdStatus, Person};
use crate::config::Settings;
use store::{StoreError, StoreResult};

pub use crate::util::{backoff, ATTEMPTS};

/// What one resolution read and will write.
pub struct Draft<'a> {
    settings: &'a Settings,
    records: &'a dyn Records,
    read: BTreeMap<String, Option<Person>>,
    bindings: BTreeMap<String, Option<Binding>>,
    staged: Vec<Person>,
    audit: Vec<AuditRow>,
    reviews: Vec<ReviewItem>,
    logs: Vec<Box<dyn FnOnce() + Send + Sync>>,
}

impl<'a> Draft<'a> {
    /// An empty draft.
    pub fn new(settings: &'a Settings, records: &'a dyn Records) -> Draft<'a> {
        Draft {
            settings,
            records,
            read: BTreeMap::new(),
            bindings: BTreeMap::new(),
            staged: Vec::new(),
            audit: Vec::new(),
            reviews: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// The configuration.
    pub fn settings(&self) -> &'a Settings {
        self.settings
    }

    /// A person as staged, or as read.
    pub async fn person(&mut self, id: &str) -> StoreResult<Option<Person>> {
        if let Some(p) = self.staged.iter().find(|p| p.id == id) {
            return Ok(Some(p.clone()));
        }
        if let Some(p) = self.read.get(id) {
            return Ok(p.clone());
        }
        let p = load(self.settings, self.records, id).await?;
        self.read.insert(id.to_string(), p.clone());
        Ok(p)
    }

    /// Whether a person is staged to be written.
    pub fn is_staged(&self, id: &str) -> bool {
        self.staged.iter().any(|p| p.id == id)
    }

    /// Stages a person to be written (replacing an earlier staged copy).
    pub fn stage(&mut self, person: Person) {
        match self.staged.iter_mut().find(|p| p.id == person.id) {
            Some(p) => *p = person,
            None => self.staged.push(person),
        }
    }

    /// The binding of a number, as the staged persons leave it. The records are asked once
    /// per number: one decision never sees two answers (another login may bind the number
    /// meanwhile; then this draft's own binding of it is refused at the commit).
    pub async fn binding(&mut self, value: &str) -> StoreResult<Option<Binding>> {
        for p in &self.staged {
            if let Some(b) = active_binding(p, value) {
                return Ok(Some(b));
            }
        }
        let read = match self.bindings.get(value) {
            Some(known) => known.clone(),
            None => {
                // A person read holding the number actively is its binding (the records keep
                // one active holder per number, read with the person): no read more.
                let held = self
                    .read
                    .values()
                    .flatten()
                    .find_map(|p| active_binding(p, value));
                let read = match held {
                    Some(b) => Some(b),
                    None => binding(self.settings, self.records, value).await?,
                };
                self.bindings.insert(value.to_string(), read.clone());
                read
            }
        };
        match read {
            // Its holder is staged without it.
            Some(b) if self.staged.iter().any(|p| p.id == b.person) => Ok(None),
            other => Ok(other),
        }
    }

    /// The person a way in leads to, read whole with it (and remembered, so a returning
    /// citizen's login reads the records once).
    pub async fn way_in(&mut self, connector: &str, subject: &str) -> StoreResult<Option<String>> {
        let key = link_hash(self.settings, connector, subject);
        let Some(record) = self.records.person_by_way_in(&key).await? else {
            return Ok(None);
        };
        let person = from_record(self.settings, record)?;
        let id = person.id.clone();
        self.read.entry(id.clone()).or_insert(Some(person));
        Ok(Some(id))
    }

    /// Adds an audit row, and the audit log line written once it is committed.
    pub fn audit(&mut self, row: AuditRow, log: impl FnOnce() + Send + Sync + 'static) {
        self.audit.push(row);
        self.logs.push(Box::new(log));
    }

    /// Opens a review item.
    pub fn review(&mut self, item: ReviewItem) {
        self.reviews.push(item);
    }

    /// Commits everything staged, atomically.
    pub async fn commit(self) -> StoreResult<Commit> {
        let mut persons = Vec::with_capacity(self.staged.len());
        for p in &self.staged {
            persons.push(to_record(self.settings, p)?);
        }
        let changes = Changes {
            persons,
            audit: self.audit,
            open_reviews: self.reviews,
            close_reviews: Vec::new(),
        };
        let outcome = self.records.commit(changes).await?;
        if outcome == Commit::Done {
            for log in self.logs {
                log();
            }
        }
        Ok(outcome)
    }
}

/// The binding a person's active holding of a number makes.
fn active_binding(p: &Person, value: &str) -> Option<Binding> {
    p.citizen_ids
        .iter()
        .find(|c| c.value == value && c.status == IdStatus::Active)
        .map(|c| Binding {
            person: p.id.clone(),
            level: c.level,
            source: c.source.clone(),
        })
}

/// The error of a resolution that lost [`ATTEMPTS`] races in a row.
pub fn too_many_conflicts() -> StoreError {
    StoreError::Unavailable("records: too many concurrent changes of one person".into())
}

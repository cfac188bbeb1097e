//! The typed records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// Level of the proof that bound a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Knowledge (a password, a registry check).
    Low,
    /// A bank card and an SMS code.
    Substantial,
    /// A state credential.
    High,
}

impl Level {
    /// Its number in the PostgreSQL schema.
    pub fn rank(self) -> i16 {
        match self {
            Level::Low => 1,
            Level::Substantial => 2,
            Level::High => 3,
        }
    }

    /// The level of a rank.
    pub fn from_rank(rank: i16) -> Option<Level> {
        match rank {
            1 => Some(Level::Low),
            2 => Some(Level::Substantial),
            3 => Some(Level::High),
            _ => None,
        }
    }
}

/// Whether a person's number counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdStatus {
    /// Bound to this person (at most one person per number).
    Active,
    /// Taken away by a stronger proof for someone else; kept for the operators' review.
    Suspended,
}

/// A citizen-ID number of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CitizenId {
    /// Keyed hash of the number (the binding's key).
    pub key: String,
    /// The number, sealed by the caller (never in clear here).
    pub sealed: String,
    /// Level of the proof that bound it.
    pub level: Level,
    /// What bound it: a connector id, or `registry`.
    pub source: String,
    /// When (Unix ms).
    pub at: Millis,
    /// Whether it counts.
    pub status: IdStatus,
}

/// A way in: a connector and the citizen's subject there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WayIn {
    /// Keyed hash of connector and subject.
    pub key: String,
    /// Connector id.
    pub connector: String,
    /// The subject at the connector, sealed by the caller.
    pub sealed_subject: String,
    /// First seen (Unix ms).
    pub at: Millis,
}

/// The durable record of a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// Internal id; never changes.
    pub id: String,
    /// The version it was read at; 0 for a person not stored yet. Each commit adds one.
    pub version: u64,
    /// Citizen-ID numbers, current and old.
    pub citizen_ids: Vec<CitizenId>,
    /// Ways in.
    pub ways_in: Vec<WayIn>,
    /// Latest claims from the sources.
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Last update (Unix ms).
    pub updated: Millis,
}

impl Person {
    /// A person not stored yet.
    pub fn new(id: &str) -> Person {
        Person {
            id: id.to_string(),
            version: 0,
            citizen_ids: Vec::new(),
            ways_in: Vec::new(),
            claims: BTreeMap::new(),
            updated: 0,
        }
    }

    /// The active binding of `key` held by this person, if any.
    pub fn binding(&self, key: &str) -> Option<Binding> {
        self.citizen_ids
            .iter()
            .find(|c| c.key == key && c.status == IdStatus::Active)
            .map(|c| Binding {
                person: self.id.clone(),
                level: c.level,
                source: c.source.clone(),
            })
    }
}

/// Who a bound number belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The person.
    pub person: String,
    /// Level of the proof.
    pub level: Level,
    /// Connector id, or `registry`.
    pub source: String,
}

/// One audited event: who did what, when, through what, about what. No personal data in
/// clear: references are person ids, review ids or keyed hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Unique id (import skips rows it already holds).
    pub id: String,
    /// When (Unix ms).
    pub at: Millis,
    /// Who: `citizen`, `admin`, `system`.
    pub actor: String,
    /// What: `binding.suspended`, `review.merged`, …
    pub event: String,
    /// Through what: a connector id, `registry`, `admin-api`.
    pub source: String,
    /// About what: a person id or a review id.
    pub reference: String,
    /// Further facts (levels, other person ids); never a number or a name.
    pub detail: serde_json::Value,
}

impl AuditRow {
    /// A row with a fresh id.
    pub fn new(
        at: Millis,
        actor: &str,
        event: &str,
        source: &str,
        reference: &str,
        detail: serde_json::Value,
    ) -> AuditRow {
        AuditRow {
            id: new_id(),
            at,
            actor: actor.into(),
            event: event.into(),
            source: source.into(),
            reference: reference.into(),
            detail,
        }
    }
}

/// A sign-in, for the citizen's recent activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Unique id.
    pub id: String,
    /// The person.
    pub person: String,
    /// The platform (client id).
    pub client: String,
    /// The way in (connector id).
    pub connector: String,
    /// When (Unix ms).
    pub at: Millis,
}

/// What a review item is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewKind {
    /// A weaker binding of `other` was suspended by a stronger proof for `holder`.
    Suspended,
    /// The number bound to `holder` was proven again, equally or more strongly, for `other`:
    /// two accounts both proven.
    Conflict,
}

/// How an operator closed a review item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewAction {
    /// The binding stays as it is.
    Keep,
    /// `other` joined `holder`.
    Merge,
    /// The binding was taken from `holder`.
    Release,
}

/// A binding waiting for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Id (unique while it is open; one per kind, number and pair of persons).
    pub id: String,
    /// What happened.
    pub kind: ReviewKind,
    /// Keyed hash of the number.
    pub key: String,
    /// The person holding the binding.
    pub holder: String,
    /// The other person.
    pub other: String,
    /// When it was opened (Unix ms).
    pub created: Millis,
    /// How it was closed, by whom, when; `None` while open.
    pub closed: Option<Closed>,
}

impl ReviewItem {
    /// An open item; its id derives from what it is about, so the same event opens it once.
    pub fn open(kind: ReviewKind, key: &str, holder: &str, other: &str, now: Millis) -> Self {
        let k = match kind {
            ReviewKind::Suspended => "s",
            ReviewKind::Conflict => "c",
        };
        ReviewItem {
            id: format!("{k}-{}", short_hash(&[key, holder, other])),
            kind,
            key: key.into(),
            holder: holder.into(),
            other: other.into(),
            created: now,
            closed: None,
        }
    }
}

/// How and when a review item was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    /// The action.
    pub action: ReviewAction,
    /// Who (an operator's name as given to the admin API).
    pub by: String,
    /// When (Unix ms).
    pub at: Millis,
}

/// A change set committed by [`crate::Records::commit`], whole or not at all.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Persons to write, each at the version it was read at (0: new).
    pub persons: Vec<Person>,
    /// Audit rows.
    pub audit: Vec<AuditRow>,
    /// Review items to open (an item already open stays as it is; a closed one opens again).
    pub open_reviews: Vec<ReviewItem>,
    /// Review items to close: each must be open.
    pub close_reviews: Vec<(String, Closed)>,
}

impl Changes {
    /// Whether nothing would be written.
    pub fn is_empty(&self) -> bool {
        self.persons.is_empty()
            && self.audit.is_empty()
            && self.open_reviews.is_empty()
            && self.close_reviews.is_empty()
    }
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Everything was written.
    Done,
    /// A precondition failed (a person changed since it was read, a binding or way in
    /// belongs to another person, a review is no longer open): nothing was written; read
    /// again and decide again.
    Conflict,
}

/// A setting and its version (0: never set, `value` null).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned {
    /// Version, for [`crate::Records::set_setting`].
    pub version: u64,
    /// The value.
    pub value: serde_json::Value,
}

/// A consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The person.
    pub person: String,
    /// The client.
    pub client: String,
    /// Scopes consented to.
    pub scopes: Vec<String>,
    /// When (Unix ms).
    pub at: Millis,
}

/// One exported record (a line of `broker records export`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A person with its numbers and ways in.
    Person(Person),
    /// A consent.
    Consent(Consent),
    /// A setting.
    Setting {
        /// Its name.
        name: String,
        /// Its value.
        value: serde_json::Value,
    },
    /// An audit row.
    Audit(AuditRow),
    /// A sign-in.
    Activity(Activity),
    /// A review item.
    Review(ReviewItem),
    /// A configuration version (the console's connectors and clients).
    ConfigVersion(ConfigVersion),
}

/// A random id (22 characters, URL-safe).
pub fn new_id() -> String {
    use base64::Engine;
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A short stable digest of some parts (not a secret: ids of review items).
fn short_hash(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One version of the configuration operators edit in the console (its connectors and
/// clients, as TOML text; secrets in it are references, never values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// 1, 2, …: each publication takes the next one.
    pub version: u64,
    /// The TOML text.
    pub document: String,
    /// Who published it (an operator's name, `bootstrap` for the seed from the file).
    pub author: String,
    /// Why, in the operator's words (`rollback to 3`, …).
    pub note: String,
    /// When (Unix ms).
    pub at: Millis,
}

/// A report older than this, compared with a newer report of any instance, is deleted by
/// that report: instances are named by host and process, so every restart adds one, and
/// the table would otherwise keep every process a deployment ever ran.
pub const INSTANCE_FORGOTTEN_AFTER_MS: Millis = 7 * 24 * 60 * 60 * 1000;

/// What one broker instance runs, as it last said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The instance (host name and process id).
    pub instance: String,
    /// The configuration version it runs.
    pub version: u64,
    /// Why it refused a newer version (empty: it refused none).
    pub problem: String,
    /// When it said so (Unix ms).
    pub seen: Millis,
}

/// Which audit rows to list, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only rows of this actor.
    pub actor: Option<String>,
    /// Only rows whose event starts with this (`config.`, `review.`).
    pub event_prefix: Option<String>,
    /// Only rows of this reference.
    pub reference: Option<String>,
    /// At most this many.
    pub limit: usize,
}

impl AuditQuery {
    /// Whether a row passes the filters.
    pub fn matches(&self, row: &AuditRow) -> bool {
        self.actor.as_deref().is_none_or(|a| row.actor == a)
            && self
                .event_prefix
                .as_deref()
                .is_none_or(|p| row.event.starts_with(p))
            && self.reference.as_deref().is_none_or(|r| row.reference == r)
    }
}

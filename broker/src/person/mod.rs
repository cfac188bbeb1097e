//! Who a verified identity is: the durable person record every way in resolves to, and the
//! `sub` each relying party sees.
//!
//! * A citizen ID number proven by a source is *bound* to one person, with the level of the
//!   source that proved it. Every later login that proves the same number at that level or
//!   above resolves to the same person, whichever connector it came through.
//! * A login through a source that proves no number (an old portal account) is known by its
//!   connector and subject, and may be linked to a number checked against the population
//!   registry ([`link`]).
//! * A stronger proof of a number bound through a weaker source does not simply take that
//!   person over: the citizen is asked to prove the old account is theirs (then the two
//!   merge and keep the old `sub`), or the weak binding is suspended and audited
//!   ([`resolve`]). A weaker source never takes over a stronger binding.
//! * The person's id never changes, so its pairwise `sub` survives name changes, ID number
//!   changes (old numbers map to current ones through the registry) and linking.
//!
//! The records live behind [`records::Records`] (embedded file or PostgreSQL): bindings and
//! ways in are keyed by keyed hashes, never by ID numbers; the numbers and subjects a person
//! keeps are sealed ([`seal`]). Every resolution reads, decides, then commits one change set
//! whose preconditions the records check atomically ([`draft`]); a lost race is decided again
//! from the start. Attributes are refreshed at every login, so a changed name never blocks a
//! login.

pub mod activity;
pub mod draft;
pub mod link;
pub mod records;
pub mod resolve;
pub mod review;
/// The records' sealing of numbers and subjects (in `common`, so the configuration can hold
/// its key).
pub use common::records_seal as seal;
pub mod transfer;

use std::collections::BTreeMap;

use connectors::Assurance;
use serde::{Deserialize, Serialize};

pub use resolve::{resolve, Resolution};

use crate::config::{Client, Settings, SubjectType};
use ::records::Records;
use common::hash::pairwise_b64 as hmac_b64;
use store::{StoreError, StoreResult};

/// Whether a bound number counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdStatus {
    /// Bound to this person.
    Active,
    /// Taken away by a stronger proof for someone else; kept for the operators' review.
    Suspended,
}

/// A citizen ID number of a person.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct CitizenIdRecord {
    /// The number.
    pub value: String,
    /// Level of the proof that bound it.
    pub level: Assurance,
    /// What bound it: a connector id, or `registry` for a registry-checked link.
    pub source: String,
    /// When (Unix ms).
    pub at: u64,
    /// Whether it counts.
    pub status: IdStatus,
}

impl std::fmt::Debug for CitizenIdRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CitizenIdRecord")
            .field("level", &self.level)
            .field("source", &self.source)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A way in: a connector and the citizen's subject there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LinkRecord {
    /// Connector id.
    pub connector: String,
    /// Subject at the connector.
    pub subject: String,
    /// First seen (Unix ms).
    pub at: u64,
}

/// The durable record of a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// Internal id; the seed of every `sub`, so it never changes.
    pub id: String,
    /// The version it was read at (0: not stored yet), checked when it is written.
    #[serde(default)]
    pub version: u64,
    /// Citizen ID numbers, current and old, with how each was bound.
    #[serde(default)]
    pub citizen_ids: Vec<CitizenIdRecord>,
    /// Latest claims from the sources.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Ways in.
    #[serde(default)]
    pub links: Vec<LinkRecord>,
    /// Last update (Unix ms).
    #[serde(default)]
    pub updated: u64,
}

impl Person {
    /// A new, empty person.
    pub fn new(id: &str) -> Person {
        Person {
            id: id.to_string(),
            version: 0,
            citizen_ids: Vec::new(),
            claims: BTreeMap::new(),
            links: Vec::new(),
            updated: 0,
        }
    }

    /// A name to greet the citizen with.
    pub fn display_name(&self) -> String {
        self.claims
            .get("name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_default()
    }

    /// The current citizen ID number: the most recent active one.
    pub fn citizen_id(&self) -> Option<&str> {
        self.citizen_ids
            .iter()
            .filter(|c| c.status == IdStatus::Active)
            .max_by_key(|c| (c.value.len(), c.at))
            .map(|c| c.value.as_str())
    }

    /// The strongest level at which a number of this person was bound.
    pub fn id_level(&self, value: &str) -> Option<Assurance> {
        self.citizen_ids
            .iter()
            .filter(|c| c.value == value && c.status == IdStatus::Active)
            .map(|c| c.level)
            .max()
    }

    pub(crate) fn add_id(&mut self, value: &str, level: Assurance, source: &str, now: u64) {
        match self.citizen_ids.iter_mut().find(|c| c.value == value) {
            Some(c) => {
                if c.status == IdStatus::Suspended || level > c.level {
                    c.level = level;
                    c.source = source.to_string();
                    c.at = now;
                }
                c.status = IdStatus::Active;
            }
            None => self.citizen_ids.push(CitizenIdRecord {
                value: value.to_string(),
                level,
                source: source.to_string(),
                at: now,
                status: IdStatus::Active,
            }),
        }
    }

    pub(crate) fn add_link(&mut self, connector: &str, subject: &str, now: u64) {
        if !self
            .links
            .iter()
            .any(|l| l.connector == connector && l.subject == subject)
        {
            self.links.push(LinkRecord {
                connector: connector.to_string(),
                subject: subject.to_string(),
                at: now,
            });
        }
    }
}

/// Who a bound citizen ID number belongs to (the value of its index key).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Binding {
    /// The person.
    pub person: String,
    /// Level of the proof.
    pub level: Assurance,
    /// Connector id, or `registry`.
    pub source: String,
}

/// The keyed hash of a citizen ID number: the key of its binding.
pub fn id_hash(settings: &Settings, value: &str) -> String {
    hmac_b64(&settings.pairwise_secret, &[b"cid", value.as_bytes()])
}

/// The keyed hash of a connector subject: the key of its way in.
pub fn link_hash(settings: &Settings, connector: &str, subject: &str) -> String {
    hmac_b64(
        &settings.pairwise_secret,
        &[b"ext", connector.as_bytes(), subject.as_bytes()],
    )
}

/// Index key of a citizen ID number in the `Store` of earlier versions (for the move).
pub fn id_key(settings: &Settings, value: &str) -> String {
    format!("idx:cid:{}", id_hash(settings, value))
}

/// Index key of a connector subject in the `Store` of earlier versions (for the move).
pub fn link_key(settings: &Settings, connector: &str, subject: &str) -> String {
    format!("idx:ext:{}", link_hash(settings, connector, subject))
}

pub(crate) fn level_of(a: Assurance) -> ::records::Level {
    match a {
        Assurance::Low => ::records::Level::Low,
        Assurance::Substantial => ::records::Level::Substantial,
        Assurance::High => ::records::Level::High,
    }
}

pub(crate) fn assurance_of(l: ::records::Level) -> Assurance {
    match l {
        ::records::Level::Low => Assurance::Low,
        ::records::Level::Substantial => Assurance::Substantial,
        ::records::Level::High => Assurance::High,
    }
}

impl From<::records::Binding> for Binding {
    fn from(b: ::records::Binding) -> Self {
        Binding {
            person: b.person,
            level: assurance_of(b.level),
            source: b.source,
        }
    }
}

/// The stored form of a person: hashes for keys, numbers and subjects sealed.
pub fn to_record(settings: &Settings, p: &Person) -> StoreResult<::records::Person> {
    let seal_key = &settings.seal_key;
    let sealing = || StoreError::Corrupt("cannot seal a value".into());
    let mut citizen_ids = Vec::with_capacity(p.citizen_ids.len());
    for c in &p.citizen_ids {
        citizen_ids.push(::records::CitizenId {
            key: id_hash(settings, &c.value),
            sealed: seal::seal(seal_key, seal::Kind::CitizenId, &c.value).ok_or_else(sealing)?,
            level: level_of(c.level),
            source: c.source.clone(),
            at: c.at,
            status: match c.status {
                IdStatus::Active => ::records::IdStatus::Active,
                IdStatus::Suspended => ::records::IdStatus::Suspended,
            },
        });
    }
    let mut ways_in = Vec::with_capacity(p.links.len());
    for l in &p.links {
        ways_in.push(::records::WayIn {
            key: link_hash(settings, &l.connector, &l.subject),
            connector: l.connector.clone(),
            sealed_subject: seal::seal(seal_key, seal::Kind::Subject, &l.subject)
                .ok_or_else(sealing)?,
            at: l.at,
        });
    }
    Ok(::records::Person {
        id: p.id.clone(),
        version: p.version,
        citizen_ids,
        ways_in,
        claims: p.claims.clone(),
        updated: p.updated,
    })
}

/// A person from its stored form.
pub fn from_record(settings: &Settings, r: ::records::Person) -> StoreResult<Person> {
    let seal_key = &settings.seal_key;
    let unsealable = |what: &str| {
        StoreError::Corrupt(format!(
            "a sealed {what} of person {} does not open (was pairwise_secret changed?)",
            r.id
        ))
    };
    let mut citizen_ids = Vec::with_capacity(r.citizen_ids.len());
    for c in &r.citizen_ids {
        citizen_ids.push(CitizenIdRecord {
            value: seal::open(seal_key, seal::Kind::CitizenId, &c.sealed)
                .ok_or_else(|| unsealable("number"))?,
            level: assurance_of(c.level),
            source: c.source.clone(),
            at: c.at,
            status: match c.status {
                ::records::IdStatus::Active => IdStatus::Active,
                ::records::IdStatus::Suspended => IdStatus::Suspended,
            },
        });
    }
    let mut links = Vec::with_capacity(r.ways_in.len());
    for w in &r.ways_in {
        links.push(LinkRecord {
            connector: w.connector.clone(),
            subject: seal::open(seal_key, seal::Kind::Subject, &w.sealed_subject)
                .ok_or_else(|| unsealable("subject"))?,
            at: w.at,
        });
    }
    Ok(Person {
        id: r.id,
        version: r.version,
        citizen_ids,
        claims: r.claims,
        links,
        updated: r.updated,
    })
}

/// Loads a person.
pub async fn load(
    settings: &Settings,
    records: &dyn Records,
    id: &str,
) -> StoreResult<Option<Person>> {
    match records.person(id).await? {
        Some(r) => Ok(Some(from_record(settings, r)?)),
        None => Ok(None),
    }
}

/// Reads the binding of a citizen ID number.
pub async fn binding(
    settings: &Settings,
    records: &dyn Records,
    value: &str,
) -> StoreResult<Option<Binding>> {
    Ok(records
        .binding(&id_hash(settings, value))
        .await?
        .map(Binding::from))
}

/// The `sub` a client sees for a person: pairwise per sector unless the client is public.
pub fn subject(settings: &Settings, client: &Client, person_id: &str) -> String {
    match client.subject_type {
        SubjectType::Public => person_id.to_string(),
        SubjectType::Pairwise => hmac_b64(
            &settings.pairwise_secret,
            &[b"sub", client.sector.as_bytes(), person_id.as_bytes()],
        ),
    }
}

/// The claims a client may see, for the scopes granted.
pub fn released_claims(person: &Person, scopes: &[String]) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (scope, names) in crate::config::SCOPES {
        if !scopes.iter().any(|s| s == scope) {
            continue;
        }
        for name in *names {
            if *name == "citizen_id" {
                if let Some(cid) = person.citizen_id() {
                    out.insert("citizen_id".into(), cid.into());
                }
            } else if let Some(v) = person.claims.get(*name) {
                out.insert((*name).to_string(), v.clone());
            }
        }
    }
    out
}

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
//! Index keys hold keyed hashes, never ID numbers. Attributes are refreshed at every login,
//! so a changed name never blocks a login.

pub mod link;
pub mod resolve;

use std::collections::BTreeMap;

use connectors::Assurance;
use serde::{Deserialize, Serialize};

pub use resolve::{resolve, Resolution};

use crate::config::{Client, Settings, SubjectType};
use crate::util::now_millis;
use common::hash::pairwise_b64 as hmac_b64;
use store::{Store, StoreResult};

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
#[derive(Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    /// Internal id; the seed of every `sub`, so it never changes.
    pub id: String,
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

    fn add_id(&mut self, value: &str, level: Assurance, source: &str, now: u64) {
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

    fn add_link(&mut self, connector: &str, subject: &str, now: u64) {
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

/// Index key of a citizen ID number.
pub fn id_key(settings: &Settings, value: &str) -> String {
    format!(
        "idx:cid:{}",
        hmac_b64(&settings.pairwise_secret, &[b"cid", value.as_bytes()])
    )
}

/// Index key of a connector subject.
pub fn link_key(settings: &Settings, connector: &str, subject: &str) -> String {
    format!(
        "idx:ext:{}",
        hmac_b64(
            &settings.pairwise_secret,
            &[b"ext", connector.as_bytes(), subject.as_bytes()]
        )
    )
}

fn person_key(id: &str) -> String {
    format!("person:{id}")
}

/// Loads a person.
pub async fn load(store: &dyn Store, id: &str) -> StoreResult<Option<Person>> {
    Ok(store
        .get(&person_key(id), now_millis())
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Saves a person.
pub async fn save(store: &dyn Store, person: &Person) -> StoreResult<()> {
    let bytes = serde_json::to_vec(person).unwrap_or_default();
    store
        .put(&person_key(&person.id), &bytes, None, now_millis())
        .await
}

/// Reads the binding of a citizen ID number.
pub async fn binding(
    settings: &Settings,
    store: &dyn Store,
    value: &str,
) -> StoreResult<Option<Binding>> {
    Ok(store
        .get(&id_key(settings, value), now_millis())
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
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

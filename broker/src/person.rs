//! Who a verified identity is: the durable person record it resolves to, and the `sub` each
//! relying party sees.
//!
//! A proven citizen ID number leads to one person whichever connector proved it; an
//! identity without one is keyed by its connector and subject. Index keys hold keyed hashes,
//! never the ID numbers themselves. Attributes are refreshed from the source at every login
//! so a changed name never blocks a login.

use std::collections::BTreeMap;

use connectors::Identity;
use serde::{Deserialize, Serialize};

use crate::config::{Client, Settings, SubjectType};
use crate::store::{Store, StoreResult};
use crate::util::{hmac_b64, now_millis, random_token};

/// The durable record of a person.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    /// Internal id (never shown to relying parties as is when subjects are pairwise).
    pub id: String,
    /// Current citizen ID number, once proven.
    pub citizen_id: Option<String>,
    /// Latest claims from the sources.
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Connectors and subjects that lead here.
    pub links: Vec<String>,
    /// Last update (Unix ms).
    pub updated: u64,
}

impl Person {
    /// A name to greet the citizen with.
    pub fn display_name(&self) -> String {
        self.claims
            .get("name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_default()
    }
}

fn index_key(settings: &Settings, connector: &str, identity: &Identity) -> String {
    match &identity.citizen_id {
        Some(cid) if cid.proven => format!(
            "idx:cid:{}",
            hmac_b64(&settings.pairwise_secret, &[b"cid", cid.value.as_bytes()])
        ),
        _ => format!(
            "idx:ext:{}",
            hmac_b64(
                &settings.pairwise_secret,
                &[b"ext", connector.as_bytes(), identity.subject.as_bytes()]
            )
        ),
    }
}

/// Finds or creates the person of a verified identity and refreshes its attributes.
pub async fn resolve(
    settings: &Settings,
    store: &dyn Store,
    connector: &str,
    identity: &Identity,
) -> StoreResult<Person> {
    let now = now_millis();
    let index = index_key(settings, connector, identity);
    let fresh_id = random_token(16);
    // put_new makes two simultaneous first logins agree on one person.
    let id = if store
        .put_new(&index, fresh_id.as_bytes(), None, now)
        .await?
    {
        fresh_id
    } else {
        match store.get(&index, now).await? {
            Some(v) => String::from_utf8_lossy(&v).into_owned(),
            None => fresh_id,
        }
    };
    let key = format!("person:{id}");
    let mut person = match store.get(&key, now).await? {
        Some(b) => serde_json::from_slice(&b).unwrap_or_else(|_| empty(&id)),
        None => empty(&id),
    };
    let link = format!("{connector}:{}", identity.subject);
    if !person.links.contains(&link) {
        person.links.push(link);
    }
    if let Some(cid) = identity.citizen_id.as_ref().filter(|c| c.proven) {
        person.citizen_id = Some(cid.value.clone());
    }
    for (k, v) in &identity.claims {
        person.claims.insert(k.clone(), v.clone());
    }
    person.updated = now;
    let bytes = serde_json::to_vec(&person).unwrap_or_default();
    store.put(&key, &bytes, None, now).await?;
    Ok(person)
}

fn empty(id: &str) -> Person {
    Person {
        id: id.to_string(),
        citizen_id: None,
        claims: BTreeMap::new(),
        links: Vec::new(),
        updated: 0,
    }
}

/// Loads a person.
pub async fn load(store: &dyn Store, id: &str) -> StoreResult<Option<Person>> {
    Ok(store
        .get(&format!("person:{id}"), now_millis())
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
                if let Some(cid) = &person.citizen_id {
                    out.insert("citizen_id".into(), cid.clone().into());
                }
            } else if let Some(v) = person.claims.get(*name) {
                out.insert((*name).to_string(), v.clone());
            }
        }
    }
    out
}

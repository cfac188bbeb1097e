//! What operators see of a person and how they close review items (keep, merge, release):
//! each action is one commit with its audit rows, refused if the item was closed meanwhile.

use records::{
    AuditRow, Changes, Closed, Commit, IdStatus, Person, Records, ReviewAction, ReviewItem,
};
use serde::Serialize;
use serde_json::json;

use super::draft::{backoff, too_many_conflicts, ATTEMPTS};
use crate::config::Settings;
use store::StoreResult;

/// A bound number as operators see it: its keyed hash, never the number.
#[derive(Debug, Serialize)]
pub struct BindingView {
    /// Keyed hash of the number.
    pub key: String,
    /// Level of the proof.
    pub level: records::Level,
    /// What bound it.
    pub source: String,
    /// When (Unix ms).
    pub at: u64,
    /// Active or suspended.
    pub status: IdStatus,
}

/// A way in as operators see it: the connector, never the subject.
#[derive(Debug, Serialize)]
pub struct WayInView {
    /// Connector id.
    pub connector: String,
    /// First seen (Unix ms).
    pub at: u64,
}

/// A person as operators see it.
#[derive(Debug, Serialize)]
pub struct PersonView {
    /// Internal id.
    pub id: String,
    /// Version.
    pub version: u64,
    /// Last update (Unix ms).
    pub updated: u64,
    /// Numbers, by keyed hash.
    pub bindings: Vec<BindingView>,
    /// Ways in.
    pub ways_in: Vec<WayInView>,
    /// Review items about this person, open or closed.
    pub reviews: Vec<ReviewItem>,
    /// Audit rows about this person.
    pub audit: Vec<AuditRow>,
}

/// A person with their ways in, bindings, reviews and audit rows.
pub async fn view(records: &dyn Records, id: &str) -> StoreResult<Option<PersonView>> {
    let Some(p) = records.person(id).await? else {
        return Ok(None);
    };
    let reviews = records
        .reviews(true)
        .await?
        .into_iter()
        .filter(|r| r.holder == id || r.other == id)
        .collect();
    Ok(Some(PersonView {
        bindings: p
            .citizen_ids
            .iter()
            .map(|c| BindingView {
                key: c.key.clone(),
                level: c.level,
                source: c.source.clone(),
                at: c.at,
                status: c.status,
            })
            .collect(),
        ways_in: p
            .ways_in
            .iter()
            .map(|w| WayInView {
                connector: w.connector.clone(),
                at: w.at,
            })
            .collect(),
        audit: records.audit_of(id).await?,
        reviews,
        version: p.version,
        updated: p.updated,
        id: p.id,
    }))
}

/// The person a citizen ID number is bound to (hashed here; the number goes no further).
pub async fn lookup(
    settings: &Settings,
    records: &dyn Records,
    citizen_id: &str,
) -> StoreResult<Option<String>> {
    let value = connectors::normalise_id(citizen_id);
    Ok(records
        .binding(&super::id_hash(settings, &value))
        .await?
        .map(|b| b.person))
}

/// How closing a review item ended.
#[derive(Debug)]
pub enum Resolved {
    /// Closed, as it is now.
    Done(ReviewItem),
    /// No such item.
    NotFound,
    /// Closed already (by someone else, or by an earlier try of this call).
    AlreadyClosed(ReviewItem),
}

/// Closes a review item with an operator's action (audited as `by`):
/// * `keep`: nothing changes;
/// * `merge`: the other person's ways in and numbers join the holder (whose `sub` stays);
/// * `release`: the holder's binding of the number is suspended, so the next proof binds it
///   anew.
pub async fn close(
    records: &dyn Records,
    id: &str,
    action: ReviewAction,
    operator: &str,
    by: crate::maintenance::By<'_>,
    now: u64,
) -> StoreResult<Resolved> {
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let Some(item) = records.review(id).await? else {
            return Ok(Resolved::NotFound);
        };
        if item.closed.is_some() {
            return Ok(Resolved::AlreadyClosed(item));
        }
        let mut persons = Vec::new();
        match action {
            ReviewAction::Keep => {}
            ReviewAction::Release => {
                if let Some(mut holder) = records.person(&item.holder).await? {
                    for c in holder.citizen_ids.iter_mut().filter(|c| c.key == item.key) {
                        c.status = IdStatus::Suspended;
                        c.at = now;
                    }
                    holder.updated = now;
                    persons.push(holder);
                }
            }
            ReviewAction::Merge => {
                let holder = records.person(&item.holder).await?;
                let other = records.person(&item.other).await?;
                if let (Some(h), Some(o)) = (holder, other) {
                    let (h, o) = merge(h, o, now);
                    persons.push(h);
                    persons.push(o);
                }
            }
        }
        let event = match action {
            ReviewAction::Keep => "review.kept",
            ReviewAction::Merge => "review.merged",
            ReviewAction::Release => "review.released",
        };
        let detail = json!({"review": item.id, "kind": item.kind, "holder": item.holder, "other": item.other, "operator": operator});
        let audit = [item.id.as_str(), item.holder.as_str(), item.other.as_str()]
            .iter()
            .map(|reference| {
                AuditRow::new(now, by.actor, event, by.source, reference, detail.clone())
            })
            .collect();
        let closed = Closed {
            action,
            by: operator.to_string(),
            at: now,
        };
        let changes = Changes {
            persons,
            audit,
            open_reviews: Vec::new(),
            close_reviews: vec![(item.id.clone(), closed.clone())],
        };
        if records.commit(changes).await? == Commit::Done {
            tracing::info!(target: "audit", event, review = %item.id, operator = %operator, "a review item was closed");
            return Ok(Resolved::Done(ReviewItem {
                closed: Some(closed),
                ..item
            }));
        }
    }
    Err(too_many_conflicts())
}

/// The other person's ways in and numbers moved to the holder.
fn merge(mut holder: Person, mut other: Person, now: u64) -> (Person, Person) {
    for w in other.ways_in.drain(..) {
        if !holder.ways_in.iter().any(|h| h.key == w.key) {
            holder.ways_in.push(w);
        }
    }
    for c in other.citizen_ids.drain(..) {
        if !holder.citizen_ids.iter().any(|h| h.key == c.key) {
            holder.citizen_ids.push(c);
        }
    }
    holder.updated = now;
    other.updated = now;
    (holder, other)
}

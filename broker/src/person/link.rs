//! Linking an account that has no proven citizen ID number (an old portal account) to one,
//! checked against the population registry with the name and birth date.

use connectors::population_registry::RegistryAnswer;
use connectors::{normalise_id, Assurance};
use records::{AuditRow, Commit, Records};
use serde_json::json;

use super::draft::{backoff, too_many_conflicts, Draft, ATTEMPTS};
use super::resolve::{bind_id, RegistryAnswers};
use crate::config::Settings;
use store::StoreResult;

/// The outcome of a link attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkOutcome {
    /// Linked (or already linked to this person).
    Linked,
    /// The registry does not confirm the number with this name and birth date (unknown
    /// number or other details: one answer, so the form is no oracle of which numbers exist).
    Mismatch,
    /// The number is bound to another account: a registry check never takes it over.
    TakenByAnother,
    /// No registry is configured, or it cannot answer now.
    Unavailable,
}

/// The source recorded for registry-checked links.
pub const REGISTRY_SOURCE: &str = "registry";

/// Checks `citizen_id` with `name` and `birthdate` at the registry and, on a match, binds it
/// to the person at the `low` level (a registry check proves the number exists with these
/// details, not that this citizen holds it).
pub async fn link(
    settings: &Settings,
    records: &dyn Records,
    person_id: &str,
    citizen_id: &str,
    name: &str,
    birthdate: &str,
    now: u64,
) -> StoreResult<LinkOutcome> {
    let Some(registry) = &settings.registry else {
        return Ok(LinkOutcome::Unavailable);
    };
    let value = normalise_id(citizen_id);
    match registry.check(&value, name.trim(), birthdate.trim()).await {
        Ok(RegistryAnswer::Match) => {}
        Ok(RegistryAnswer::NoMatch) => return Ok(LinkOutcome::Mismatch),
        Err(e) => {
            tracing::warn!(error = %e, "population registry check failed");
            return Ok(LinkOutcome::Unavailable);
        }
    }
    let mut answers = RegistryAnswers::default();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let mut draft = Draft::new(settings, records);
        match draft.binding(&value).await? {
            Some(b) if b.person == person_id => return Ok(LinkOutcome::Linked),
            Some(b) => {
                let row = AuditRow::new(
                    now,
                    "citizen",
                    "link.refused",
                    REGISTRY_SOURCE,
                    person_id,
                    json!({"holder": b.person, "bound_level": b.level}),
                );
                records.audit(&[row]).await?;
                tracing::warn!(target: "audit", event = "link.refused", person = %person_id, "a registry-checked link was refused: the number is bound to another account");
                return Ok(LinkOutcome::TakenByAnother);
            }
            None => {}
        }
        let mut person = draft
            .person(person_id)
            .await?
            .unwrap_or_else(|| super::Person::new(person_id));
        let mapped = answers.current(settings, &value).await;
        bind_id(
            &mut draft,
            &mut person,
            &value,
            mapped.as_deref(),
            Assurance::Low,
            REGISTRY_SOURCE,
            now,
        )
        .await?;
        person.updated = now;
        draft.stage(person);
        let person = person_id.to_string();
        draft.audit(
            AuditRow::new(now, "citizen", "link.created", REGISTRY_SOURCE, person_id, json!({})),
            move || tracing::info!(target: "audit", event = "link.created", person = %person, "account linked to a citizen ID number checked at the registry"),
        );
        if draft.commit().await? == Commit::Done {
            return Ok(LinkOutcome::Linked);
        }
    }
    Err(too_many_conflicts())
}

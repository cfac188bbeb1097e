//! Linking an account that has no proven citizen ID number (an old portal account) to one,
//! checked against the population registry with the name and birth date.

use connectors::population_registry::RegistryAnswer;
use connectors::{normalise_id, Assurance};

use super::resolve::bind_id;
use super::{binding, load, save};
use crate::config::Settings;
use crate::util::now_millis;
use store::{Store, StoreResult};

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
    store: &dyn Store,
    person_id: &str,
    citizen_id: &str,
    name: &str,
    birthdate: &str,
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
    match binding(settings, store, &value).await? {
        Some(b) if b.person == person_id => return Ok(LinkOutcome::Linked),
        Some(_) => {
            tracing::warn!(target: "audit", event = "link.refused", person = %person_id, "a registry-checked link was refused: the number is bound to another account");
            return Ok(LinkOutcome::TakenByAnother);
        }
        None => {}
    }
    let now = now_millis();
    let mut person = load(store, person_id)
        .await?
        .unwrap_or_else(|| super::Person::new(person_id));
    let mapped = super::resolve::current_number(settings, &value).await;
    bind_id(
        settings,
        store,
        &mut person,
        &value,
        mapped.as_deref(),
        Assurance::Low,
        REGISTRY_SOURCE,
        now,
    )
    .await?;
    person.updated = now;
    save(store, &person).await?;
    tracing::info!(target: "audit", event = "link.created", person = %person_id, "account linked to a citizen ID number checked at the registry");
    Ok(LinkOutcome::Linked)
}

//! From a verified identity to its person, with the binding rules of citizen ID numbers.

use connectors::{Assurance, Identity};

use super::{binding, id_key, link_key, load, save, Binding, IdStatus, Person};
use crate::config::Settings;
use crate::util::{now_millis, random_token};
use store::{Store, StoreResult};

/// What to do when the identity proves a number bound to another person through a weak
/// source: a `low` binding, such as an old account linked after a registry check, which
/// shows knowledge of the number, not possession of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Stop and ask the citizen ([`Resolution::Claim`]).
    Ask,
    /// The citizen proved the older account is theirs: join it.
    Merge(String),
    /// The citizen says the older account is not theirs: suspend its binding.
    TakeOver,
}

/// The outcome of a resolution.
#[derive(Debug)]
pub enum Resolution {
    /// The person, and whether a weaker binding of someone else was suspended for it.
    Found {
        /// The person.
        person: Person,
        /// A weaker binding of the same number to another person was suspended.
        suspended_other: bool,
    },
    /// The number is bound to another person through a weaker source: the citizen must say
    /// whether that account is theirs.
    Claim {
        /// The weak binding.
        weak: Binding,
    },
}

/// Finds or creates the person of a verified identity, applies the binding rules, and
/// refreshes the person's attributes from the source.
pub async fn resolve(
    settings: &Settings,
    store: &dyn Store,
    connector: &str,
    identity: &Identity,
    claim: Claim,
) -> StoreResult<Resolution> {
    let now = now_millis();
    let ext_key = link_key(settings, connector, &identity.subject);
    let ext_person = store
        .get(&ext_key, now)
        .await?
        .map(|v| String::from_utf8_lossy(&v).into_owned());
    let proven = identity
        .citizen_id
        .as_ref()
        .filter(|c| c.proven && !c.value.is_empty())
        .map(|c| c.value.clone());
    let level = identity.assurance;

    let mut suspended_other = false;
    let mut bind = false;
    let mut claim_answered = false;
    let mut target: Option<String> = match &proven {
        None => ext_person.clone(),
        Some(value) => match binding(settings, store, value).await? {
            None => {
                bind = true;
                ext_person.clone()
            }
            Some(b) if Some(&b.person) == ext_person.as_ref() => {
                bind = level > b.level;
                ext_person.clone()
            }
            Some(b) if b.level >= level || b.level > Assurance::Low => match &ext_person {
                // Proven before by a source that proves possession (a bank, a state
                // credential), or at least as strongly: the same citizen, whose binding
                // a stronger proof raises.
                None => {
                    bind = level > b.level;
                    Some(b.person)
                }
                Some(p) => {
                    // Two accounts both proven: never move a binding to an equal or weaker
                    // proof. Operators review the pair.
                    tracing::warn!(target: "audit", event = "binding.refused", connector, level = %level, bound_level = %b.level, "a number already bound at an equal or stronger level was proven again for another account");
                    Some(p.clone())
                }
            },
            Some(b) => {
                claim_answered = true;
                match claim {
                    Claim::Ask => return Ok(Resolution::Claim { weak: b }),
                    Claim::Merge(ref id) if *id == b.person => {
                        bind = true;
                        Some(b.person)
                    }
                    Claim::Merge(_) => return Ok(Resolution::Claim { weak: b }),
                    Claim::TakeOver => {
                        // Binding the number below suspends the weak binding and audits it.
                        suspended_other = true;
                        bind = true;
                        ext_person.clone()
                    }
                }
            }
        },
    };

    // An old number is bound with the registry's current one. A weak binding of the current
    // number to someone else is met as one of the proven number is: the citizen is asked
    // (once: an answer given for the proven number stands).
    let mapped = match (&proven, bind) {
        (Some(value), true) => current_number(settings, value).await,
        _ => None,
    };
    if let (Some(current), false) = (&mapped, claim_answered) {
        if let Some(b) = binding(settings, store, current).await? {
            if Some(&b.person) != target.as_ref() && b.level == Assurance::Low && level > b.level {
                match claim {
                    Claim::Ask => return Ok(Resolution::Claim { weak: b }),
                    Claim::Merge(ref id) if *id == b.person => target = Some(b.person),
                    Claim::Merge(_) => return Ok(Resolution::Claim { weak: b }),
                    Claim::TakeOver => suspended_other = true,
                }
            }
        }
    }

    // Find or create the person; two first logins at once agree through put_new.
    let id = match target {
        Some(id) => id,
        None => {
            let fresh = random_token(16);
            if store.put_new(&ext_key, fresh.as_bytes(), None, now).await? {
                fresh
            } else {
                store
                    .get(&ext_key, now)
                    .await?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or(fresh)
            }
        }
    };
    if ext_person.as_deref() != Some(id.as_str()) {
        store.put(&ext_key, id.as_bytes(), None, now).await?;
    }
    let mut person = load(store, &id).await?.unwrap_or_else(|| Person::new(&id));
    person.add_link(connector, &identity.subject, now);
    if let (true, Some(value)) = (bind, &proven) {
        let mapped = mapped.as_deref();
        bind_id(
            settings,
            store,
            &mut person,
            value,
            mapped,
            level,
            connector,
            now,
        )
        .await?;
    }
    for (k, v) in &identity.claims {
        person.claims.insert(k.clone(), v.clone());
    }
    person.updated = now;
    save(store, &person).await?;
    Ok(Resolution::Found {
        person,
        suspended_other,
    })
}

/// The current number the population registry maps an old one to, when it differs.
pub async fn current_number(settings: &Settings, value: &str) -> Option<String> {
    let registry = settings.registry.as_ref()?;
    match registry.current_id(value).await {
        Ok(current) => current.filter(|c| c != value),
        Err(e) => {
            tracing::warn!(error = %e, "registry lookup of a current ID number failed");
            None
        }
    }
}

/// Binds a number, and `mapped`, the current number the registry maps it to
/// ([`current_number`]), to a person.
#[allow(clippy::too_many_arguments)]
pub async fn bind_id(
    settings: &Settings,
    store: &dyn Store,
    person: &mut Person,
    value: &str,
    mapped: Option<&str>,
    level: Assurance,
    source: &str,
    now: u64,
) -> StoreResult<()> {
    for v in std::iter::once(value).chain(mapped) {
        let v = v.to_string();
        match binding(settings, store, &v).await? {
            Some(b) if b.person != person.id && b.level >= level => {
                tracing::warn!(target: "audit", event = "binding.refused", source, "a mapped ID number is bound to another account at an equal or stronger level");
                continue;
            }
            Some(b) if b.person != person.id => {
                suspend(store, &b.person, &v, now).await?;
                let mapped = v != value;
                tracing::warn!(target: "audit", event = "binding.suspended", source, level = %level, bound_level = %b.level, bound_source = %b.source, suspended_person = %b.person, mapped, "a weaker binding of a citizen ID number was suspended by a stronger proof");
            }
            _ => {}
        }
        let b = Binding {
            person: person.id.clone(),
            level: person.id_level(&v).map_or(level, |l| l.max(level)),
            source: source.to_string(),
        };
        let bytes = serde_json::to_vec(&b).unwrap_or_default();
        store.put(&id_key(settings, &v), &bytes, None, now).await?;
        person.add_id(&v, level, source, now);
    }
    Ok(())
}

async fn suspend(store: &dyn Store, person_id: &str, value: &str, now: u64) -> StoreResult<()> {
    if let Some(mut p) = load(store, person_id).await? {
        for c in p.citizen_ids.iter_mut().filter(|c| c.value == value) {
            c.status = IdStatus::Suspended;
            c.at = now;
        }
        p.updated = now;
        save(store, &p).await?;
    }
    Ok(())
}

// On the demo's configuration, the quickest complete one.
#[cfg(all(test, feature = "demo"))]
mod tests {
    use super::*;
    use connectors::CitizenId;

    fn identity(subject: &str, number: &str, assurance: Assurance) -> Identity {
        Identity {
            subject: subject.into(),
            citizen_id: Some(CitizenId {
                value: number.into(),
                proven: true,
            }),
            claims: Default::default(),
            assurance,
            amr: vec![],
        }
    }

    async fn found(r: StoreResult<Resolution>) -> Person {
        match r.expect("store answers") {
            Resolution::Found { person, .. } => person,
            Resolution::Claim { .. } => panic!("no weak binding here"),
        }
    }

    #[tokio::test]
    async fn a_stronger_proof_of_the_same_number_raises_its_binding() {
        let dir = tempfile::tempdir().expect("dir");
        let config = crate::demo::prepare(dir.path()).expect("demo files");
        let mut settings =
            crate::config::load_str(crate::demo::DEMO_CONFIG, &config, crate::config::Mode::Demo)
                .unwrap_or_else(|_| panic!("demo configuration loads"));
        // No registry: nothing here depends on a service on the demo's port.
        settings.registry = None;
        let store =
            store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).expect("store");
        let number = "079201001234";
        let bank = identity("card-1", number, Assurance::Substantial);
        let first = found(resolve(&settings, &store, "bank-card", &bank, Claim::Ask).await).await;
        let bound = binding(&settings, &store, number).await.expect("read");
        assert_eq!(bound.map(|b| b.level), Some(Assurance::Substantial));

        // The same number proven by a state credential: same person, binding now `high`.
        let ctid = identity("ctid-1", number, Assurance::High);
        let second = found(resolve(&settings, &store, "ctid", &ctid, Claim::Ask).await).await;
        assert_eq!(second.id, first.id);
        let bound = binding(&settings, &store, number)
            .await
            .expect("read")
            .expect("bound");
        assert_eq!((bound.level, bound.person), (Assurance::High, first.id));
        assert_eq!(second.id_level(number), Some(Assurance::High));
    }
}

//! From a verified identity to its person, with the binding rules of citizen ID numbers.

use std::collections::HashMap;

use connectors::{Assurance, Identity};
use records::{AuditRow, Commit, Records, ReviewItem, ReviewKind};
use serde_json::json;

use super::draft::{backoff, too_many_conflicts, Draft, ATTEMPTS};
use super::{id_hash, Binding, IdStatus, Person};
use crate::config::Settings;
use crate::util::random_token;
use store::StoreResult;

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
///
/// The rules decide on what the records hold now and their outcome is committed at once; if
/// another login changed any of it meanwhile (the same citizen's first login through another
/// source, say), the commit is refused and the rules decide again on the new state, so the
/// loser of a race joins the winner.
pub async fn resolve(
    settings: &Settings,
    records: &dyn Records,
    connector: &str,
    identity: &Identity,
    claim: Claim,
    now: u64,
) -> StoreResult<Resolution> {
    let mut registry = RegistryAnswers::default();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            backoff(attempt).await;
        }
        let mut draft = Draft::new(settings, records);
        let resolution =
            decide(&mut draft, &mut registry, connector, identity, &claim, now).await?;
        let Resolution::Found {
            mut person,
            suspended_other,
        } = resolution
        else {
            // Asking the citizen writes nothing.
            return Ok(resolution);
        };
        let written = draft.is_staged(&person.id);
        if draft.commit().await? == Commit::Done {
            if written {
                person.version += 1;
            }
            return Ok(Resolution::Found {
                person,
                suspended_other,
            });
        }
    }
    Err(too_many_conflicts())
}

/// The registry's answers, asked once per resolution however often it is decided again.
#[derive(Default)]
pub(crate) struct RegistryAnswers(HashMap<String, Option<String>>);

impl RegistryAnswers {
    pub(crate) async fn current(&mut self, settings: &Settings, value: &str) -> Option<String> {
        if let Some(known) = self.0.get(value) {
            return known.clone();
        }
        let answer = current_number(settings, value).await;
        self.0.insert(value.to_string(), answer.clone());
        answer
    }
}

/// One decision of the binding rules, staged in `draft`.
async fn decide(
    draft: &mut Draft<'_>,
    registry: &mut RegistryAnswers,
    connector: &str,
    identity: &Identity,
    claim: &Claim,
    now: u64,
) -> StoreResult<Resolution> {
    let settings = draft.settings();
    let ext_person = draft.way_in(connector, &identity.subject).await?;
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
        Some(value) => match draft.binding(value).await? {
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
                    let key = id_hash(settings, value);
                    draft.review(ReviewItem::open(
                        ReviewKind::Conflict,
                        &key,
                        &b.person,
                        p,
                        now,
                    ));
                    let detail = json!({"holder": b.person, "other": p, "level": level, "bound_level": b.level, "key": key});
                    let (connector_id, bound_level) = (connector.to_string(), b.level);
                    draft.audit(
                        AuditRow::new(now, "citizen", "binding.refused", connector, p, detail),
                        move || tracing::warn!(target: "audit", event = "binding.refused", connector = %connector_id, level = %level, bound_level = %bound_level, "a number already bound at an equal or stronger level was proven again for another account"),
                    );
                    Some(p.clone())
                }
            },
            Some(b) => {
                claim_answered = true;
                match claim {
                    Claim::Ask => return Ok(Resolution::Claim { weak: b }),
                    Claim::Merge(id) if *id == b.person => {
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
        (Some(value), true) => registry.current(settings, value).await,
        _ => None,
    };
    if let (Some(current), false) = (&mapped, claim_answered) {
        if let Some(b) = draft.binding(current).await? {
            if Some(&b.person) != target.as_ref() && b.level == Assurance::Low && level > b.level {
                match claim {
                    Claim::Ask => return Ok(Resolution::Claim { weak: b }),
                    Claim::Merge(id) if *id == b.person => target = Some(b.person),
                    Claim::Merge(_) => return Ok(Resolution::Claim { weak: b }),
                    Claim::TakeOver => suspended_other = true,
                }
            }
        }
    }

    // Find or create the person; two first logins at once agree because the way in (and a
    // proven number) can be written for one person only.
    let id = target.unwrap_or_else(|| random_token(16));
    if let Some(old) = ext_person.as_ref().filter(|old| **old != id) {
        // The way in now leads to the person it joined.
        if let Some(mut o) = draft.person(old).await? {
            o.links
                .retain(|l| !(l.connector == connector && l.subject == identity.subject));
            o.updated = now;
            draft.stage(o);
        }
    }
    let stored = draft.person(&id).await?;
    let mut person = stored.clone().unwrap_or_else(|| Person::new(&id));
    person.add_link(connector, &identity.subject, now);
    if let (true, Some(value)) = (bind, &proven) {
        bind_id(
            draft,
            &mut person,
            value,
            mapped.as_deref(),
            level,
            connector,
            now,
        )
        .await?;
    }
    if let Claim::Merge(id) = claim {
        if *id == person.id {
            draft.audit(
                AuditRow::new(now, "citizen", "person.joined", connector, id, json!({})),
                || {},
            );
        }
    }
    for (k, v) in &identity.claims {
        person.claims.insert(k.clone(), v.clone());
    }
    // A login that changes nothing writes nothing (and cannot conflict with another).
    let unchanged = stored.as_ref().is_some_and(|s| {
        let mut same = person.clone();
        same.updated = s.updated;
        same == *s
    });
    if !unchanged {
        person.updated = now;
        draft.stage(person.clone());
    }
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
/// ([`current_number`]), to a person; the caller stages the person.
pub async fn bind_id(
    draft: &mut Draft<'_>,
    person: &mut Person,
    value: &str,
    mapped: Option<&str>,
    level: Assurance,
    source: &str,
    now: u64,
) -> StoreResult<()> {
    let settings = draft.settings();
    for v in std::iter::once(value).chain(mapped) {
        let key = id_hash(settings, v);
        let is_mapped = v != value;
        match draft.binding(v).await? {
            Some(b) if b.person != person.id && b.level >= level => {
                let src = source.to_string();
                let detail = json!({"holder": b.person, "level": level, "bound_level": b.level, "mapped": is_mapped, "key": key});
                draft.audit(
                    AuditRow::new(now, "citizen", "binding.refused", source, &person.id, detail),
                    move || tracing::warn!(target: "audit", event = "binding.refused", source = %src, "a mapped ID number is bound to another account at an equal or stronger level"),
                );
                continue;
            }
            Some(b) if b.person != person.id => {
                suspend(draft, &b.person, v, now).await?;
                draft.review(ReviewItem::open(
                    ReviewKind::Suspended,
                    &key,
                    &person.id,
                    &b.person,
                    now,
                ));
                let detail = json!({"by": person.id, "level": level, "bound_level": b.level, "bound_source": b.source, "mapped": is_mapped, "key": key});
                let src = source.to_string();
                draft.audit(
                    AuditRow::new(now, "citizen", "binding.suspended", source, &b.person, detail),
                    move || tracing::warn!(target: "audit", event = "binding.suspended", source = %src, level = %level, bound_level = %b.level, bound_source = %b.source, suspended_person = %b.person, mapped = is_mapped, "a weaker binding of a citizen ID number was suspended by a stronger proof"),
                );
            }
            _ => {}
        }
        let before = person.id_level(v);
        person.add_id(v, level, source, now);
        if before.is_none_or(|l| level > l) {
            let event = if before.is_some() {
                "binding.raised"
            } else {
                "binding.created"
            };
            let detail = json!({"level": level, "mapped": is_mapped, "key": key});
            draft.audit(
                AuditRow::new(now, "citizen", event, source, &person.id, detail),
                || {},
            );
        }
    }
    Ok(())
}

async fn suspend(draft: &mut Draft<'_>, person_id: &str, value: &str, now: u64) -> StoreResult<()> {
    if let Some(mut p) = draft.person(person_id).await? {
        for c in p.citizen_ids.iter_mut().filter(|c| c.value == value) {
            c.status = IdStatus::Suspended;
            c.at = now;
        }
        p.updated = now;
        draft.stage(p);
    }
    Ok(())
}

// On the demo's configuration, the quickest complete one.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::person::binding;
    use connectors::CitizenId;
    use records::SharedRecords;
    use std::sync::Arc;

    /// The time of the logins in these tests (Unix ms).
    const T: u64 = 1_800_000_000_000;

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
        match r.expect("records answer") {
            Resolution::Found { person, .. } => person,
            Resolution::Claim { .. } => panic!("no weak binding here"),
        }
    }

    /// The least configuration that loads: a key, a pairwise secret, no registry (nothing
    /// here depends on a service).
    fn settings(dir: &std::path::Path) -> Settings {
        let (_, pem) =
            crate::keys::SigningKey::generate("k", crate::keys::SigningAlg::RS256).expect("key");
        std::fs::write(dir.join("rs256.pem"), pem).expect("key file");
        std::fs::write(dir.join("pairwise.secret"), "p".repeat(48)).expect("secret file");
        let text = "issuer = \"http://localhost:8080\"\n\
                    pairwise_secret = { file = \"pairwise.secret\" }\n\
                    [[keys]]\nkid = \"k\"\nalg = \"RS256\"\nfile = \"rs256.pem\"\n\
                    [tokens]\naccess_token_alg = \"RS256\"\n\
                    [store]\nkind = \"embedded\"\npath = \"s.redb\"\n";
        crate::config::load_str(text, &dir.join("broker.toml"), crate::config::Mode::Demo)
            .unwrap_or_else(|p| panic!("configuration loads: {p:?}"))
    }

    fn embedded(dir: &std::path::Path) -> SharedRecords {
        Arc::new(
            records::embedded::EmbeddedRecords::open(&dir.join("records.redb")).expect("records"),
        )
    }

    async fn a_stronger_proof_of_the_same_number_raises_its_binding(
        settings: &Settings,
        records: &dyn Records,
    ) {
        let number = "079201001234";
        let bank = identity("card-1", number, Assurance::Substantial);
        let first =
            found(resolve(settings, records, "bank-card", &bank, Claim::Ask, T).await).await;
        let bound = binding(settings, records, number).await.expect("read");
        assert_eq!(bound.map(|b| b.level), Some(Assurance::Substantial));

        // The same number proven by a state credential: same person, binding now `high`.
        let ctid = identity("ctid-1", number, Assurance::High);
        let second =
            found(resolve(settings, records, "ctid", &ctid, Claim::Ask, T + 1).await).await;
        assert_eq!(second.id, first.id);
        let bound = binding(settings, records, number)
            .await
            .expect("read")
            .expect("bound");
        assert_eq!(
            (bound.level, bound.person),
            (Assurance::High, first.id.clone())
        );
        assert_eq!(second.id_level(number), Some(Assurance::High));
        // Stored sealed and under its keyed hash only.
        let stored = records
            .person(&first.id)
            .await
            .expect("read")
            .expect("stored");
        let text = serde_json::to_string(&stored).expect("json");
        assert!(!text.contains(number), "{text}");
        assert!(
            !text.contains("card-1") && !text.contains("ctid-1"),
            "{text}"
        );
        let events: Vec<String> = records
            .audit_of(&first.id)
            .await
            .expect("audit")
            .into_iter()
            .map(|r| r.event)
            .collect();
        assert_eq!(events, ["binding.created", "binding.raised"]);
    }

    /// Many first logins of one citizen at once, through a bank card and CTID: one person,
    /// whom both ways in and the number lead to.
    async fn concurrent_first_logins_through_two_sources_make_one_person(
        settings: Arc<Settings>,
        records: SharedRecords,
    ) {
        let number = "001099012345";
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (settings, records) = (settings.clone(), records.clone());
            tasks.push(tokio::spawn(async move {
                let (connector, who) = if i % 2 == 0 {
                    (
                        "bank-card",
                        identity("card-9", number, Assurance::Substantial),
                    )
                } else {
                    ("ctid", identity("ctid-9", number, Assurance::High))
                };
                found(resolve(&settings, records.as_ref(), connector, &who, Claim::Ask, T).await)
                    .await
                    .id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.expect("task"));
        }
        let bound = binding(&settings, records.as_ref(), number)
            .await
            .expect("read")
            .expect("bound");
        assert!(ids.iter().all(|id| *id == bound.person), "{ids:?}");
        assert_eq!(bound.level, Assurance::High);
        for (connector, subject) in [("bank-card", "card-9"), ("ctid", "ctid-9")] {
            let key = crate::person::link_hash(&settings, connector, subject);
            assert_eq!(
                records.way_in(&key).await.expect("read"),
                Some(bound.person.clone())
            );
        }
        let person = crate::person::load(&settings, records.as_ref(), &bound.person)
            .await
            .expect("read")
            .expect("person");
        assert_eq!(person.links.len(), 2);
        assert_eq!(person.citizen_id(), Some(number));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn binding_rules_on_embedded_records() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = Arc::new(settings(dir.path()));
        let records = embedded(dir.path());
        a_stronger_proof_of_the_same_number_raises_its_binding(&settings, records.as_ref()).await;
        concurrent_first_logins_through_two_sources_make_one_person(settings, records).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn binding_rules_on_postgres_records() {
        let dir = tempfile::tempdir().expect("dir");
        let settings = Arc::new(settings(dir.path()));
        let db = records::testing::TestDb::create().await;
        let records = db.records().await;
        a_stronger_proof_of_the_same_number_raises_its_binding(&settings, records.as_ref()).await;
        concurrent_first_logins_through_two_sources_make_one_person(settings, records).await;
        drop(db);
    }
}

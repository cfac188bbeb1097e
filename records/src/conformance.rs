//! One suite both backends pass (feature `conformance`; run by `records/tests/`).
//! Every function panics with a message on failure; ids are random, so the suite can share
//! one database with other runs' leftovers.

use std::sync::Arc;

use serde_json::json;

use crate::{
    new_id, Activity, AuditQuery, AuditRow, Changes, CitizenId, Closed, Commit, Entry, IdStatus,
    InstanceReport, Level, Person, Records, ReviewAction, ReviewItem, ReviewKind, WayIn,
};

fn cid(key: &str, level: Level, status: IdStatus) -> CitizenId {
    CitizenId {
        key: key.into(),
        sealed: format!("sealed({key})"),
        level,
        source: "bank-card".into(),
        at: 1,
        status,
    }
}

fn way(key: &str) -> WayIn {
    WayIn {
        key: key.into(),
        connector: "bank-card".into(),
        sealed_subject: format!("sealed({key})"),
        at: 1,
    }
}

fn one(p: Person) -> Changes {
    Changes {
        persons: vec![p],
        ..Changes::default()
    }
}

async fn commit(r: &dyn Records, changes: Changes) -> Commit {
    r.commit(changes).await.expect("records answer")
}

async fn person(r: &dyn Records, id: &str) -> Option<Person> {
    r.person(id).await.expect("records answer")
}

/// Runs every test of the suite. `empty` must hold no records (the import target).
pub async fn run_all(records: Arc<dyn Records>, empty: Arc<dyn Records>) {
    persons_are_written_at_their_version(records.as_ref()).await;
    a_number_is_actively_bound_to_one_person(records.as_ref()).await;
    a_way_in_leads_to_one_person(records.as_ref()).await;
    a_change_set_is_all_or_nothing(records.as_ref()).await;
    consents_settings_audit_and_activity(records.as_ref()).await;
    reviews_open_once_and_close_once(records.as_ref()).await;
    concurrent_first_logins_make_one_person(records.clone()).await;
    concurrent_updates_lose_nothing(records.clone()).await;
    concurrent_sign_ins_are_all_recorded(records.clone()).await;
    configuration_versions_are_compare_and_set(records.clone()).await;
    export_import_round_trip(records.as_ref(), empty.as_ref()).await;
    instances_and_recent_audit(records.as_ref()).await;
    export_streams_and_stops_at_the_sinks_error(records.as_ref()).await;
}

/// `export_each` hands on every record `export` holds, and stops at the sink's first error,
/// returning it (a full disk ends the export, not the records).
pub async fn export_streams_and_stops_at_the_sinks_error(r: &dyn Records) {
    let all = r.export().await.expect("export");
    assert!(all.len() >= 3, "the suite's records are there");
    let mut streamed = Vec::new();
    let n = r
        .export_each(&mut |e| {
            streamed.push(e);
            Ok(())
        })
        .await
        .expect("export_each");
    assert_eq!(n as usize, all.len());
    assert_eq!(streamed, all);
    let mut seen = 0;
    let err = r
        .export_each(&mut |_| {
            seen += 1;
            if seen == 2 {
                Err(crate::RecordsError::Unavailable("disk full".into()))
            } else {
                Ok(())
            }
        })
        .await
        .expect_err("the sink's error");
    assert!(err.to_string().contains("disk full"), "{err}");
    assert_eq!(seen, 2, "nothing handed on after the error");
}

/// Many sign-ins at once (both backends write them in groups): each call returns
/// once its row is stored, and every row is there, once.
pub async fn concurrent_sign_ins_are_all_recorded(r: Arc<dyn Records>) {
    const N: u64 = 64;
    let person = new_id();
    let mut tasks = Vec::new();
    for i in 0..N {
        let (r, person) = (r.clone(), person.clone());
        tasks.push(tokio::spawn(async move {
            let a = Activity {
                id: new_id(),
                person,
                client: format!("rp-{i}"),
                connector: "ctid".into(),
                at: 1_000 + i,
            };
            r.record_activity(&a).await.expect("record");
            // Returned: the row is readable now.
            let recent = r.activity(&a.person, N as usize).await.expect("answer");
            assert!(
                recent.contains(&a),
                "sign-in {i} not stored when its call returned"
            );
        }));
    }
    for t in tasks {
        t.await.expect("sign-in task");
    }
    let all = r.activity(&person, 2 * N as usize).await.expect("answer");
    assert_eq!(all.len() as u64, N, "every sign-in once");
    let mut clients: Vec<_> = all.iter().map(|a| a.client.clone()).collect();
    clients.sort();
    clients.dedup();
    assert_eq!(clients.len() as u64, N);
}

/// A person is created once (version 0 means "must not exist"), and every write names the
/// version it read; a stale one changes nothing.
pub async fn persons_are_written_at_their_version(r: &dyn Records) {
    let id = new_id();
    let mut p = Person::new(&id);
    p.claims.insert("name".into(), json!("An"));
    p.updated = 5;
    assert_eq!(commit(r, one(p.clone())).await, Commit::Done);
    let stored = person(r, &id).await.expect("person stored");
    assert_eq!(stored.version, 1);
    assert_eq!(stored.claims.get("name"), Some(&json!("An")));
    assert_eq!(stored.updated, 5);
    assert_eq!(
        commit(r, one(p.clone())).await,
        Commit::Conflict,
        "created twice"
    );

    let mut next = stored.clone();
    next.claims.insert("name".into(), json!("Bình"));
    assert_eq!(commit(r, one(next.clone())).await, Commit::Done);
    assert_eq!(person(r, &id).await.map(|p| p.version), Some(2));
    assert_eq!(
        commit(r, one(next)).await,
        Commit::Conflict,
        "stale version"
    );
    let now = person(r, &id).await.expect("person");
    assert_eq!(now.claims.get("name"), Some(&json!("Bình")));
    assert!(person(r, &new_id()).await.is_none());
}

/// Two persons never hold one number actively; a suspended row does not count; a number
/// moves between two persons of one change set.
pub async fn a_number_is_actively_bound_to_one_person(r: &dyn Records) {
    let key = new_id();
    let (a, b) = (new_id(), new_id());
    let mut pa = Person::new(&a);
    pa.citizen_ids.push(cid(&key, Level::Low, IdStatus::Active));
    assert_eq!(commit(r, one(pa)).await, Commit::Done);
    let bound = r.binding(&key).await.expect("answer").expect("bound");
    assert_eq!(
        (bound.person.as_str(), bound.level),
        (a.as_str(), Level::Low)
    );

    let mut pb = Person::new(&b);
    pb.citizen_ids
        .push(cid(&key, Level::High, IdStatus::Active));
    assert_eq!(commit(r, one(pb.clone())).await, Commit::Conflict);
    assert!(
        person(r, &b).await.is_none(),
        "the losing person was not written"
    );

    // Suspended at B: allowed beside A's active binding.
    pb.citizen_ids[0].status = IdStatus::Suspended;
    assert_eq!(commit(r, one(pb)).await, Commit::Done);
    assert_eq!(
        r.binding(&key).await.expect("answer").map(|b| b.person),
        Some(a.clone())
    );

    // Moved: A suspended and B active in one change set.
    let mut pa = person(r, &a).await.expect("a");
    pa.citizen_ids[0].status = IdStatus::Suspended;
    let mut pb = person(r, &b).await.expect("b");
    pb.citizen_ids[0].status = IdStatus::Active;
    // B first: the order inside a change set does not matter.
    let changes = Changes {
        persons: vec![pb, pa],
        ..Changes::default()
    };
    assert_eq!(commit(r, changes).await, Commit::Done);
    let bound = r.binding(&key).await.expect("answer").expect("bound");
    assert_eq!((bound.person, bound.level), (b.clone(), Level::High));
    let pa = person(r, &a).await.expect("a");
    assert_eq!(pa.citizen_ids[0].status, IdStatus::Suspended);
    assert_eq!(pa.citizen_ids[0].sealed, format!("sealed({key})"));

    // Dropping the row releases the number.
    let mut pb = person(r, &b).await.expect("b");
    pb.citizen_ids.clear();
    assert_eq!(commit(r, one(pb)).await, Commit::Done);
    assert!(r.binding(&key).await.expect("answer").is_none());
}

/// A way in leads to one person.
pub async fn a_way_in_leads_to_one_person(r: &dyn Records) {
    let key = new_id();
    let (a, b) = (new_id(), new_id());
    let mut pa = Person::new(&a);
    pa.ways_in.push(way(&key));
    assert_eq!(commit(r, one(pa)).await, Commit::Done);
    assert_eq!(r.way_in(&key).await.expect("answer"), Some(a.clone()));
    let mut pb = Person::new(&b);
    pb.ways_in.push(way(&key));
    assert_eq!(commit(r, one(pb.clone())).await, Commit::Conflict);
    assert!(person(r, &b).await.is_none());

    // Moved from A to B in one change set.
    let mut pa = person(r, &a).await.expect("a");
    pa.ways_in.clear();
    assert_eq!(
        commit(
            r,
            Changes {
                persons: vec![pb, pa],
                ..Changes::default()
            }
        )
        .await,
        Commit::Done
    );
    assert_eq!(r.way_in(&key).await.expect("answer"), Some(b.clone()));
    let pb = person(r, &b).await.expect("b");
    assert_eq!(pb.ways_in, vec![way(&key)]);
    assert!(r.way_in(&new_id()).await.expect("answer").is_none());
    // Read whole through its way in: the same person, at the same version.
    assert_eq!(
        r.person_by_way_in(&key).await.expect("answer"),
        Some(pb),
        "the way in's person, whole"
    );
    assert!(r
        .person_by_way_in(&new_id())
        .await
        .expect("answer")
        .is_none());
}

/// A change set with one failing precondition writes nothing: not its other persons, not
/// its audit rows, not its review items.
pub async fn a_change_set_is_all_or_nothing(r: &dyn Records) {
    let key = new_id();
    let holder = new_id();
    let mut p = Person::new(&holder);
    p.citizen_ids.push(cid(&key, Level::High, IdStatus::Active));
    assert_eq!(commit(r, one(p)).await, Commit::Done);

    let (fresh, loser) = (new_id(), new_id());
    let mut taker = Person::new(&loser);
    taker
        .citizen_ids
        .push(cid(&key, Level::High, IdStatus::Active));
    let review = ReviewItem::open(ReviewKind::Conflict, &key, &holder, &loser, 7);
    let changes = Changes {
        persons: vec![Person::new(&fresh), taker],
        audit: vec![AuditRow::new(
            7,
            "citizen",
            "binding.created",
            "ctid",
            &fresh,
            json!({}),
        )],
        open_reviews: vec![review.clone()],
        close_reviews: vec![],
    };
    assert_eq!(commit(r, changes).await, Commit::Conflict);
    assert!(person(r, &fresh).await.is_none());
    assert!(r.audit_of(&fresh).await.expect("answer").is_empty());
    assert!(r.review(&review.id).await.expect("answer").is_none());

    // Closing a review that is not open is a conflict too.
    let changes = Changes {
        persons: vec![Person::new(&fresh)],
        close_reviews: vec![(
            review.id.clone(),
            Closed {
                action: ReviewAction::Keep,
                by: "op".into(),
                at: 8,
            },
        )],
        ..Changes::default()
    };
    assert_eq!(commit(r, changes).await, Commit::Conflict);
    assert!(person(r, &fresh).await.is_none());
}

/// Consents replace earlier ones; settings are compare-and-set; audit rows come back in
/// order; sign-ins newest first, purged by age.
pub async fn consents_settings_audit_and_activity(r: &dyn Records) {
    let p = new_id();
    assert_eq!(r.consent(&p, "app").await.expect("answer"), None);
    r.put_consent(&p, "app", &["openid".into()], 1)
        .await
        .expect("put");
    r.put_consent(&p, "app", &["openid".into(), "profile".into()], 2)
        .await
        .expect("put");
    assert_eq!(
        r.consent(&p, "app").await.expect("answer"),
        Some(vec!["openid".to_string(), "profile".to_string()])
    );
    assert_eq!(r.consent(&p, "other").await.expect("answer"), None);

    let name = format!("test-{}", new_id());
    let s = r.setting(&name).await.expect("answer");
    assert_eq!((s.version, s.value.clone()), (0, serde_json::Value::Null));
    assert!(r
        .set_setting(&name, 0, &json!({"a": 1}))
        .await
        .expect("set"));
    assert!(
        !r.set_setting(&name, 0, &json!({"b": 1}))
            .await
            .expect("set"),
        "stale"
    );
    assert!(r
        .set_setting(&name, 1, &json!({"a": 2}))
        .await
        .expect("set"));
    let s = r.setting(&name).await.expect("answer");
    assert_eq!((s.version, s.value), (2, json!({"a": 2})));

    let rows = vec![
        AuditRow::new(10, "admin", "review.kept", "admin-api", &p, json!({"n": 1})),
        AuditRow::new(
            11,
            "system",
            "binding.suspended",
            "ctid",
            &p,
            json!({"n": 2}),
        ),
    ];
    r.audit(&rows).await.expect("audit");
    r.audit(&rows[..1]).await.expect("audit again (idempotent)");
    assert_eq!(r.audit_of(&p).await.expect("answer"), rows);

    for (at, client) in [(100, "a"), (300, "c"), (200, "b")] {
        let a = Activity {
            id: new_id(),
            person: p.clone(),
            client: client.into(),
            connector: "ctid".into(),
            at,
        };
        r.record_activity(&a).await.expect("record");
    }
    let recent = r.activity(&p, 2).await.expect("answer");
    let clients: Vec<_> = recent.iter().map(|a| a.client.as_str()).collect();
    assert_eq!(clients, ["c", "b"]);
    assert!(r.purge_activity(250).await.expect("purge") >= 2);
    let left = r.activity(&p, 10).await.expect("answer");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].client, "c");
}

/// A review item opens once however often its event repeats, closes once, and opens again
/// if the event happens after it was closed.
pub async fn reviews_open_once_and_close_once(r: &dyn Records) {
    let (key, holder, other) = (new_id(), new_id(), new_id());
    let item = ReviewItem::open(ReviewKind::Suspended, &key, &holder, &other, 20);
    let open = |at| Changes {
        open_reviews: vec![ReviewItem {
            created: at,
            ..item.clone()
        }],
        ..Changes::default()
    };
    assert_eq!(commit(r, open(20)).await, Commit::Done);
    assert_eq!(commit(r, open(21)).await, Commit::Done);
    let stored = r.review(&item.id).await.expect("answer").expect("stored");
    assert_eq!(
        stored, item,
        "the second event left the open item as it was"
    );
    let listed = r.reviews(false).await.expect("answer");
    assert_eq!(listed.iter().filter(|i| i.id == item.id).count(), 1);

    let closed = Closed {
        action: ReviewAction::Keep,
        by: "operator-1".into(),
        at: 30,
    };
    let close = Changes {
        close_reviews: vec![(item.id.clone(), closed.clone())],
        ..Changes::default()
    };
    assert_eq!(commit(r, close.clone()).await, Commit::Done);
    assert_eq!(commit(r, close).await, Commit::Conflict, "closed twice");
    let stored = r.review(&item.id).await.expect("answer").expect("stored");
    assert_eq!(stored.closed, Some(closed));
    assert!(!r
        .reviews(false)
        .await
        .expect("answer")
        .iter()
        .any(|i| i.id == item.id));
    assert!(r
        .reviews(true)
        .await
        .expect("answer")
        .iter()
        .any(|i| i.id == item.id));
    assert_eq!(commit(r, open(40)).await, Commit::Done);
    let stored = r.review(&item.id).await.expect("answer").expect("stored");
    assert_eq!((stored.closed, stored.created), (None, 40));
}

/// What a login does with the records, reduced to its race: join the holder of the number,
/// or the person of the way in, or create one; commit; on conflict read again.
async fn first_login(r: &dyn Records, number: &str, way_key: &str) -> String {
    for _ in 0..50 {
        let holder = r.binding(number).await.expect("answer").map(|b| b.person);
        let via = r.way_in(way_key).await.expect("answer");
        let target = holder.clone().or(via.clone());
        let mut p = match &target {
            Some(id) => person(r, id).await.expect("person of an index entry"),
            None => Person::new(&new_id()),
        };
        // Decided on the person as read now: the holder read above may be stale (another
        // login bound the number in between), and a number is listed once.
        if !p.citizen_ids.iter().any(|c| c.key == number) {
            p.citizen_ids
                .push(cid(number, Level::High, IdStatus::Active));
        }
        let mut changes = Changes::default();
        if via.as_ref() != Some(&p.id) {
            if let Some(other) = &via {
                let mut o = person(r, other).await.expect("person of a way in");
                o.ways_in.retain(|w| w.key != way_key);
                changes.persons.push(o);
            }
            if !p.ways_in.iter().any(|w| w.key == way_key) {
                p.ways_in.push(way(way_key));
            }
        }
        let id = p.id.clone();
        changes.persons.push(p);
        if commit(r, changes).await == Commit::Done {
            return id;
        }
    }
    panic!("a first login kept conflicting");
}

/// Many concurrent first logins of one number through two sources end with one person,
/// which both ways in lead to.
pub async fn concurrent_first_logins_make_one_person(r: Arc<dyn Records>) {
    let number = new_id();
    let ways = [new_id(), new_id()];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (r, number, way_key) = (r.clone(), number.clone(), ways[i % 2].clone());
        tasks.push(tokio::spawn(async move {
            first_login(r.as_ref(), &number, &way_key).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task"));
    }
    let holder = r
        .binding(&number)
        .await
        .expect("answer")
        .expect("bound")
        .person;
    assert!(
        ids.iter().all(|id| *id == holder),
        "every login joined {holder}: {ids:?}"
    );
    for w in &ways {
        assert_eq!(r.way_in(w).await.expect("answer"), Some(holder.clone()));
    }
    let p = person(r.as_ref(), &holder).await.expect("holder");
    assert_eq!(p.citizen_ids.len(), 1);
    assert_eq!(p.ways_in.len(), 2);
}

/// Concurrent read-modify-write of one person and one setting lose no update.
pub async fn concurrent_updates_lose_nothing(r: Arc<dyn Records>) {
    let id = new_id();
    assert_eq!(
        commit(r.as_ref(), one(Person::new(&id))).await,
        Commit::Done
    );
    let name = format!("test-{}", new_id());
    let n = 12;
    let mut tasks = Vec::new();
    for i in 0..n {
        let (r, id, name) = (r.clone(), id.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let mut p = person(r.as_ref(), &id).await.expect("person");
                p.claims.insert(format!("c{i}"), json!(i));
                if commit(r.as_ref(), one(p)).await == Commit::Done {
                    break;
                }
            }
            loop {
                let s = r.setting(&name).await.expect("setting");
                let mut map = match s.value {
                    serde_json::Value::Object(m) => m,
                    _ => serde_json::Map::new(),
                };
                map.insert(format!("k{i}"), json!(i));
                let value = serde_json::Value::Object(map);
                if r.set_setting(&name, s.version, &value).await.expect("set") {
                    break;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let p = person(r.as_ref(), &id).await.expect("person");
    assert_eq!(p.claims.len(), n);
    assert_eq!(p.version, 1 + n as u64);
    let s = r.setting(&name).await.expect("setting");
    assert_eq!(s.value.as_object().map(|m| m.len()), Some(n));
    assert_eq!(s.version, n as u64);
}

/// Everything exported is imported as it was; a second import is refused unless forced,
/// and a forced one duplicates nothing.
pub async fn export_import_round_trip(r: &dyn Records, empty: &dyn Records) {
    let exported = r.export().await.expect("export");
    assert!(exported.iter().any(|e| matches!(e, Entry::Person(_))));
    assert!(exported.iter().any(|e| matches!(e, Entry::Review(_))));
    assert!(
        exported
            .iter()
            .any(|e| matches!(e, Entry::ConfigVersion(_))),
        "configuration versions move with the records"
    );
    let n = empty.import(exported.clone(), false).await.expect("import");
    assert_eq!(n, exported.len() as u64, "every entry written");
    let again = empty.import(exported.clone(), false).await;
    assert!(
        matches!(again, Err(crate::RecordsError::NotEmpty(_))),
        "{again:?}"
    );
    assert_eq!(
        empty.import(exported.clone(), true).await.expect("forced"),
        0
    );

    let mut back = empty.export().await.expect("export");
    let mut expected = exported;
    // Imported persons start again at version 1; everything else is identical.
    for e in expected.iter_mut() {
        if let Entry::Person(p) = e {
            p.version = 1;
        }
    }
    let order = |e: &Entry| serde_json::to_string(e).unwrap_or_default();
    expected.sort_by_key(order);
    back.sort_by_key(order);
    assert_eq!(back, expected);
    for e in &back {
        if let Entry::Person(p) = e {
            for c in p
                .citizen_ids
                .iter()
                .filter(|c| c.status == IdStatus::Active)
            {
                let bound = empty.binding(&c.key).await.expect("answer");
                assert_eq!(bound.map(|b| b.person), Some(p.id.clone()));
            }
            for w in &p.ways_in {
                assert_eq!(
                    empty.way_in(&w.key).await.expect("answer"),
                    Some(p.id.clone())
                );
            }
        }
    }
}

/// Of publishers that read the same head, exactly one publishes; the others write nothing
/// (not even their audit rows), and history keeps every version.
pub async fn configuration_versions_are_compare_and_set(r: Arc<dyn Records>) {
    let head = r.config_head().await.expect("records answer");
    let mark = new_id();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (r, mark) = (r.clone(), mark.clone());
        tasks.push(tokio::spawn(async move {
            let row = AuditRow::new(
                10,
                "op",
                "config.published",
                "console",
                &mark,
                json!({ "i": i }),
            );
            r.publish_config(head, &format!("# {mark} {i}\n"), "op", "race", 10, &[row])
                .await
                .expect("records answer")
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        if let Some(v) = t.await.expect("task") {
            won.push(v);
        }
    }
    assert_eq!(
        won,
        vec![head + 1],
        "exactly one publisher of version {}",
        head + 1
    );
    assert_eq!(r.config_head().await.expect("head"), head + 1);
    let rows = r.audit_of(&mark).await.expect("audit");
    assert_eq!(rows.len(), 1, "only the winner's audit row: {rows:?}");
    let live = r
        .config_version(None)
        .await
        .expect("live")
        .expect("a version");
    assert_eq!(live.version, head + 1);
    assert!(live.document.contains(&mark));
    // A stale publisher (and one ahead of the head) is refused.
    assert_eq!(
        r.publish_config(head, "# stale\n", "op", "", 11, &[])
            .await
            .expect("answer"),
        None
    );
    assert_eq!(
        r.publish_config(head + 5, "# ahead\n", "op", "", 11, &[])
            .await
            .expect("answer"),
        None
    );
    let next = r
        .publish_config(head + 1, "# next\n", "op2", "rollback", 12, &[])
        .await
        .expect("answer");
    assert_eq!(next, Some(head + 2));
    let history = r.config_history(2).await.expect("history");
    assert_eq!(
        history.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![head + 2, head + 1]
    );
    assert_eq!(history[0].author, "op2");
    assert_eq!(history[0].note, "rollback");
    let earlier = r
        .config_version(Some(head + 1))
        .await
        .expect("answer")
        .expect("kept");
    assert_eq!(earlier.document, live.document);
    assert_eq!(
        r.config_version(Some(head + 1000)).await.expect("answer"),
        None
    );
}

/// An instance's report replaces its earlier one; audit rows list newest first, filtered.
pub async fn instances_and_recent_audit(r: &dyn Records) {
    let name = format!("host-{}", new_id());
    for (version, problem) in [(1, ""), (2, "cannot open connector x")] {
        r.report_instance(&InstanceReport {
            instance: name.clone(),
            version,
            problem: problem.into(),
            seen: 100 + version,
        })
        .await
        .expect("records answer");
    }
    let mine: Vec<_> = r
        .instances()
        .await
        .expect("instances")
        .into_iter()
        .filter(|i| i.instance == name)
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].version, mine[0].problem.as_str()),
        (2, "cannot open connector x")
    );
    // A report a week newer than this one (another instance, after restarts) forgets it;
    // one just inside the week does not.
    let later = format!("host-{}", new_id());
    let names = |list: Vec<InstanceReport>| -> Vec<String> {
        list.into_iter().map(|i| i.instance).collect()
    };
    for (seen, kept) in [
        (102 + crate::INSTANCE_FORGOTTEN_AFTER_MS, true),
        (103 + crate::INSTANCE_FORGOTTEN_AFTER_MS, false),
    ] {
        r.report_instance(&InstanceReport {
            instance: later.clone(),
            version: 2,
            problem: String::new(),
            seen,
        })
        .await
        .expect("records answer");
        let listed = names(r.instances().await.expect("instances"));
        assert!(listed.contains(&later));
        assert_eq!(listed.contains(&name), kept, "seen {seen}: {listed:?}");
    }
    // An instance back after more than a week under the same name (a container's pid 1)
    // keeps its new report.
    let back = 200 + 3 * crate::INSTANCE_FORGOTTEN_AFTER_MS;
    r.report_instance(&InstanceReport {
        instance: later.clone(),
        version: 3,
        problem: String::new(),
        seen: back,
    })
    .await
    .expect("records answer");
    let listed = r.instances().await.expect("instances");
    assert!(
        listed
            .iter()
            .any(|i| i.instance == later && i.seen == back && i.version == 3),
        "{listed:?}"
    );

    let reference = new_id();
    let actor = format!("op-{}", new_id());
    let rows = [
        AuditRow::new(
            1_000,
            &actor,
            "config.published",
            "console",
            &reference,
            json!({}),
        ),
        AuditRow::new(
            2_000,
            &actor,
            "review.merged",
            "console",
            &reference,
            json!({}),
        ),
        AuditRow::new(
            3_000,
            "someone-else",
            "config_published",
            "console",
            &reference,
            json!({}),
        ),
    ];
    r.audit(&rows).await.expect("audit");
    let all = r
        .recent_audit(&AuditQuery {
            reference: Some(reference.clone()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("recent");
    assert_eq!(
        all.iter().map(|a| a.at).collect::<Vec<_>>(),
        vec![3_000, 2_000, 1_000]
    );
    let config_only = r
        .recent_audit(&AuditQuery {
            reference: Some(reference.clone()),
            event_prefix: Some("config.".into()),
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("recent");
    // `_` in a prefix is a character, not a wildcard.
    assert_eq!(
        config_only.iter().map(|a| a.at).collect::<Vec<_>>(),
        vec![1_000]
    );
    let by_actor = r
        .recent_audit(&AuditQuery {
            actor: Some(actor.clone()),
            limit: 1,
            ..AuditQuery::default()
        })
        .await
        .expect("recent");
    assert_eq!(
        by_actor.iter().map(|a| a.at).collect::<Vec<_>>(),
        vec![2_000]
    );
}

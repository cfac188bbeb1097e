//! The conformance suite on the embedded backend and on a real PostgreSQL at 127.0.0.1:5432
//! (each run in a database of its own, dropped afterwards). PostgreSQL must be reachable:
//! this test fails, never skips, without it.

use std::sync::Arc;

use records::embedded::EmbeddedRecords;
use records::postgres::{PgOptions, PgRecords};
use records::{Records, SharedRecords};

use records::testing as pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_embedded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a: SharedRecords =
        Arc::new(EmbeddedRecords::open(&dir.path().join("a.redb")).expect("open"));
    let b: SharedRecords =
        Arc::new(EmbeddedRecords::open(&dir.path().join("b.redb")).expect("open"));
    records::conformance::run_all(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_postgres() {
    let a = pg::TestDb::create().await;
    let b = pg::TestDb::create().await;
    records::conformance::run_all(a.records().await, b.records().await).await;
    drop(a);
    drop(b);
}

#[tokio::test]
async fn embedded_records_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("r.redb");
    let id = {
        let r = EmbeddedRecords::open(&path).expect("open");
        let p = records::Person::new(&records::new_id());
        let changes = records::Changes {
            persons: vec![p.clone()],
            ..Default::default()
        };
        assert_eq!(
            r.commit(changes).await.expect("commit"),
            records::Commit::Done
        );
        p.id
    };
    let r = EmbeddedRecords::open(&path).expect("reopen");
    assert_eq!(
        r.person(&id).await.expect("read").map(|p| p.version),
        Some(1)
    );
}

/// Sign-ins that arrive while none is being committed are written by one commit: on a
/// current-thread runtime every call below is queued before the committing task runs, so
/// the 50 logins cost one `fdatasync`, not 50.
#[tokio::test]
async fn embedded_sign_ins_that_arrive_together_share_one_commit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let r = EmbeddedRecords::open(&dir.path().join("r.redb")).expect("open");
    let person = records::new_id();
    let rows: Vec<records::Activity> = (0..50)
        .map(|i| records::Activity {
            id: records::new_id(),
            person: person.clone(),
            client: format!("rp-{i}"),
            connector: "ctid".into(),
            at: 1_000 + i,
        })
        .collect();
    let before = r.commits();
    let results = futures_util::future::join_all(rows.iter().map(|a| r.record_activity(a))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        r.commits() - before,
        1,
        "50 sign-ins queued together, one commit"
    );
    assert_eq!(r.activity(&person, 100).await.expect("read").len(), 50);
    // One more on its own: a commit of its own.
    let mut alone = rows[0].clone();
    alone.id = records::new_id();
    r.record_activity(&alone).await.expect("record");
    assert_eq!(r.commits() - before, 2);
}

#[tokio::test]
async fn postgres_schema_is_checked_and_migrated_once() {
    let db = pg::TestDb::create_bare().await;
    let options = db.options();
    let err = PgRecords::connect(&options)
        .await
        .expect_err("no schema yet");
    assert!(err.to_string().contains("broker migrate"), "{err}");
    let r = PgRecords::connect_unchecked(&options).expect("pool");
    // Two migrations at once: each version is applied once.
    let (x, y) = tokio::join!(r.migrate(), r.migrate());
    let mut applied = x.expect("migrate");
    applied.extend(y.expect("migrate"));
    let all: Vec<i32> = records::postgres::MIGRATIONS
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(applied, all, "every migration once, in order");
    assert_eq!(all.last(), Some(&records::postgres::schema_version()));
    PgRecords::connect(&options)
        .await
        .expect("schema now current");
    r.ping().await.expect("ping");
    drop(db);
}

#[tokio::test]
async fn postgres_unreachable_is_unavailable_within_the_timeout() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let mut options = PgOptions::new(&format!("postgres://127.0.0.1:{port}/x"));
    options.user = Some("postgres".into());
    options.acquire_timeout = std::time::Duration::from_millis(300);
    let r = PgRecords::connect_unchecked(&options).expect("pool");
    let err = r.person("p").await.expect_err("nothing listens");
    assert!(
        matches!(err, records::RecordsError::Unavailable(_)),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_pool_exhaustion_is_unavailable_not_a_hang() {
    let db = pg::TestDb::create().await;
    let mut options = db.options();
    options.pool_size = 1;
    options.acquire_timeout = std::time::Duration::from_millis(200);
    options.statement_timeout = std::time::Duration::from_millis(500);
    let r = PgRecords::connect(&options).await.expect("connect");
    // A statement slower than the statement timeout ends with Unavailable.
    let slow = r.sleep_for_tests(2.0).await;
    assert!(
        matches!(slow, Err(records::RecordsError::Unavailable(_))),
        "{slow:?}"
    );
    // While the only connection is busy, another caller gets Unavailable after the acquire
    // timeout.
    let busy = r.clone();
    let holder = tokio::spawn(async move { busy.sleep_for_tests(0.4).await });
    tokio::task::yield_now().await;
    let waited = loop {
        match r.person("p").await {
            Err(e) => break e,
            // The holder had not taken the connection yet.
            Ok(_) if !holder.is_finished() => continue,
            Ok(_) => panic!("the pool never ran out"),
        }
    };
    assert!(
        matches!(waited, records::RecordsError::Unavailable(_)),
        "{waited}"
    );
    let _ = holder.await;
    drop(r);
    drop(db);
}

/// The recent audit reads newest first from a time index; a file written before the index
/// existed is indexed when it is opened.
#[tokio::test]
async fn embedded_recent_audit_reads_the_time_index_and_old_files_get_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("r.redb");
    let actor = format!("op-{}", records::new_id());
    let newest = |rows: Vec<records::AuditRow>| rows.iter().map(|a| a.at).collect::<Vec<_>>();
    let query = records::AuditQuery {
        actor: Some(actor.clone()),
        limit: 5,
        ..records::AuditQuery::default()
    };
    {
        let r = EmbeddedRecords::open(&path).expect("open");
        // Each row under a reference of its own: only time orders them.
        let rows = |ats: Vec<u64>, by: &str| -> Vec<records::AuditRow> {
            ats.into_iter()
                .map(|at| {
                    let reference = records::new_id();
                    let detail = serde_json::json!({});
                    records::AuditRow::new(
                        at,
                        by,
                        "config.published",
                        "console",
                        &reference,
                        detail,
                    )
                })
                .collect()
        };
        // Written oldest last, then newer rows of someone else (skipped by the actor filter).
        r.audit(&rows((1..=30).rev().collect(), &actor))
            .await
            .expect("audit");
        r.audit(&rows((31..=40).collect(), "someone-else"))
            .await
            .expect("audit");
        let recent = r.recent_audit(&query).await.expect("recent");
        assert_eq!(newest(recent), vec![30, 29, 28, 27, 26]);
        let anyone = records::AuditQuery {
            limit: 3,
            ..records::AuditQuery::default()
        };
        assert_eq!(
            newest(r.recent_audit(&anyone).await.expect("recent")),
            vec![40, 39, 38]
        );
    }
    {
        // As a file of the release before the index: the index table is not there.
        let db = redb::Database::open(&path).expect("raw open");
        let txn = db.begin_write().expect("write");
        assert!(txn
            .delete_table(
                redb::TableDefinition::<(u64, &str, &str), (&str, &str)>::new("audit_recent")
            )
            .expect("delete"));
        txn.commit().expect("commit");
    }
    let r = EmbeddedRecords::open(&path).expect("reopen");
    let recent = r.recent_audit(&query).await.expect("recent");
    assert_eq!(newest(recent), vec![30, 29, 28, 27, 26]);
}

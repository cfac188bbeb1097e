//! The durable records in PostgreSQL through the real binary: the schema gate of `serve`
//! and `broker migrate`, and two broker processes racing one citizen's first logins.

use std::process::Command;

use records::{Entry, Records};

use crate::harness::{
    auth_params, payload, pkce, postgres_records_toml, token_basic, Broker, Browser, Options,
    ADMIN_TOKEN, PAIRWISE, RP_SECRET,
};

const NUMBER: &str = "038099004321";

/// A bank card and a state credential that both prove [`NUMBER`] for `an`.
pub fn two_sources() -> String {
    let an = format!(
        "{{ username = \"an\", password = \"pw\", citizen_id = \"{NUMBER}\", claims = {{ name = \"Lê Thị Hoa\" }} }}"
    );
    format!(
        r#"
[[connectors]]
id = "bank"
type = "test-citizens"
name = {{ en = "Bank card" }}
[connectors.settings]
assurance = "substantial"
citizens = [{an}]
# The race signs the same citizen in many times at once: every attempt is counted before
# its check, so the default limits would refuse the later ones.
failed_logins = {{ per_id = 1000, per_phone = 0, per_address = 1000 }}

[[connectors]]
id = "vneid"
type = "test-citizens"
name = {{ en = "VNeID" }}
[connectors.settings]
assurance = "high"
citizens = [{an}]
failed_logins = {{ per_id = 1000, per_phone = 0, per_address = 1000 }}

[admin]
token = {{ env = "TEST_ADMIN_TOKEN" }}
"#
    )
}

/// A whole login of `an` at `rp-basic` through `connector`; returns the `sub`.
pub async fn sub_of(broker: &Broker, connector: &str) -> String {
    let browser = Browser::new(broker);
    let (verifier, challenge) = pkce();
    let params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    let choice = browser.login_page(browser.authorize(&params).await).await;
    let form = browser.choose(&choice, connector).await;
    let (status, location, body) = browser
        .follow(browser.submit_password(&form, "an", "pw").await)
        .await;
    assert_eq!(status, 303, "signed in: {body}");
    let location = location.expect("redirect");
    let code = url::Url::parse(&location)
        .expect("callback")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("a code in {location}"));
    let (status, tokens, _) = token_basic(
        broker,
        "rp-basic",
        RP_SECRET,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9/cb"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    payload(tokens["id_token"].as_str().expect("id_token"))["sub"]
        .as_str()
        .expect("sub")
        .to_string()
}

#[tokio::test]
async fn two_brokers_race_one_citizens_first_logins_and_agree_on_one_sub() {
    let a = Broker::start(Options {
        redis_prefix: Some(format!("race:{}:", records::new_id())),
        postgres_records: true,
        extra: two_sources(),
        ..Options::default()
    });
    let b = a.twin();
    // Twelve first logins at once, half through the bank at one broker, half through VNeID
    // at the other.
    let logins = (0..12).map(|i| {
        let (broker, connector) = if i % 2 == 0 {
            (&a, "bank")
        } else {
            (&b, "vneid")
        };
        sub_of(broker, connector)
    });
    let subs = futures_util::future::join_all(logins).await;
    assert!(subs.iter().all(|s| *s == subs[0]), "one sub: {subs:?}");
    let pg = records::postgres::PgRecords::connect(&a.records_options().expect("postgres"))
        .await
        .expect("records");

    // One person in the records, bound at the strongest level, both ways in leading to it.
    let persons: Vec<_> = pg
        .export()
        .await
        .expect("export")
        .into_iter()
        .filter_map(|e| match e {
            Entry::Person(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(persons.len(), 1, "{persons:?}");
    let key = common::hash::pairwise_b64(PAIRWISE.as_bytes(), &[b"cid", NUMBER.as_bytes()]);
    let bound = pg.binding(&key).await.expect("read").expect("bound");
    assert_eq!(bound.person, persons[0].id);
    assert_eq!(bound.level, records::Level::High);
    assert_eq!(persons[0].ways_in.len(), 2);
    let text = serde_json::to_string(&persons).expect("json");
    assert!(
        !text.contains(NUMBER),
        "the number is never stored in clear"
    );
}

pub fn broker_command(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_broker"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("TEST_PAIRWISE", PAIRWISE)
        .env("TEST_RP_SECRET", RP_SECRET)
        .env("TEST_POST_SECRET", crate::harness::POST_SECRET)
        .env("TEST_REDIS_URL", crate::harness::redis_url())
        .env("TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .expect("run the broker binary")
}

#[tokio::test]
async fn serve_refuses_an_unmigrated_database_until_broker_migrate() {
    let db = records::testing::TestDb::create_bare().await;
    // A broker's directory (keys, configuration), then the same configuration on `db`.
    let mut plain = Broker::start(Options::default());
    // Stopped, its directory kept: the store file is free again.
    plain.kill();
    let config = plain.config_path().with_file_name("postgres.toml");
    let text = std::fs::read_to_string(plain.config_path()).expect("config")
        + "\n"
        + &postgres_records_toml(&db.url());
    std::fs::write(&config, text).expect("write config");

    let refused = broker_command(&config, &["serve"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("schema version 0") && stderr.contains("broker migrate --config"),
        "{stderr}"
    );

    let migrated = broker_command(&config, &["migrate"]);
    let said = String::from_utf8_lossy(&migrated.stderr);
    assert!(migrated.status.success(), "{said}");
    assert!(said.contains("applied migration 1"), "{said}");
    assert!(
        said.contains("2"),
        "the configuration versions' migration too: {said}"
    );
    let again = broker_command(&config, &["migrate"]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already at version 2"), "{said}");

    drop(plain);
    let broker = Broker::start(Options {
        records_url: Some(db.url()),
        ..Options::default()
    });
    let ready: serde_json::Value = reqwest::get(broker.url("/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (&ready["status"], &ready["store"], &ready["records"]),
        (&"ready".into(), &"ready".into(), &"ready".into())
    );
}

/// A person as the records hold it, with `number` (sealed, keyed-hashed) and one way in.
fn stored_person(
    number: &str,
    status: records::IdStatus,
    level: records::Level,
    connector: &str,
) -> records::Person {
    use broker::person::seal::{seal, Kind};
    let secret = PAIRWISE.as_bytes();
    let seal_key = broker::person::seal::SealKey::new(secret);
    let subject = format!("{connector}-subject");
    let mut p = records::Person::new(&records::new_id());
    p.citizen_ids.push(records::CitizenId {
        key: common::hash::pairwise_b64(secret, &[b"cid", number.as_bytes()]),
        sealed: seal(&seal_key, Kind::CitizenId, number).expect("seal"),
        level,
        source: connector.into(),
        at: 1,
        status,
    });
    p.ways_in.push(records::WayIn {
        key: common::hash::pairwise_b64(
            secret,
            &[b"ext", connector.as_bytes(), subject.as_bytes()],
        ),
        connector: connector.into(),
        sealed_subject: seal(&seal_key, Kind::Subject, &subject).expect("seal"),
        at: 1,
    });
    p
}

#[tokio::test]
async fn operators_find_a_person_by_number_and_close_a_review_item() {
    let db = records::testing::TestDb::create().await;
    let pg = db.records().await;
    let holder = stored_person(
        NUMBER,
        records::IdStatus::Active,
        records::Level::High,
        "vneid",
    );
    let other = stored_person(
        NUMBER,
        records::IdStatus::Suspended,
        records::Level::Low,
        "legacy",
    );
    let key = holder.citizen_ids[0].key.clone();
    let item = records::ReviewItem::open(
        records::ReviewKind::Suspended,
        &key,
        &holder.id,
        &other.id,
        5,
    );
    let changes = records::Changes {
        persons: vec![holder.clone(), other.clone()],
        open_reviews: vec![item.clone()],
        ..Default::default()
    };
    assert_eq!(
        pg.commit(changes).await.expect("commit"),
        records::Commit::Done
    );
    let broker = Broker::start(Options {
        records_url: Some(db.url()),
        extra: "[admin]\ntoken = { env = \"TEST_ADMIN_TOKEN\" }\n".into(),
        ..Options::default()
    });
    let http = reqwest::Client::new();
    let admin = |r: reqwest::RequestBuilder| r.bearer_auth(ADMIN_TOKEN).send();

    let denied = http
        .post(broker.url("/admin/persons/lookup"))
        .json(&serde_json::json!({"citizen_id": NUMBER}))
        .send()
        .await
        .expect("lookup");
    assert_eq!(denied.status().as_u16(), 401);

    // Found by the number, written with spaces as citizens do.
    let spaced = format!("{} {}", &NUMBER[..6], &NUMBER[6..]);
    let found = admin(
        http.post(broker.url("/admin/persons/lookup"))
            .json(&serde_json::json!({"citizen_id": spaced})),
    )
    .await
    .expect("lookup");
    assert_eq!(found.status().as_u16(), 200);
    let text = found.text().await.expect("body");
    assert!(!text.contains(NUMBER), "the number is never shown: {text}");
    let view: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(view["id"], holder.id.as_str());
    assert_eq!(view["bindings"][0]["key"], key.as_str());
    assert_eq!(view["bindings"][0]["status"], "active");
    assert_eq!(view["ways_in"][0]["connector"], "vneid");
    assert_eq!(view["reviews"][0]["id"], item.id.as_str());
    let nobody = admin(
        http.post(broker.url("/admin/persons/lookup"))
            .json(&serde_json::json!({"citizen_id": "000000000000"})),
    )
    .await
    .expect("lookup");
    assert_eq!(nobody.status().as_u16(), 404);

    let open: serde_json::Value = admin(http.get(broker.url("/admin/reviews")))
        .await
        .expect("reviews")
        .json()
        .await
        .expect("json");
    assert_eq!(open[0]["id"], item.id.as_str());
    assert_eq!(open[0]["kind"], "suspended");

    let close = |action: &'static str| {
        admin(
            http.post(broker.url(&format!("/admin/reviews/{}", item.id)))
                .json(&serde_json::json!({"action": action, "operator": "op-7"})),
        )
    };
    let merged = close("merge").await.expect("close");
    assert_eq!(merged.status().as_u16(), 200);
    assert_eq!(close("keep").await.expect("close").status().as_u16(), 409);
    let bad = admin(
        http.post(broker.url(&format!("/admin/reviews/{}", item.id)))
            .json(&serde_json::json!({"action": "burn", "operator": "op-7"})),
    )
    .await
    .expect("close");
    assert_eq!(bad.status().as_u16(), 400);

    // The old account's way in now leads to the holder; the queue is empty; audited.
    let joined: serde_json::Value =
        admin(http.get(broker.url(&format!("/admin/persons/{}", holder.id))))
            .await
            .expect("person")
            .json()
            .await
            .expect("json");
    let ways: Vec<&str> = joined["ways_in"]
        .as_array()
        .expect("ways")
        .iter()
        .filter_map(|w| w["connector"].as_str())
        .collect();
    assert_eq!(ways, ["vneid", "legacy"]);
    assert_eq!(joined["reviews"][0]["closed"]["action"], "merge");
    assert_eq!(joined["reviews"][0]["closed"]["by"], "op-7");
    let open: serde_json::Value = admin(http.get(broker.url("/admin/reviews")))
        .await
        .expect("reviews")
        .json()
        .await
        .expect("json");
    assert_eq!(open, serde_json::json!([]));
    let rows = pg.audit_of(&item.id).await.expect("audit");
    assert_eq!(
        rows.iter().map(|r| r.event.as_str()).collect::<Vec<_>>(),
        ["review.merged"]
    );
    assert!(pg
        .audit_of(&holder.id)
        .await
        .expect("audit")
        .iter()
        .any(|r| r.event == "admin.person_viewed"));
    let logs = broker.settled_log_text().await;
    assert!(!logs.contains(NUMBER) && !logs.contains(&spaced), "{logs}");

    // Maintenance switches are audit rows too.
    let on = admin(
        http.put(broker.url("/admin/connectors/test-citizens/maintenance"))
            .json(&serde_json::json!({"message": {"en": "Back soon"}})),
    )
    .await
    .expect("maintenance");
    assert_eq!(on.status().as_u16(), 204);
    let rows = pg.audit_of("test-citizens").await.expect("audit");
    assert_eq!(
        rows.iter().map(|r| r.event.as_str()).collect::<Vec<_>>(),
        ["admin.maintenance_on"]
    );
    assert_eq!(pg.setting("maintenance").await.expect("read").version, 1);
}

fn run_ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = broker_command(config, args);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {said}");
    said
}

fn persons_in(entries: &[Entry]) -> Vec<records::Person> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Person(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn records_kept_in_redis_move_to_postgres_and_round_trip_through_export() {
    use store::Store;
    let prefix = format!("move:{}:", records::new_id());
    let redis = store::redis::RedisStore::connect(
        &crate::harness::redis_url(),
        &prefix,
        std::time::Duration::from_secs(2),
    )
    .await
    .expect("redis");
    let secret = PAIRWISE.as_bytes();
    let cid_key = format!(
        "idx:cid:{}",
        common::hash::pairwise_b64(secret, &[b"cid", NUMBER.as_bytes()])
    );
    let ext_key = |connector: &str| {
        format!(
            "idx:ext:{}",
            common::hash::pairwise_b64(secret, &[b"ext", connector.as_bytes(), b"an"])
        )
    };
    let old_person = |id: &str, connector: &str, level: &str| {
        serde_json::json!({
            "id": id,
            "citizen_ids": [{"value": NUMBER, "level": level, "source": connector, "at": 1, "status": "active"}],
            "claims": {"name": "Old Name"},
            "links": [{"connector": connector, "subject": "an", "at": 1}],
            "updated": 1
        })
        .to_string()
    };
    // P1 holds the number; P2 is the other half of a person an earlier version split.
    let put = |k: String, v: String| {
        let redis = &redis;
        async move { redis.put(&k, v.as_bytes(), None, 1).await.expect("put") }
    };
    put("person:P1".into(), old_person("P1", "bank", "substantial")).await;
    put("person:P2".into(), old_person("P2", "vneid", "high")).await;
    put(
        cid_key,
        r#"{"person":"P1","level":"substantial","source":"bank"}"#.into(),
    )
    .await;
    put(ext_key("bank"), "P1".into()).await;
    put(ext_key("vneid"), "P2".into()).await;
    put(
        "consent:P1:rp-consent".into(),
        r#"["openid","profile"]"#.into(),
    )
    .await;
    put(
        "maintenance".into(),
        r#"{"connectors":{"vneid":{"en":"VNeID is down for the move"}}}"#.into(),
    )
    .await;

    let broker = Broker::start(Options {
        redis_prefix: Some(prefix.clone()),
        postgres_records: true,
        extra: two_sources(),
        ..Options::default()
    });
    let config = broker.config_path().to_path_buf();
    let said = run_ok(&config, &["records", "move"]);
    assert!(
        said.contains("moved 2 persons, 1 consents, 1 settings (1 bindings")
            && said.contains("5 written"),
        "{said}"
    );
    let again = broker_command(&config, &["records", "move"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "refused a second time"
    );
    let forced = run_ok(&config, &["records", "move", "--force"]);
    assert!(forced.contains("0 written, 5 already there"), "{forced}");

    let pg = records::postgres::PgRecords::connect(&broker.records_options().expect("postgres"))
        .await
        .expect("records");
    let key = common::hash::pairwise_b64(secret, &[b"cid", NUMBER.as_bytes()]);
    assert_eq!(
        pg.binding(&key).await.expect("read").map(|b| b.person),
        Some("P1".into())
    );
    assert_eq!(
        pg.consent("P1", "rp-consent").await.expect("read"),
        Some(vec!["openid".to_string(), "profile".to_string()])
    );
    let open = pg.reviews(false).await.expect("reviews");
    assert_eq!(
        (open.len(), open[0].holder.as_str(), open[0].other.as_str()),
        (1, "P1", "P2")
    );

    // The citizen's next login through the bank is P1's (claims refreshed), no new person;
    // the maintenance message moved too.
    let choice = Browser::new(&broker).choice_page().await;
    assert!(choice.contains("VNeID is down for the move"), "{choice}");
    sub_of(&broker, "bank").await;
    let exported = pg.export().await.expect("export");
    let persons = persons_in(&exported);
    assert_eq!(persons.len(), 2);
    let p1 = persons.iter().find(|p| p.id == "P1").expect("P1");
    assert_eq!(p1.claims["name"], "Lê Thị Hoa");
    assert!(!serde_json::to_string(&exported)
        .expect("json")
        .contains(NUMBER));

    // Export, import into another database, export again: the same records.
    let dump = config.with_file_name("records.ndjson");
    let said = run_ok(
        &config,
        &["records", "export", "--out", dump.to_str().expect("path")],
    );
    let lines = std::fs::read_to_string(&dump)
        .expect("dump")
        .lines()
        .count();
    assert!(
        said.contains(&format!("exported {lines} records")),
        "{said}"
    );
    assert!(!std::fs::read_to_string(&dump)
        .expect("dump")
        .contains(NUMBER));
    let target = records::testing::TestDb::create().await;
    let text = std::fs::read_to_string(&config).expect("config");
    let source_url = broker.records_options().expect("postgres").url;
    let other = config.with_file_name("other.toml");
    std::fs::write(&other, text.replace(&source_url, &target.url())).expect("config");
    let import = ["records", "import", "--in", dump.to_str().expect("path")];
    let said = run_ok(&other, &import);
    assert!(
        said.contains(&format!("imported {lines} of {lines}")),
        "{said}"
    );
    assert!(
        !broker_command(&other, &import).status.success(),
        "refused twice"
    );
    let copy = target.records().await.export().await.expect("export");
    let normal = |entries: Vec<Entry>| {
        let mut lines: Vec<String> = entries
            .into_iter()
            .map(|mut e| {
                if let Entry::Person(p) = &mut e {
                    p.version = 1;
                }
                serde_json::to_string(&e).expect("json")
            })
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(normal(copy), normal(pg.export().await.expect("export")));
    for key in redis.keys_with_prefix("", 1).await.expect("keys") {
        let _ = redis.delete(&key, 1).await;
    }
}

#[tokio::test]
async fn the_account_page_lists_recent_sign_ins_with_platform_and_way_in() {
    let broker = Broker::start(Options {
        postgres_records: true,
        ..Options::default()
    });
    let browser = Browser::new(&broker);
    let account = browser.get(&broker.url("/account")).await;
    assert_eq!(account.status().as_u16(), 401);
    let (_, challenge) = pkce();
    let params = auth_params("rp-basic", "http://localhost:9/cb", "openid", &challenge);
    browser.login(&params, "an", "demo").await;
    // A second platform through the same session (SSO) is a sign-in too.
    let (_, challenge) = pkce();
    let other = auth_params("rp-other", "http://127.0.0.1:9/cb", "openid", &challenge);
    let (status, _, body) = browser.follow(browser.authorize(&other).await).await;
    assert_eq!(status, 303, "{body}");
    let page = browser
        .get(&broker.url("/account"))
        .await
        .text()
        .await
        .expect("page");
    let items: Vec<&str> = page
        .split("<li>")
        .skip(1)
        .filter(|l| l.contains(" through "))
        .collect();
    assert_eq!(items.len(), 2, "{page}");
    assert!(
        items[0].starts_with("Other platform through Test citizens, "),
        "{page}"
    );
    assert!(
        items[1].starts_with("Basic platform through Test citizens, "),
        "{page}"
    );
    assert!(items[0].contains(" UTC"), "{page}");
}

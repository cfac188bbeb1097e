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
fn two_sources() -> String {
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

[[connectors]]
id = "vneid"
type = "test-citizens"
name = {{ en = "VNeID" }}
[connectors.settings]
assurance = "high"
citizens = [{an}]

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
    let key = broker::util::hmac_b64(PAIRWISE.as_bytes(), &[b"cid", NUMBER.as_bytes()]);
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

fn broker_command(config: &std::path::Path, args: &[&str]) -> std::process::Output {
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
    let again = broker_command(&config, &["migrate"]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("already at version 1"), "{said}");

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
